// The subcommands of the video-infinity binary. Each registers its options on the CLI11 app
// and returns the function that runs it (after parsing).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "video_infinity/communicator.h"

namespace vi::cli {

using Runner = std::function<int(const parallel::LaunchInfo&)>;

// The global flags (accepted anywhere on the command line) and the command as typed.
struct Invocation {
  std::string log_level = "info";
  bool quiet = false;    // -q: warnings and errors only, no progress or summary
  bool verbose = false;  // -v: debug messages, source locations in errors
};
const Invocation& invocation();  // main.cpp; valid once the command line is parsed

Runner add_inspect(CLI::App& app);
Runner add_check_env(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_make_test_model(CLI::App& app);

}  // namespace vi::cli
