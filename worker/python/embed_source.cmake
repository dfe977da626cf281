# Writes OUTPUT, a C++ header holding the file INPUT as a string constant (k_host_source), in pieces short
# enough for every compiler's string literal limit.
file(READ ${INPUT} text)
string(LENGTH "${text}" size)
set(out "// Generated from worker/python/host.py by embed_source.cmake: do not edit.\n#pragma once\n\n")
string(APPEND out "namespace authrun::worker::python {\n\ninline constexpr const char k_host_source[] =\n")
set(pos 0)
while(pos LESS size)
  string(SUBSTRING "${text}" ${pos} 8000 piece)
  string(APPEND out "    R\"authrun_py(${piece})authrun_py\"\n")
  math(EXPR pos "${pos} + 8000")
endwhile()
string(APPEND out "    ;\n\n}  // namespace authrun::worker::python\n")
file(WRITE ${OUTPUT} "${out}")
