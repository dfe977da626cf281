# Man pages authrun(1), authrun-run(1), authrun-exec(1), authrun-bench(1), authrun-worker(1), made by help2man
# from the built programs' own --help and --version, so that they cannot drift from the command line.
# Without help2man the build still succeeds, but `cmake --install` (and so the package) stops with a clear error.
find_program(AUTHRUN_HELP2MAN help2man)
find_program(AUTHRUN_GZIP gzip)
set(man_dir ${PROJECT_BINARY_DIR}/man)
set(man_pages)

# authrun_man_page(NAME SUMMARY TARGET [SUBCOMMAND]): NAME.1.gz from `TARGET [SUBCOMMAND] --help`.
function(authrun_man_page name summary target)
  set(program $<TARGET_FILE:${target}>)
  set(version_option)
  if(ARGC GREATER 3)
    # help2man takes the page's name from the first line of --version ("authrun 0.1.0"): give it the subcommand's.
    set(version_option "--version-string=${name} ${PROJECT_VERSION}")
    # help2man names the page after the program it runs: a two-line wrapper gives `authrun run` that name.
    set(program ${man_dir}/wrappers/${name})
    file(GENERATE OUTPUT ${program} CONTENT "#!/bin/sh\nexec \"$<TARGET_FILE:${target}>\" ${ARGV3} \"$@\"\n"
         FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  endif()
  add_custom_command(
    OUTPUT ${man_dir}/${name}.1.gz
    # (a sanitizer build's leak check at exit is no business of the man pages)
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0 ${AUTHRUN_HELP2MAN} --no-info --no-discard-stderr --name=${summary} ${version_option}
            --include=${PROJECT_SOURCE_DIR}/man/${name}.h2m --output=${man_dir}/${name}.1 ${program}
    COMMAND ${AUTHRUN_GZIP} -9nf ${man_dir}/${name}.1
    DEPENDS ${target} ${PROJECT_SOURCE_DIR}/man/${name}.h2m
    COMMENT "Man page ${name}(1)"
    VERBATIM)
  set(man_pages ${man_pages} ${man_dir}/${name}.1.gz PARENT_SCOPE)
endfunction()

if(AUTHRUN_HELP2MAN AND AUTHRUN_GZIP)
  authrun_man_page(authrun "run batches of tasks on authenticated worker processes" authrun)
  authrun_man_page(authrun-run "run a JSONL batch of tasks on authenticated workers" authrun run)
  authrun_man_page(authrun-exec "run a command once per argument, as GNU parallel does, on authenticated workers"
                   authrun exec)
  authrun_man_page(authrun-bench "measure authrun's IPC overhead" authrun bench)
  authrun_man_page(authrun-worker "the worker process authrun starts, and workers started by other means"
                   authrun-worker)
  add_custom_target(man ALL DEPENDS ${man_pages})
  install(FILES ${man_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  set(why "help2man (and gzip) are needed for the man pages: apt-get install help2man (scripts/setup does), then reconfigure")
  add_custom_target(man COMMAND ${CMAKE_COMMAND} -E echo "error: ${why}" COMMAND false VERBATIM)
  install(CODE "message(FATAL_ERROR \"authrun: cannot install the man pages: ${why}\")")
endif()
