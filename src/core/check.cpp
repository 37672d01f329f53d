#include "core/check.h"

#include <cstring>

namespace vi {

std::string join_list(const std::vector<std::string>& items, const char* last_joiner) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == items.size() ? last_joiner : ", ") + items[i];
  }
  return out;
}

namespace detail {

void throw_error(const char* file, int line, const std::string& message) {
  const char* base = std::strrchr(file, '/');
  throw Error(message, fmt::format("{}:{}", base ? base + 1 : file, line));
}

}  // namespace detail

}  // namespace vi
