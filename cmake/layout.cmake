# The layout rule of ARCHITECTURE.md, enforced by the build: each folder's library may include headers only from
# the folders its arrows point to. authrun_layout_rule(target ALLOWED folder...) checks every .cpp and .hpp of
# the calling folder before `target` builds, and fails the build naming file, line and rule on a wrong include.
# (The link lines follow the same arrows: a library links only the libraries of its allowed folders.)
function(authrun_layout_rule target)
  cmake_parse_arguments(PARSE_ARGV 1 rule "" "" "ALLOWED")
  file(RELATIVE_PATH folder ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  set(allowed ${folder} ${rule_ALLOWED})
  list(JOIN allowed ", " allowed_text)
  list(JOIN allowed "," allowed_arg)
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp ${CMAKE_CURRENT_SOURCE_DIR}/*.hpp)
  set(stamp ${CMAKE_CURRENT_BINARY_DIR}/${target}.layout-checked)
  add_custom_command(OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DFOLDER=${folder} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DALLOWED=${allowed_arg}
            "-DALLOWED_TEXT=${allowed_text}" -DSTAMP=${stamp} -P ${PROJECT_SOURCE_DIR}/cmake/check_includes.cmake
    DEPENDS ${sources} ${PROJECT_SOURCE_DIR}/cmake/check_includes.cmake
    COMMENT "Layout rule: ${folder}/ includes only ${allowed_text}"
    VERBATIM)
  target_sources(${target} PRIVATE ${stamp})
endfunction()
