#include "core/memory_stats.h"

#include <fstream>
#include <string>

namespace vi::core {

namespace {

int64_t status_field_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0) return std::stoll(line.substr(key.size()));
  }
  return -1;
}

}  // namespace

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  return out.good();
}

int64_t peak_rss_bytes() { return status_field_kb("VmHWM") * 1024; }
int64_t current_rss_bytes() { return status_field_kb("VmRSS") * 1024; }

}  // namespace vi::core
