// video-infinity: entry point. Parses the command line (CLI11), starts MPI when built with it,
// runs one subcommand, and on any error logs one line and ends every rank of the job, so that
// no rank is left waiting in a collective.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/check.h"
#include "core/log.h"
#include "core/run_record.h"
#include "core/temp_files.h"

int main(int argc, char** argv) {
  vi::core::set_command_line(argc, argv);  // for the sidecar, as typed (before MPI sees argv)
  vi::parallel::LaunchInfo launch;
  try {
    launch = vi::parallel::init_launch(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "video-infinity: cannot start: %s\n", e.what());
    return 1;
  }

  vi::core::install_termination_cleanup();

  CLI::App app{"video-infinity " VI_VERSION
               ": long videos from a text prompt with one video diffusion model spread over many GPUs "
               "(Video-Infinity: clip parallelism + dual-scope attention)."};
  app.set_version_flag("--version", VI_VERSION);
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")->capture_default_str();
  std::vector<vi::cli::Runner> runners = {vi::cli::add_generate(app), vi::cli::add_tokenize(app),
                                          vi::cli::add_inspect(app), vi::cli::add_make_test_model(app),
                                          vi::cli::add_check_env(app)};
  // Generating is the default subcommand: `video-infinity --model M --prompt P` means generate.
  std::vector<std::string> args(argv + 1, argv + argc);
  bool has_subcommand = false, wants_help = false;
  for (const auto& a : args) {
    for (const auto* sub : app.get_subcommands({})) has_subcommand |= a == sub->get_name();
    wants_help |= a == "-h" || a == "--help" || a == "--version";
  }
  if (!has_subcommand && !(wants_help && args.size() == 1) && !args.empty()) args.insert(args.begin(), "generate");
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments reversed

  int code = 0;
  try {
    try {
      app.parse(args);
    } catch (const CLI::ParseError& e) {
      // --help / --version exit 0 on every rank; errors are printed by rank 0 only.
      int exit_code = e.get_exit_code();
      if (launch.rank == 0) app.exit(e);
      vi::parallel::finalize_launch();
      return exit_code;
    }
    vi::core::init_logging(launch.rank, launch.world_size, {log_level});
    for (auto& run : runners) {
      int rc = run(launch);
      if (rc >= 0) code = rc;
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    if (launch.world_size > 1) vi::parallel::abort_job(1);
    vi::parallel::finalize_launch();
    return 1;
  }
  vi::parallel::finalize_launch();
  return code;
}
