#include "video_infinity/communicator.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "parallel/launch.h"

namespace vi::parallel {

namespace {

// The single-process world: every collective is the identity.
class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(c10::Device device) : device_(device) {}
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string name() const override { return "local"; }
  c10::Device device() const override { return device_; }
  at::Tensor all_gather(const at::Tensor& tensor) override { return tensor.clone(); }
  void all_reduce_sum(at::Tensor&) override {}
  // On a ring the only rank is its own neighbour on both sides.
  Neighbors exchange_neighbors(const at::Tensor& to_left, const at::Tensor& to_right, Topology topology) override {
    if (topology == Topology::kLine) return {};
    return {to_right.clone(), to_left.clone()};
  }
  void broadcast(at::Tensor&, int root) override {
    VI_CHECK(root == 0, "broadcast: root {} outside a world of 1", root);
  }
  void barrier() override {}
  void send(const at::Tensor&, int dst) override { VI_FAIL("send to rank {} in a world of 1", dst); }
  void recv(at::Tensor&, int src) override { VI_FAIL("recv from rank {} in a world of 1", src); }

 private:
  c10::Device device_;
};

}  // namespace

NeighborRanks neighbor_ranks(int rank, int size, Topology topology) {
  if (topology == Topology::kRing) return {(rank + size - 1) % size, (rank + 1) % size};
  return {rank > 0 ? rank - 1 : -1, rank + 1 < size ? rank + 1 : -1};
}

std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& text) {
  const auto on_device = at::TensorOptions().device(comm.device());
  const at::Tensor lengths =
      comm.all_gather(at::full({1}, static_cast<int64_t>(text.size()), on_device.dtype(at::kLong))).cpu();
  const int64_t longest = std::max<int64_t>(lengths.max().item<int64_t>(), 1);
  at::Tensor mine = at::zeros({1, longest}, at::kByte);
  std::copy(text.begin(), text.end(), mine.data_ptr<uint8_t>());
  const at::Tensor all = comm.all_gather(mine.to(comm.device())).cpu().contiguous();  // [world, longest]
  std::vector<std::string> out;
  for (int64_t r = 0; r < comm.world_size(); ++r) {
    const auto* row = all.data_ptr<uint8_t>() + r * longest;
    out.emplace_back(reinterpret_cast<const char*>(row), static_cast<size_t>(lengths[r].item<int64_t>()));
  }
  return out;
}

std::unique_ptr<Communicator> make_local_communicator(c10::Device device) {
  return std::make_unique<LocalCommunicator>(device);
}

std::unique_ptr<Communicator> make_communicator(const LaunchInfo& launch, c10::Device device) {
  if (launch.world_size == 1) return make_local_communicator(device);
  if (device.is_cuda()) return make_nccl_communicator(launch);
  if (launch.mpi) return make_mpi_communicator();
  VI_CHECK(!launch.master_addr.empty(),
           "a world of {} ranks on the CPU started by {} needs MPI or a rendezvous: set MASTER_ADDR and "
           "MASTER_PORT (rank 0's host and a free port), or launch with mpirun",
           launch.world_size, launcher_name(launch.launcher));
  return make_store_communicator(launch);
}

}  // namespace vi::parallel

// Fallbacks for builds without the optional libraries.
namespace vi::parallel {

#ifndef VI_HAVE_MPI
bool built_with_mpi() { return false; }
LaunchInfo init_launch(int*, char***) { return launch_from_environment(); }
void finalize_launch() {}
[[noreturn]] void abort_job(int code) { std::exit(code); }
std::unique_ptr<Communicator> make_mpi_communicator() {
  VI_FAIL("this binary was built without MPI (configure with VI_WITH_MPI=ON and an MPI installed)");
}
#endif

#ifndef VI_HAVE_STORE
bool built_with_store() { return false; }
std::unique_ptr<Communicator> make_store_communicator(const LaunchInfo&) {
  VI_FAIL("this LibTorch has no c10d TCPStore (torch/csrc/distributed/c10d/TCPStore.hpp): a job without MPI needs "
          "a LibTorch built with distributed support (the PyPI wheels are), or mpirun");
}
#endif

#ifndef VI_HAVE_NCCL
bool built_with_nccl() { return false; }
std::unique_ptr<Communicator> make_nccl_communicator(const LaunchInfo&) {
  VI_FAIL("this binary was built without NCCL (configure with VI_WITH_NCCL=ON, the CUDA toolkit and NCCL)");
}
#endif

}  // namespace vi::parallel
