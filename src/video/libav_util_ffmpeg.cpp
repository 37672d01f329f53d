#include "video/libav_util.h"

#include <spdlog/spdlog.h>

extern "C" {
#include <libavutil/error.h>
#include <libavutil/log.h>
}

#include <cstdarg>
#include <mutex>

namespace vi::video::libav {

std::string error_string(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, buf, sizeof(buf));
  return buf;
}

namespace {

// libav may emit a line in several calls; complete lines are forwarded.
void log_callback(void* avcl, int level, const char* format, va_list args) {
  if (level > AV_LOG_VERBOSE) return;
  thread_local std::string pending;
  thread_local int print_prefix = 1;
  char line[1024];
  av_log_format_line2(avcl, level, format, args, line, sizeof(line), &print_prefix);
  pending += line;
  if (pending.empty() || pending.back() != '\n') return;
  pending.pop_back();
  if (level <= AV_LOG_WARNING) {
    spdlog::warn("libav: {}", pending);
  } else {
    spdlog::debug("libav: {}", pending);
  }
  pending.clear();
}

}  // namespace

void route_log_to_spdlog() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_callback(log_callback); });
}

}  // namespace vi::video::libav
