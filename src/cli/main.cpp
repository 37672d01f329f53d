// video-infinity: entry point. Parses the command line (CLI11), starts MPI when built with it,
// runs one subcommand, and on any error logs one line and ends the job with the exit code of
// its kind (kExitCodes): a usage error (the command line, the settings, outputs that would be
// replaced) is found identically on every rank before any work, so rank 0 reports it and every
// rank finalizes MPI; an error during the run aborts every rank, so that none is left waiting in
// a collective.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/check.h"
#include "core/log.h"
#include "core/run_record.h"
#include "core/temp_files.h"

namespace {

constexpr int kExitError = 1, kExitUsage = 2;
// --help's footer and the README's table.
constexpr const char* kExitCodes =
    "Exit codes:\n"
    "  0      success\n"
    "  1      error during the run (model files, device, communication, writing)\n"
    "  2      bad command line or settings, or an output that exists (-y replaces it): nothing was computed\n"
    "  128+N  ended by signal N: 130 Ctrl-C, 143 SIGTERM (mpiexec itself exits 1 when interrupted)\n";

vi::cli::Invocation g_invocation;

// The global flags: accepted before and after the subcommand (the subcommands fall through to
// the app for options they do not have).
bool is_global_flag(const std::string& a) {
  return a == "-q" || a == "--quiet" || a == "-v" || a == "--verbose" || a == "-h" || a == "--help" ||
         a == "--version" || a.rfind("--log-level=", 0) == 0;
}

// Generating is the default subcommand: `video-infinity --model M --prompt P` means generate.
// Only the first word that is not a global flag can name a subcommand, so a prompt or a path
// that equals a subcommand name ("--prompt inspect") is just a value.
void insert_default_subcommand(std::vector<std::string>& args, const CLI::App& app) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--log-level") {
      ++i;
      continue;
    }
    if (is_global_flag(args[i])) continue;
    for (const auto* sub : app.get_subcommands({})) {
      if (args[i] == sub->get_name()) return;
    }
    args.insert(args.begin() + static_cast<std::ptrdiff_t>(i), "generate");
    return;
  }
}

}  // namespace

namespace vi::cli {
const Invocation& invocation() { return g_invocation; }
}  // namespace vi::cli

int main(int argc, char** argv) {
  // As typed, before MPI sees argv: the sidecar records it, the resume command repeats it.
  vi::core::set_command_line(argc, argv);
  vi::parallel::LaunchInfo launch;
  try {
    launch = vi::parallel::init_launch(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "video-infinity: cannot start: %s\n", e.what());
    return kExitError;
  }

  vi::core::install_termination_cleanup();

  CLI::App app{"video-infinity " VI_VERSION
               ": long videos from a text prompt with one video diffusion model spread over many GPUs "
               "(Video-Infinity: clip parallelism + dual-scope attention)."};
  app.name("video-infinity");
  // Set before the subcommands are added: they inherit both.
  app.fallthrough();
  app.footer(kExitCodes);
  app.set_version_flag("--version", VI_VERSION);
  app.require_subcommand(0, 1);
  auto& g = g_invocation;
  auto* level = app.add_option("--log-level", g.log_level, "trace, debug, info, warn, error or off")
                    ->capture_default_str()
                    ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "off"}));
  auto* quiet = app.add_flag("-q,--quiet", g.quiet, "Warnings and errors only: no progress, no summary");
  auto* verbose =
      app.add_flag("-v,--verbose", g.verbose, "Debug messages, and the source location (file:line) of errors");
  quiet->excludes(verbose)->excludes(level);
  verbose->excludes(level);
  std::vector<vi::cli::Runner> runners = {vi::cli::add_generate(app), vi::cli::add_tokenize(app),
                                          vi::cli::add_inspect(app), vi::cli::add_make_test_model(app),
                                          vi::cli::add_check_env(app)};
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    // A bare command asks what it can do: the help, exit code 0.
    if (launch.rank == 0) std::printf("%s", app.help().c_str());
    vi::parallel::finalize_launch();
    return 0;
  }
  insert_default_subcommand(args, app);
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments reversed

  bool debug = false;
  int code = 0;
  try {
    try {
      app.parse(args);
    } catch (const CLI::ParseError& e) {
      // --help / --version exit 0 on every rank; errors are printed by rank 0 only.
      const int exit_code = e.get_exit_code() == 0 ? 0 : kExitUsage;
      if (launch.rank == 0) app.exit(e);
      vi::parallel::finalize_launch();
      return exit_code;
    }
    if (app.get_subcommands().empty()) {  // only global flags
      if (launch.rank == 0) std::printf("%s", app.help().c_str());
      vi::parallel::finalize_launch();
      return 0;
    }
    const std::string log_level = g.verbose ? "debug" : g.quiet ? "warn" : g.log_level;
    debug = vi::core::parse_log_level(log_level) <= spdlog::level::debug;
    vi::core::init_logging(launch.rank, launch.world_size, {log_level});
    for (auto& run : runners) {
      int rc = run(launch);
      if (rc >= 0) code = rc;
    }
  } catch (const vi::UsageError& e) {
    // Every rank found it (or heard it from rank 0) before any work: one report, no abort.
    if (launch.rank == 0) spdlog::error("{}", debug ? e.what() : e.message());
    vi::parallel::finalize_launch();
    return kExitUsage;
  } catch (const std::exception& e) {
    const auto* error = dynamic_cast<const vi::Error*>(&e);
    spdlog::error("{}", error != nullptr && !debug ? error->message() : std::string(e.what()));
    if (launch.world_size > 1) vi::parallel::abort_job(kExitError);
    vi::parallel::finalize_launch();
    return kExitError;
  }
  vi::parallel::finalize_launch();
  return code;
}
