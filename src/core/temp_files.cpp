#include "core/temp_files.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
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
  char path[kPathMax] = {};
};
Slot g_slots[kSlots];
std::mutex g_mutex;  // between registering threads only; the handler never takes it

extern "C" void remove_temp_files_and_end(int sig) {
  for (auto& slot : g_slots) {
    if (slot.used.load()) ::unlink(slot.path);
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

void install_termination_cleanup() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
      struct sigaction action = {};
      action.sa_handler = remove_temp_files_and_end;
      sigemptyset(&action.sa_mask);
      sigaction(sig, &action, nullptr);
    }
  });
}

void TempFileGuard::reset(const std::string& path) {
  release();
  if (path.size() >= kPathMax) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  for (int i = 0; i < kSlots; ++i) {
    if (!g_slots[i].used.load()) {
      std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
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
    if (fs::remove(e.path(), rm)) {
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

void check_creatable_dir(const std::string& dir, const char* flag) {
  namespace fs = std::filesystem;
  fs::path p = fs::absolute(dir);
  while (!fs::exists(p) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  VI_CHECK(fs::is_directory(p), "{}: '{}' is not a directory", flag, p.string());
  check_writable((p / "probe").string(), flag);
}

}  // namespace vi::core
