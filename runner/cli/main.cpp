// authrun: runs batches of tasks on authenticated worker processes.
#include "runner/cli/cli.hpp"

int main(int argc, char** argv) { return authrun::runner::run_cli(argc, argv); }
