#include "pipeline/peak_memory.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/memory_stats.h"
#include "parallel/launch.h"
#include "video_infinity/communicator.h"

#ifdef VI_TORCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace vi::pipeline {

namespace {

// The caching allocator's peak on `device`; nullopt off CUDA (or in a LibTorch without it).
std::optional<int64_t> cuda_peak_allocated(c10::Device device) {
#ifdef VI_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    // Device("cuda") has index -1 ("current"); the statistics want a real one.
    const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
#endif
  return std::nullopt;
}

std::string bytes_str(const nlohmann::json& bytes) {
  if (!bytes.is_number()) return "-";
  const double b = bytes.get<double>();
  return b >= 1e9 ? fmt::format("{:.2f} GB", b / 1e9) : fmt::format("{:.1f} MB", b / 1e6);
}

}  // namespace

std::vector<RankPeakMemory> gather_peak_memory(parallel::Communicator& comm) {
  const auto cuda = cuda_peak_allocated(comm.device());
  // [rss, has cuda, cuda] per rank; int64 is exact.
  at::Tensor mine = at::tensor(std::vector<int64_t>{core::peak_rss_bytes(), cuda ? 1 : 0, cuda.value_or(0)},
                               at::TensorOptions().dtype(at::kLong))
                        .reshape({1, 3});
  at::Tensor all = comm.all_gather(mine.to(comm.device())).cpu().contiguous();  // [world, 3]
  const std::vector<std::string> hosts = parallel::all_gather_strings(comm, parallel::host_name());
  const auto* v = all.data_ptr<int64_t>();
  std::vector<RankPeakMemory> out;
  for (int r = 0; r < all.size(0); ++r) {
    RankPeakMemory m;
    m.rank = r;
    m.host = hosts[static_cast<size_t>(r)];
    m.rss_bytes = v[3 * r];
    if (v[3 * r + 1] != 0) m.cuda_bytes = v[3 * r + 2];
    out.push_back(m);
  }
  return out;
}

nlohmann::json peak_memory_json(const std::vector<RankPeakMemory>& ranks) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : ranks) {
    out.push_back({{"rank", m.rank},
                   {"host", m.host},
                   {"rss_bytes", m.rss_bytes},
                   {"cuda_bytes", m.cuda_bytes ? nlohmann::json(*m.cuda_bytes) : nlohmann::json(nullptr)}});
  }
  return out;
}

std::string peak_memory_summary(const nlohmann::json& peak_memory) {
  if (!peak_memory.is_array() || peak_memory.empty()) return {};
  bool cuda = false;
  for (const auto& m : peak_memory) cuda |= m.value("cuda_bytes", nlohmann::json()).is_number();
  if (peak_memory.size() == 1) {
    const auto& m = peak_memory[0];
    return fmt::format("peak memory: {} RSS{}\n", bytes_str(m["rss_bytes"]),
                       cuda ? ", " + bytes_str(m["cuda_bytes"]) + " CUDA allocated" : "");
  }
  // The host column only when the ranks ran on more than one host.
  const std::string first_host = peak_memory[0].value("host", std::string());
  bool hosts = false;
  for (const auto& m : peak_memory) hosts |= m.value("host", std::string()) != first_host;
  std::string s = std::string("| rank |") + (hosts ? " host |" : "") + " peak RSS |" +
                  (cuda ? " peak CUDA allocated |" : "") + "\n|---|" + (hosts ? "---|" : "") + "---|" +
                  (cuda ? "---|" : "") + "\n";
  for (const auto& m : peak_memory) {
    s += fmt::format("| {} |", m["rank"].get<int>());
    if (hosts) s += fmt::format(" {} |", m.value("host", std::string()));
    s += fmt::format(" {} |", bytes_str(m["rss_bytes"]));
    s += cuda ? fmt::format(" {} |\n", bytes_str(m["cuda_bytes"])) : "\n";
  }
  return s;
}

}  // namespace vi::pipeline
