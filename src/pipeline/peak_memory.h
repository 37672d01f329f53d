// Peak memory of every rank, for the summary, the sidecar and --progress json's last event:
// the process's peak resident set (VmHWM) and, on CUDA, the caching allocator's peak of
// allocated bytes on the rank's device.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vi::parallel {
class Communicator;
}

namespace vi::pipeline {

struct RankPeakMemory {
  int rank = 0;
  std::string host;                   // where the rank ran (several nodes: which node to look at)
  int64_t rss_bytes = 0;
  std::optional<int64_t> cuda_bytes;  // on a CUDA device only
};

// Every rank's peaks and host name, in rank order, on every rank: an all_gather of 3 numbers and
// one of the names. Collective.
std::vector<RankPeakMemory> gather_peak_memory(parallel::Communicator& comm);

// [{"rank":0,"host":"node01","rss_bytes":..,"cuda_bytes":..|null}, ...]
nlohmann::json peak_memory_json(const std::vector<RankPeakMemory>& ranks);
// For the summary: "peak memory: 612.3 MB RSS, 4.21 GB CUDA allocated" for one rank, else a
// table with a row per rank (and its host when the ranks ran on more than one).
std::string peak_memory_summary(const nlohmann::json& peak_memory);

}  // namespace vi::pipeline
