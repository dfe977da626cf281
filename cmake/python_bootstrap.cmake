# The ctypes Python worker's bootstrap as authrun runs it: python/authrun/_bootstrap.py with the text of
# python/authrun/_worker_core.py in place of its import of that module, so that the interpreter is given one
# file, whole (python_worker.cpp; authrun-python compiles the same core in). Written at configure time into
# build/share/authrun/python/authrun/ (where authrun looks, beside its binary) because runner/engine builds
# its hash into authrun. Sets AUTHRUN_PYTHON_BOOTSTRAP to that file.
set(bootstrap_source ${PROJECT_SOURCE_DIR}/python/authrun/_bootstrap.py)
set(core_source ${PROJECT_SOURCE_DIR}/python/authrun/_worker_core.py)
set(AUTHRUN_PYTHON_BOOTSTRAP ${PROJECT_BINARY_DIR}/share/authrun/python/authrun/_bootstrap.py)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${bootstrap_source} ${core_source})
file(READ ${bootstrap_source} bootstrap_text)
file(READ ${core_source} core_text)
set(core_import "from authrun._worker_core import *  # noqa: E402,F401,F403 (authrun: _worker_core.py here)\n")
string(FIND "${bootstrap_text}" "${core_import}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "python/authrun/_bootstrap.py lacks the line that imports _worker_core: ${core_import}")
endif()
string(REPLACE "${core_import}" "${core_text}" bootstrap_text "${bootstrap_text}")
file(WRITE ${PROJECT_BINARY_DIR}/python_bootstrap.tmp "${bootstrap_text}")
configure_file(${PROJECT_BINARY_DIR}/python_bootstrap.tmp ${AUTHRUN_PYTHON_BOOTSTRAP} COPYONLY)
