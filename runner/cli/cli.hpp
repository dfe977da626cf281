// The `authrun` command line: the subcommands run, exec, bench and keygen, each handed to its front end.
#pragma once

namespace authrun::runner {

// Parses argv and runs the subcommand; returns the process exit status.
int run_cli(int argc, char** argv);

}  // namespace authrun::runner
