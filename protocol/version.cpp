// Version strings, from the header cmake/version.cmake generates at build time.
#include "protocol/version.hpp"

#include "authrun_build/version.hpp"
#include "protocol/handshake.hpp"

namespace authrun::protocol {

std::string_view project_version() { return AUTHRUN_VERSION; }

std::string_view git_commit() { return AUTHRUN_GIT_COMMIT; }

std::string version_text(std::string_view program) {
  return std::string(program) + " " + AUTHRUN_VERSION + "\nprotocol version " + std::to_string(k_protocol_version) +
         "\ncommit " + AUTHRUN_GIT_COMMIT;
}

}  // namespace authrun::protocol
