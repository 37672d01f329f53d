#include "core/temp_files.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/check.h"

namespace vi::core {

namespace {

// Fixed storage the handler can read without allocating: a slot is published by setting
// `used` after its path is written, and retired by clearing `used` first.
constexpr int kSlots = 64;
constexpr size_t kPathMax = 4096;
struct Slot {
  std::atomic<bool> used{false};
  bool directory = false;
  char path[kPathMax] = {};
};
Slot g_slots[kSlots];
std::mutex g_mutex;  // between registering threads only; the handler never takes it

// The termination message, double-buffered: set_termination_message writes the buffer not being
// shown and then publishes it, so the handler always reads a complete line.
constexpr size_t kMessageMax = 8192;
struct Message {
  char rest[kMessageMax];
  char gone_path[kPathMax];  // "" or: when this path is missing, rest_if_gone is shown instead
  char rest_if_gone[kMessageMax];
};
Message g_messages[2] = {};
std::atomic<int> g_message{-1};  // index of the published buffer; -1: none
std::mutex g_message_mutex;

void write_all(const char* text, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, size);
    if (n <= 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text += n;
    size -= static_cast<size_t>(n);
  }
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    default: return "a signal";
  }
}

// The files of a directory (one level), then the directory; only async-signal-safe calls (no
// opendir: it allocates).
void remove_directory(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    alignas(8) char buf[8192];
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buf, sizeof(buf));
      if (n <= 0) break;
      for (long off = 0; off < n;) {
        const auto* entry = reinterpret_cast<const struct dirent64*>(buf + off);
        const char* name = entry->d_name;
        if (std::strcmp(name, ".") != 0 && std::strcmp(name, "..") != 0) ::unlinkat(fd, name, 0);
        off += entry->d_reclen;
      }
    }
    ::close(fd);
  }
  ::rmdir(path);
}

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};

extern "C" void remove_temp_files_and_end(int sig) {
  const int saved_errno = errno;
  for (auto& slot : g_slots) {
    if (!slot.used.load()) continue;
    if (slot.directory) {
      remove_directory(slot.path);
    } else {
      ::unlink(slot.path);
    }
  }
  const int shown = g_message.load();
  if (shown >= 0) {
    const char* prefix = "video-infinity: interrupted by ";
    write_all(prefix, std::strlen(prefix));
    write_all(signal_name(sig), std::strlen(signal_name(sig)));
    const Message& m = g_messages[shown];
    const char* rest = m.gone_path[0] != '\0' && ::access(m.gone_path, F_OK) != 0 ? m.rest_if_gone : m.rest;
    write_all(rest, std::strlen(rest));
    write_all("\n", 1);
  }
  errno = saved_errno;
  // Every handled signal back to its default: one still pending (blocked while this handler
  // runs: mpirun's SIGTERM after a Ctrl-C) ends the process without a second message.
  for (int other : kSignals) std::signal(other, SIG_DFL);
  std::raise(sig);  // delivered when the handler returns and the signal is unblocked
}

}  // namespace

void install_termination_cleanup() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action = {};
    action.sa_handler = remove_temp_files_and_end;
    // One handler at a time: a second signal (mpirun's SIGTERM after a Ctrl-C, a SIGPIPE from
    // writing the message) waits, and ends the process once the first has re-raised.
    sigemptyset(&action.sa_mask);
    for (int sig : kSignals) sigaddset(&action.sa_mask, sig);
    for (int sig : kSignals) sigaction(sig, &action, nullptr);
  });
}

void set_termination_message(const std::string& rest, const std::string& gone_path, const std::string& rest_if_gone) {
  auto copy = [](char* to, size_t capacity, const std::string& from) {
    const size_t size = std::min(from.size(), capacity - 1);
    std::memcpy(to, from.data(), size);
    to[size] = '\0';
  };
  std::lock_guard<std::mutex> lock(g_message_mutex);
  const int next = g_message.load() == 0 ? 1 : 0;
  copy(g_messages[next].rest, kMessageMax, rest);
  copy(g_messages[next].gone_path, kPathMax, gone_path.size() < kPathMax ? gone_path : std::string());
  copy(g_messages[next].rest_if_gone, kMessageMax, rest_if_gone);
  g_message.store(next);
}

void clear_termination_message() { g_message.store(-1); }

void TempFileGuard::reset(const std::string& path, bool directory) {
  release();
  if (path.size() >= kPathMax) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (!g_slots[i].used.load()) {
      std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
      g_slots[i].directory = directory;
      g_slots[i].used.store(true);
      slot_ = i;
      return;
    }
  }
  spdlog::debug("temporary file '{}' not registered for removal on termination: all slots in use", path);
}

void TempFileGuard::release() {
  if (slot_ < 0) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_slots[slot_].used.store(false);
  slot_ = -1;
}

namespace {
constexpr const char* kPartial = ".partial-";
}  // namespace

std::string temporary_path(const std::string& path) { return path + kPartial + std::to_string(::getpid()); }

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = temporary_path(path);
  TempFileGuard guard(tmp);
  std::FILE* file = std::fopen(tmp.c_str(), "wb");
  VI_CHECK(file != nullptr, "cannot create '{}' (for '{}'): {}", tmp, path, std::strerror(errno));
  size_t written = std::fwrite(bytes.data(), 1, bytes.size(), file);
  int err = written == bytes.size() ? 0 : (errno != 0 ? errno : EIO);
  if (std::fclose(file) != 0 && err == 0) err = errno;  // buffered data may fail only here
  if (err != 0) {
    std::remove(tmp.c_str());
    VI_FAIL("cannot write '{}' ({} of {} bytes written): {}", tmp, written, bytes.size(), std::strerror(err));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    VI_FAIL("cannot rename '{}' to '{}': {}", tmp, path, ec.message());
  }
}

int remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string prefix = target.filename().string() + kPartial;
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(digits));
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // its writer may still be running
    std::error_code rm;
    if (fs::remove_all(e.path(), rm) > 0) {  // a file, or a directory of frames
      spdlog::info("removed {}, left by an earlier run that was killed", e.path().string());
      ++removed;
    }
  }
  return removed;
}

void check_writable(const std::string& path, const char* flag) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  VI_CHECK(fs::is_directory(dir), "{}: directory '{}' does not exist", flag, dir.string());
  const fs::path probe = dir / (".vi-write-test-" + std::to_string(::getpid()));
  std::ofstream out(probe);
  VI_CHECK(out.good(), "{}: directory '{}' is not writable", flag, dir.string());
  out.close();
  fs::remove(probe);
}

void check_new_output(const std::string& path, const char* flag, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code ec;
  VI_CHECK(!fs::is_directory(path, ec), "{}: '{}' is a directory (give a file name)", flag, path);
  VI_CHECK(overwrite || !fs::exists(fs::symlink_status(path, ec)), "{}: '{}' exists (-y/--overwrite replaces it)", flag,
           path);
}

void check_creatable_dir(const std::string& dir, const char* flag) {
  namespace fs = std::filesystem;
  fs::path p = fs::absolute(dir);
  while (!fs::exists(p) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  VI_CHECK(fs::is_directory(p), "{}: '{}' is not a directory", flag, p.string());
  check_writable((p / "probe").string(), flag);
}

}  // namespace vi::core
