// Process memory figures for benchmarks: peak resident set size, resettable (Linux).
#pragma once

#include <cstdint>

namespace vi::core {

// Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; false where unsupported.
bool reset_peak_rss();
// Peak resident set size since start or the last reset, in bytes (VmHWM).
int64_t peak_rss_bytes();
// Current resident set size in bytes (VmRSS).
int64_t current_rss_bytes();

}  // namespace vi::core
