#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "core/check.h"

namespace vi::core {

spdlog::level::level_enum parse_log_level(const std::string& name) {
  for (int i = spdlog::level::trace; i <= spdlog::level::off; ++i) {
    auto level = static_cast<spdlog::level::level_enum>(i);
    if (spdlog::level::to_string_view(level) == name) return level;
  }
  if (name == "warn" || name == "warning") return spdlog::level::warn;  // spdlog names it "warning"
  VI_FAIL("--log-level: unknown level '{}' (expected trace, debug, info, warn, error or off)", name);
}

void init_logging(int rank, int world_size, const LogOptions& options) {
  spdlog::drop_all();
  auto logger = spdlog::stderr_color_mt("video-infinity");
  if (world_size > 1) {
    logger->set_pattern(fmt::format("[%H:%M:%S.%e] [rank {}/{}] [%^%l%$] %v", rank, world_size));
  } else {
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  }
  auto level = parse_log_level(options.level);
  if (rank != 0 && !options.all_ranks && level < spdlog::level::warn) level = spdlog::level::warn;
  logger->set_level(level);
  spdlog::set_default_logger(logger);
}

}  // namespace vi::core
