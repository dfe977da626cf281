# `cmake --install`: the authrun binary, authrun-worker and authrun-python (mode 0711), man pages, bash completion, documents.
# authrun finds authrun-worker next to itself, so both go to bin/ (in the build tree both are in build/bin/).
# The SDK (worker/CMakeLists.txt) and the Python package (python/CMakeLists.txt) install their own parts.
include(GNUInstallDirs)

install(TARGETS authrun RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# 0711, not 0755: an executable its user cannot read starts non-dumpable, so no process of the same user can
# ptrace it or take its fds in the moment before it makes itself non-dumpable (SECURITY.md, "start-up").
install(TARGETS authrun-worker authrun-python RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_EXECUTE WORLD_EXECUTE)

install(FILES ${PROJECT_SOURCE_DIR}/completion/authrun.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME authrun)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/SECURITY.md ${PROJECT_SOURCE_DIR}/protocol/PROTOCOL.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
