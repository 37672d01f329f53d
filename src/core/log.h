// Logging: spdlog with the rank in every line. Rank 0 logs at the chosen level, the other
// ranks at warn unless all_ranks is set, so an 8-rank job prints one progress stream.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace vi::core {

struct LogOptions {
  std::string level = "info";  // trace, debug, info, warn, error, off
  bool all_ranks = false;
};

// Installs the default logger; safe to call again (e.g. once the rank is known).
void init_logging(int rank, int world_size, const LogOptions& options = {});

// Parses a level name; throws vi::Error naming the flag for anything else.
spdlog::level::level_enum parse_log_level(const std::string& name);

}  // namespace vi::core
