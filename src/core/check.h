// Errors: one exception type and one check macro that names the place and the thing at fault.
#pragma once

#include <spdlog/fmt/fmt.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace vi {

// Every error the project raises. what() is the message, then " (file:line)" when raised by
// VI_CHECK/VI_FAIL; message() and location() are the two parts, so that the command line shows
// the location to developers (--log-level debug) and only the message to users.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, const std::string& location = {})
      : std::runtime_error(location.empty() ? message : message + " (" + location + ")"),
        message_(message),
        location_(location) {}
  const std::string& message() const { return message_; }
  const std::string& location() const { return location_; }  // "file.cpp:123", or ""

 private:
  std::string message_, location_;
};

// The command line or the settings are wrong: found before any work, identically on every rank
// (the command line exits with code 2, reported once, without aborting the MPI job).
class UsageError : public Error {
 public:
  using Error::Error;
  explicit UsageError(const Error& e) : Error(e.message(), e.location()) {}
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
