# The layout rule (cmake/check_includes.cmake) fails on a wrong include and names file, line and rule, and passes
# a right one. Run by ctest: cmake -DSOURCE_DIR=<source root> -DWORK_DIR=<scratch> -P wrong_include.cmake
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/runner/run)
file(WRITE ${WORK_DIR}/runner/run/ok.hpp "// fine\n#pragma once\n\n#include <string>\n#include \"runner/engine/engine.hpp\"\n")
set(rule -DFOLDER=runner/run -DSOURCE_DIR=${WORK_DIR} -DALLOWED=runner/run,protocol,runner/engine
         "-DALLOWED_TEXT=runner/run, protocol, runner/engine" -DSTAMP=${WORK_DIR}/stamp)
execute_process(COMMAND ${CMAKE_COMMAND} ${rule} -P ${SOURCE_DIR}/cmake/check_includes.cmake
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT EXISTS ${WORK_DIR}/stamp)
  message(FATAL_ERROR "the rule refused a right include: ${err}")
endif()
file(REMOVE ${WORK_DIR}/stamp)
file(WRITE ${WORK_DIR}/runner/run/bad.cpp "// wrong\n#include \"runner/run/ok.hpp\"\n\n#include \"runner/exec/exec_args.hpp\"\n")
execute_process(COMMAND ${CMAKE_COMMAND} ${rule} -P ${SOURCE_DIR}/cmake/check_includes.cmake
                RESULT_VARIABLE rc ERROR_VARIABLE err)
string(REPLACE "\n" " " err_line "${err}")
string(REGEX REPLACE " +" " " err_line "${err_line}")
if(rc EQUAL 0 OR EXISTS ${WORK_DIR}/stamp)
  message(FATAL_ERROR "the rule let runner/run include runner/exec")
endif()
if(NOT err_line MATCHES "runner/run/bad.cpp:4: includes \"runner/exec/exec_args.hpp\": runner/run/ may include only runner/run, protocol, runner/engine")
  message(FATAL_ERROR "the rule's message does not name file, line and rule: ${err}")
endif()
message(STATUS "wrong include refused: ${err_line}")
