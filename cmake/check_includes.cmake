# Run at build time by authrun_layout_rule (cmake/layout.cmake): fails if a source file of FOLDER includes one of
# our headers from a folder not in ALLOWED (folders such as protocol and runner/engine), naming the file, the
# line and the rule. System and library headers (<...>) are not ours and not checked.
# -DFOLDER=<folder relative to the source root> -DSOURCE_DIR=<source root> -DALLOWED=<folders, comma-separated>
# -DALLOWED_TEXT=<the same for the message> -DSTAMP=<file touched when all is well>
string(REPLACE "," ";" ALLOWED "${ALLOWED}")
file(GLOB sources ${SOURCE_DIR}/${FOLDER}/*.cpp ${SOURCE_DIR}/${FOLDER}/*.hpp)
set(errors "")
foreach(source IN LISTS sources)
  file(STRINGS ${source} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\".*" "\\1" header "${line}")
    get_filename_component(dir "${header}" DIRECTORY)
    if(dir STREQUAL "")
      set(dir "(no folder)")
    endif()
    list(FIND ALLOWED "${dir}" at)
    if(at EQUAL -1)
      # The line number: one more than the newlines before the line (file(STRINGS) skips empty lines).
      file(READ ${source} content)
      string(FIND "${content}" "${line}" at)
      string(SUBSTRING "${content}" 0 ${at} before)
      string(REGEX MATCHALL "\n" newlines "${before}")
      list(LENGTH newlines line_number)
      math(EXPR line_number "${line_number} + 1")
      file(RELATIVE_PATH shown ${SOURCE_DIR} ${source})
      string(APPEND errors "${shown}:${line_number}: includes \"${header}\": ${FOLDER}/ may include only "
             "${ALLOWED_TEXT} (ARCHITECTURE.md)\n")
    endif()
  endforeach()
endforeach()
if(errors)
  message(FATAL_ERROR "layout rule broken:\n${errors}")
endif()
file(TOUCH ${STAMP})
