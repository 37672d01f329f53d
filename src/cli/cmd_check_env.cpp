// `video-infinity check-env`: what this binary was built with, where each rank runs, and a
// quick test of the communicator every generation will use (values checked, bandwidth timed).
// Run it under the job's launcher before a long job on a new cluster: `mpirun -np N
// video-infinity check-env`, `srun video-infinity check-env`, or torchrun-style (README).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "core/check.h"

namespace vi::cli {

namespace {

struct Options {
  std::string device = "auto";
  double megabytes = 8.0;
  int rounds = 5;
};

int run(const Options& opt, const parallel::LaunchInfo& launch) {
  c10::Device device = c10::kCPU;
  if (opt.device == "cuda" || (opt.device == "auto" && at::hasCUDA())) {
    VI_CHECK(at::hasCUDA(), "--device cuda: this LibTorch has no CUDA or no GPU is visible");
    device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(launch.local_rank % at::getNumGPUs()));
  }
  if (launch.rank == 0) {
    std::printf("video-infinity %s\n", VI_VERSION);
    std::printf("  LibTorch %s, CUDA %s, intra-op threads %d\n", TORCH_VERSION, at::hasCUDA() ? "available" : "not available",
                at::get_num_threads());
    std::printf("  MPI %s, NCCL %s, rendezvous store (c10d TCPStore) %s\n",
                parallel::built_with_mpi() ? "built in" : "not built",
                parallel::built_with_nccl() ? "built in" : "not built",
                parallel::built_with_store() ? "built in" : "not built");
#ifdef VI_HAVE_FFMPEG
    std::printf("  ffmpeg (libavcodec) built in\n");
#else
    std::printf("  ffmpeg not built: frames are written as PNG only\n");
#endif
  }
  auto comm = parallel::make_communicator(launch, device);
  const int r = comm->rank();
  const int n = comm->world_size();
  const auto opts = at::TensorOptions().device(device);

  // Where every rank runs, as each sees itself (rank 0 prints the list).
  const std::vector<std::string> ranks = parallel::all_gather_strings(
      *comm, fmt::format("local rank {}, host {}, device {}", launch.local_rank, launch.host, device.str()));
  if (r == 0) {
    std::printf("launched by %s: %d rank%s", parallel::launcher_name(launch.launcher).c_str(), n, n == 1 ? "" : "s");
    if (!launch.master_addr.empty() && !launch.mpi && n > 1) {
      std::printf(", rendezvous %s:%d (%s)", launch.master_addr.c_str(), launch.master_port,
                  launch.agent_store ? "torchrun's agent" : "served by rank 0");
    }
    std::printf("\n");
    for (int i = 0; i < n; ++i) std::printf("  rank %d: %s\n", i, ranks[static_cast<size_t>(i)].c_str());
  }

  // Identity: every rank reports (rank, local rank) and its host name's length.
  at::Tensor ids = comm->all_gather(at::tensor({static_cast<int64_t>(r), static_cast<int64_t>(launch.local_rank)},
                                               at::kLong).reshape({1, 2}).to(device));
  bool ok = true;
  auto ids_cpu = ids.cpu();
  for (int i = 0; i < n; ++i) ok &= ids_cpu[i][0].item<int64_t>() == i;

  // Neighbour exchange: each rank sends its rank number both ways.
  auto got = comm->exchange_neighbors(at::full({4}, static_cast<float>(r), opts), at::full({4}, static_cast<float>(r), opts));
  if (r > 0) ok &= got.from_left.cpu().eq(r - 1).all().item<bool>();
  if (r + 1 < n) ok &= got.from_right.cpu().eq(r + 1).all().item<bool>();

  // Bandwidth of the two patterns the denoiser uses.
  const int64_t elems = static_cast<int64_t>(opt.megabytes * (1 << 20) / 4);
  at::Tensor payload = at::full({elems}, static_cast<float>(r), opts);
  comm->barrier();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < opt.rounds; ++i) comm->exchange_neighbors(payload, payload);
  comm->barrier();
  auto t1 = std::chrono::steady_clock::now();
  at::Tensor gathered;
  for (int i = 0; i < opt.rounds; ++i) gathered = comm->all_gather(payload);
  comm->barrier();
  auto t2 = std::chrono::steady_clock::now();
  auto g = gathered.cpu();
  for (int i = 0; i < n; ++i) ok &= g[i * elems].item<float>() == static_cast<float>(i);

  at::Tensor flag = at::full({1}, ok ? 0.0f : 1.0f, opts);
  comm->all_reduce_sum(flag);
  const bool all_ok = flag.cpu().item<float>() == 0.0f;
  if (r == 0) {
    const double ex = std::chrono::duration<double>(t1 - t0).count() / opt.rounds;
    const double ag = std::chrono::duration<double>(t2 - t1).count() / opt.rounds;
    std::printf("communicator: %s, %d rank%s, device %s\n", comm->name().c_str(), n, n == 1 ? "" : "s",
                device.str().c_str());
    std::printf("  neighbour exchange of %.1f MB: %.3f ms\n", opt.megabytes, ex * 1e3);
    std::printf("  all-gather of %.1f MB per rank: %.3f ms\n", opt.megabytes, ag * 1e3);
    std::printf("  values checked on every rank: %s\n", all_ok ? "OK" : "MISMATCH");
  }
  return all_ok ? 0 : 1;
}

}  // namespace

Runner add_check_env(CLI::App& app) {
  auto opt = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("check-env", "Report the build and test the communicator between all ranks");
  cmd->add_option("--device", opt->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--megabytes", opt->megabytes, "Payload for the bandwidth test")->check(CLI::Range(0.001, 4096.0))
      ->capture_default_str();
  cmd->add_option("--rounds", opt->rounds, "Repetitions of each timed exchange")->check(CLI::Range(1, 1000))
      ->capture_default_str();
  return [cmd, opt](const parallel::LaunchInfo& launch) { return cmd->parsed() ? run(*opt, launch) : -1; };
}

}  // namespace vi::cli
