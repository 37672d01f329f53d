// video-infinity: entry point. Parses the command line (CLI11), starts MPI when built with it,
// runs one subcommand, and on any error logs one line and ends every rank of the job, so that
// no rank is left waiting in a collective.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/check.h"
#include "core/log.h"

int main(int argc, char** argv) {
  vi::parallel::LaunchInfo launch;
  try {
    launch = vi::parallel::init_launch(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "video-infinity: cannot start: %s\n", e.what());
    return 1;
  }

  CLI::App app{"video-infinity " VI_VERSION
               ": long videos from a text prompt with one video diffusion model spread over many GPUs "
               "(Video-Infinity: clip parallelism + dual-scope attention)."};
  app.set_version_flag("--version", VI_VERSION);
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")->capture_default_str();
  std::vector<vi::cli::Runner> runners = {vi::cli::add_inspect(app), vi::cli::add_check_env(app)};

  int code = 0;
  try {
    try {
      app.parse(argc, argv);
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
