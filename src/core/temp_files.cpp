#include "core/temp_files.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <unistd.h>

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

}  // namespace vi::core
