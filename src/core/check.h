// Errors: one exception type and one check macro that names the place and the thing at fault.
#pragma once

#include <spdlog/fmt/fmt.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace vi {

// Every error the project raises: message first, then " (file:line)".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// "a, b or c" for messages (last_joiner between the last two; ", " for a plain list).
std::string join_list(const std::vector<std::string>& items, const char* last_joiner = " or ");

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
}  // namespace detail

}  // namespace vi

// VI_CHECK(cond, "format {}", args...): throws vi::Error with the formatted message and file:line.
#define VI_CHECK(cond, ...)                                                    \
  do {                                                                         \
    if (!(cond)) {                                                             \
      ::vi::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
    }                                                                          \
  } while (0)

// VI_FAIL("format {}", args...): unconditional error.
#define VI_FAIL(...) ::vi::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))
