# The Debian package (CPack): scripts/package, or `cpack -G DEB` in the build directory, makes
# authrun_<version>_<arch>.deb. Depends: what dpkg-shlibdeps finds the binaries need (libc6, libstdc++6,
# libgcc-s1, libsodium23), plus python3 for the Python workers.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME authrun)
set(CPACK_PACKAGE_VENDOR "authrun")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "job runner whose workers prove by a handshake that the runner started them")
set(CPACK_PACKAGE_DESCRIPTION
    "authrun runs batches of tasks (JSON lines, or commands as GNU parallel does) on worker processes.\n"
    "Before a worker gets any task, runner and worker complete a mutual challenge-response handshake\n"
    "(libsodium) over a key fresh for each worker, and every frame after it is authenticated or encrypted.")
string(JOIN "" CPACK_PACKAGE_DESCRIPTION ${CPACK_PACKAGE_DESCRIPTION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "authrun developers <authrun@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "python3")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "bash-completion, man-db")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "openssh-client, slurm-client")
include(CPack)
