// NCCL: a communicator for CUDA tensors. MPI or the rendezvous store only bootstraps it (the
// unique id is broadcast, the node-local rank picks the GPU); NCCL moves the data. Without MPI
// (srun, torchrun), a world of several ranks shares the id through the rendezvous store at
// MASTER_ADDR:MASTER_PORT, or through the file named by VI_NCCL_ID_FILE (rank 0 writes it).
//
// Streams: NCCL runs on the communicator's own stream. Each call waits (on the GPU, through an
// event) for the work queued so far on torch's current stream, and torch's stream waits for the
// call's transfers before its next kernel: results are ordered like any other op, the host
// never blocks (except in barrier()), and compute on other streams can overlap the transfers.
// Tensors the call reads or writes are only reused by the caching allocator for work on the
// current stream, which is ordered after the transfers, so no recordStream is needed.
#include <ATen/ATen.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <type_traits>

#include "core/check.h"
#include "parallel/launch.h"
#include "video_infinity/communicator.h"

#ifdef VI_TORCH_HAS_CUDA
#include <c10/cuda/CUDAStream.h>
#endif
#ifdef VI_HAVE_STORE
#include <torch/csrc/distributed/c10d/Store.hpp>
#endif

namespace vi::parallel {

#define VI_CUDA_CHECK(call)                                                                             \
  do {                                                                                                  \
    cudaError_t vi_cuda_rc = (call);                                                                    \
    VI_CHECK(vi_cuda_rc == cudaSuccess, "CUDA error on {}: {} failed: {}", host_name(), #call,           \
             cudaGetErrorString(vi_cuda_rc));                                                           \
  } while (0)

#define VI_NCCL_CHECK(call)                                                                             \
  do {                                                                                                  \
    ncclResult_t vi_nccl_rc = (call);                                                                   \
    VI_CHECK(vi_nccl_rc == ncclSuccess, "NCCL error on rank {} ({}): {} failed: {}", rank_, host_name(), \
             #call, ncclGetErrorString(vi_nccl_rc));                                                    \
  } while (0)

bool built_with_nccl() { return true; }

namespace {

ncclDataType_t nccl_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kDouble: return ncclFloat64;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte:
    case at::kBool: return ncclUint8;
    default: VI_FAIL("NCCL: unsupported dtype {}", c10::toString(type));
  }
}

// A CUDA or NCCL handle (a pointer type) that `Release` frees when it goes out of scope.
// Release results are ignored: nothing can be done about a failure while tearing down.
template <typename Handle, auto Release>
struct ReleaseHandle {
  void operator()(Handle handle) const { static_cast<void>(Release(handle)); }
};
template <typename Handle, auto Release>
using UniqueHandle = std::unique_ptr<std::remove_pointer_t<Handle>, ReleaseHandle<Handle, Release>>;

using UniqueNcclComm = UniqueHandle<ncclComm_t, ncclCommDestroy>;
using UniqueCudaStream = UniqueHandle<cudaStream_t, cudaStreamDestroy>;
using UniqueCudaEvent = UniqueHandle<cudaEvent_t, cudaEventDestroy>;
using UniqueDeviceInt = UniqueHandle<int32_t*, cudaFree>;

ncclUniqueId share_unique_id(const LaunchInfo& launch) {
  ncclUniqueId id{};
  if (launch.rank == 0) {
    ncclResult_t rc = ncclGetUniqueId(&id);
    VI_CHECK(rc == ncclSuccess, "ncclGetUniqueId failed: {}", ncclGetErrorString(rc));
  }
  if (launch.world_size == 1) return id;
#ifdef VI_HAVE_MPI
  if (launch.mpi) {
    mpi_broadcast_bytes(&id, sizeof(id), 0);
    return id;
  }
#endif
  const char* file = std::getenv("VI_NCCL_ID_FILE");
#ifdef VI_HAVE_STORE
  // srun or torchrun: through the rendezvous store (rank 0 sets, the others wait for it). The
  // store stays up: ncclCommInitRank returns only once every rank has joined, so every rank has
  // read the id by then.
  if (!launch.master_addr.empty() && (file == nullptr || *file == '\0')) {
    auto store = rendezvous_store(launch);
    static int made = 0;  // communicators are made in the same order on every rank
    const std::string key = "nccl-id/" + std::to_string(made++);
    if (launch.rank == 0) {
      const auto* p = reinterpret_cast<const uint8_t*>(&id);
      store->set(key, std::vector<uint8_t>(p, p + sizeof(id)));
    } else {
      const std::vector<uint8_t> bytes = store->get(key);
      VI_CHECK(bytes.size() == sizeof(id), "rank {}: the NCCL id in the rendezvous store has {} bytes, expected {}",
               launch.rank, bytes.size(), sizeof(id));
      std::memcpy(&id, bytes.data(), sizeof(id));
    }
    return id;
  }
#endif
  VI_CHECK(file != nullptr && *file,
           "NCCL world of {} ranks without MPI ({}): set MASTER_ADDR and MASTER_PORT (a rendezvous at rank 0's host), "
           "or VI_NCCL_ID_FILE to a path every rank can read",
           launch.world_size, launcher_name(launch.launcher));
  namespace fs = std::filesystem;
  if (launch.rank == 0) {
    const std::string tmp = std::string(file) + ".tmp";
    std::ofstream(tmp, std::ios::binary).write(reinterpret_cast<const char*>(&id), sizeof(id));
    fs::rename(tmp, file);
  } else {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(file) || fs::file_size(file) != sizeof(id)) {
      VI_CHECK(std::chrono::steady_clock::now() < deadline, "rank {}: waited 120 s for rank 0 to write {}",
               launch.rank, file);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::ifstream(file, std::ios::binary).read(reinterpret_cast<char*>(&id), sizeof(id));
  }
  return id;
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const LaunchInfo& launch) : rank_(launch.rank), size_(launch.world_size) {
    int devices = 0;
    VI_CUDA_CHECK(cudaGetDeviceCount(&devices));
    VI_CHECK(devices > 0, "rank {} ({}): NCCL needs a CUDA device and none is visible", rank_, launch.host);
    device_index_ = launch.local_rank % devices;
    VI_CUDA_CHECK(cudaSetDevice(device_index_));
    ncclUniqueId id = share_unique_id(launch);
    ncclComm_t raw_comm = nullptr;
    VI_NCCL_CHECK(ncclCommInitRank(&raw_comm, size_, id, rank_));
    comm_.reset(raw_comm);
    cudaStream_t raw_stream = nullptr;
    VI_CUDA_CHECK(cudaStreamCreateWithFlags(&raw_stream, cudaStreamNonBlocking));
    comm_stream_.reset(raw_stream);
    ready_ = make_event();
    done_ = make_event();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  c10::Device device() const override { return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device_index_)); }

  at::Tensor all_gather(const at::Tensor& tensor) override {
    at::Tensor in = cuda_contiguous(tensor, "all_gather");
    std::vector<int64_t> shape = in.sizes().vec();
    VI_CHECK(!shape.empty(), "NCCL all_gather: a 0-d tensor cannot be concatenated along dim 0");
    shape[0] *= size_;
    at::Tensor out = at::empty(shape, in.options());
    on_comm_stream("all_gather", [&] {
      VI_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), nccl_type(in.scalar_type()), comm(),
                                  stream()));
    });
    count_sent(in.nbytes() * (size_ - 1));
    return out;
  }

  void all_reduce_sum(at::Tensor& tensor) override {
    at::Tensor work = cuda_contiguous(tensor, "all_reduce_sum");
    on_comm_stream("all_reduce_sum", [&] {
      VI_NCCL_CHECK(ncclAllReduce(work.data_ptr(), work.data_ptr(), work.numel(), nccl_type(work.scalar_type()),
                                  ncclSum, comm(), stream()));
    });
    if (size_ > 1) count_sent(work.nbytes());
    if (!work.is_same(tensor)) tensor.copy_(work);
  }

  Neighbors exchange_neighbors(const at::Tensor& to_left, const at::Tensor& to_right, Topology topology) override {
    at::Tensor left_out = cuda_contiguous(to_left, "exchange_neighbors");
    at::Tensor right_out = cuda_contiguous(to_right, "exchange_neighbors");
    const NeighborRanks peer = neighbor_ranks(rank_, size_, topology);
    if (peer.left == rank_) return {right_out.clone(), left_out.clone()};  // a ring of one
    Neighbors got;
    if (peer.left >= 0) got.from_left = at::empty_like(right_out);
    if (peer.right >= 0) got.from_right = at::empty_like(left_out);
    // One group: NCCL schedules the four transfers together, so no order can deadlock. NCCL
    // matches one pair's transfers in the order they are issued: receives from the left then the
    // right, sends to the right then the left, so that on a ring of two (both neighbours the same
    // rank) each receive meets the send meant for it.
    on_comm_stream("exchange_neighbors", [&] {
      VI_NCCL_CHECK(ncclGroupStart());
      if (peer.left >= 0) {
        VI_NCCL_CHECK(ncclRecv(got.from_left.data_ptr(), got.from_left.numel(), nccl_type(right_out.scalar_type()),
                               peer.left, comm(), stream()));
      }
      if (peer.right >= 0) {
        VI_NCCL_CHECK(ncclRecv(got.from_right.data_ptr(), got.from_right.numel(), nccl_type(left_out.scalar_type()),
                               peer.right, comm(), stream()));
        VI_NCCL_CHECK(ncclSend(right_out.data_ptr(), right_out.numel(), nccl_type(right_out.scalar_type()),
                               peer.right, comm(), stream()));
      }
      if (peer.left >= 0) {
        VI_NCCL_CHECK(ncclSend(left_out.data_ptr(), left_out.numel(), nccl_type(left_out.scalar_type()), peer.left,
                               comm(), stream()));
      }
      VI_NCCL_CHECK(ncclGroupEnd());
    });
    if (peer.left >= 0) count_sent(left_out.nbytes());
    if (peer.right >= 0) count_sent(right_out.nbytes());
    return got;
  }

  void broadcast(at::Tensor& tensor, int root) override {
    VI_CHECK(root >= 0 && root < size_, "broadcast: root {} outside a world of {}", root, size_);
    at::Tensor work = cuda_contiguous(tensor, "broadcast");
    on_comm_stream("broadcast", [&] {
      VI_NCCL_CHECK(ncclBroadcast(work.data_ptr(), work.data_ptr(), work.numel(), nccl_type(work.scalar_type()),
                                  root, comm(), stream()));
    });
    if (rank_ == root) count_sent(work.nbytes() * (size_ - 1));
    if (!work.is_same(tensor)) tensor.copy_(work);
  }

  // The one call where the host waits: until every rank has reached it, or timeout().
  void barrier() override {
    if (!barrier_flag_) {
      int32_t* flag = nullptr;
      VI_CUDA_CHECK(cudaMalloc(&flag, sizeof(int32_t)));
      barrier_flag_.reset(flag);
    }
    on_comm_stream("barrier", [&] {
      int32_t* flag = barrier_flag_.get();
      VI_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int32_t), stream()));
      VI_NCCL_CHECK(ncclAllReduce(flag, flag, 1, ncclInt32, ncclSum, comm(), stream()));
    });
    wait_host("barrier");
  }

  // On CUDA this communicator's transfers are queued without the host waiting, so a rank that
  // stops would stall the other ranks' GPU queues forever, and no host call would notice. One
  // host-side barrier per step, under --comm-timeout, bounds that wait and turns it into an
  // error; without a timeout it could only wait forever, so it is skipped. The MPI communicator
  // times out inside every call instead and needs nothing here.
  void step_boundary() override {
    if (world_size() > 1 && timeout() > 0) barrier();
  }

  void send(const at::Tensor& tensor, int dst) override {
    at::Tensor t = cuda_contiguous(tensor, "send");
    on_comm_stream("send", [&] {
      VI_NCCL_CHECK(ncclSend(t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), dst, comm(), stream()));
    });
    count_sent(t.nbytes());
  }

  void recv(at::Tensor& tensor, int src) override {
    VI_CHECK(tensor.is_contiguous(), "NCCL recv: needs a contiguous tensor");
    cuda_contiguous(tensor, "recv");
    on_comm_stream("recv", [&] {
      VI_NCCL_CHECK(
          ncclRecv(tensor.data_ptr(), tensor.numel(), nccl_type(tensor.scalar_type()), src, comm(), stream()));
    });
  }

 private:
  // The stream the caller's work is on: torch's current stream when LibTorch has CUDA, else the
  // legacy default stream.
  cudaStream_t compute_stream() const {
#ifdef VI_TORCH_HAS_CUDA
    return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_index_)).stream();
#else
    return cudaStreamLegacy;
#endif
  }

  // Throws when a previous call aborted the communicator or NCCL reports an asynchronous error
  // (a peer failed); costs no synchronisation.
  void check_usable(const char* op) {
    VI_CHECK(comm_ != nullptr, "NCCL {} on rank {} ({}): the communicator was aborted by an earlier timeout or error",
             op, rank_, host_name());
    const ncclResult_t async = take_async_error();
    VI_CHECK(async == ncclSuccess, "NCCL {} on rank {} ({}): asynchronous NCCL error from an earlier call: {}", op,
             rank_, host_name(), ncclGetErrorString(async));
  }

  // NCCL's asynchronous error state (a peer failed); on an error the communicator is aborted.
  ncclResult_t take_async_error() {
    ncclResult_t async = ncclSuccess;
    VI_NCCL_CHECK(ncclCommGetAsyncError(comm(), &async));
    if (async != ncclSuccess) abort_comm();
    return async;
  }

  // Runs `enqueue` (NCCL calls on comm_stream_) after the work queued so far on the compute
  // stream, and makes the compute stream's later work wait for it. No host synchronisation.
  template <typename F>
  void on_comm_stream(const char* op, F&& enqueue) {
    check_usable(op);
    VI_CUDA_CHECK(cudaEventRecord(ready_.get(), compute_stream()));
    VI_CUDA_CHECK(cudaStreamWaitEvent(stream(), ready_.get(), 0));
    enqueue();
    VI_CUDA_CHECK(cudaEventRecord(done_.get(), stream()));
    VI_CUDA_CHECK(cudaStreamWaitEvent(compute_stream(), done_.get(), 0));
  }

  // The host waits for the last call's transfers: polls its event and NCCL's asynchronous error
  // state; past timeout() (0 = forever) or on an error the communicator is aborted (which also
  // ends the transfers stuck on the GPU) and a vi::Error names the operation.
  void wait_host(const char* op) {
    const auto start = std::chrono::steady_clock::now();
    const double limit = timeout();
    for (int polls = 0;; ++polls) {
      const cudaError_t state = cudaEventQuery(done_.get());
      if (state == cudaSuccess) return;
      VI_CHECK(state == cudaErrorNotReady, "CUDA error on rank {} ({}) waiting for NCCL {}: {}", rank_, host_name(),
               op, cudaGetErrorString(state));
      const ncclResult_t async = take_async_error();
      VI_CHECK(async == ncclSuccess, "NCCL {} on rank {} ({}) failed: {} (another rank failed or left)", op, rank_,
               host_name(), ncclGetErrorString(async));
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (limit > 0 && waited > limit) {
        abort_comm();
        VI_FAIL("NCCL {} on rank {} ({}): not complete after {:.1f} s (communicator timeout {} s): other ranks of the "
                "world of {} are unresponsive (stopped, dead or hung); communicator aborted",
                op, rank_, host_name(), waited, limit, size_);
      }
      // Spin briefly (a barrier usually completes in microseconds), then sleep between polls.
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Aborting frees the communicator: release it from comm_ so it is not destroyed again.
  void abort_comm() {
    if (comm_) ncclCommAbort(comm_.release());
  }

  ncclComm_t comm() const { return comm_.get(); }
  cudaStream_t stream() const { return comm_stream_.get(); }

  static UniqueCudaEvent make_event() {
    cudaEvent_t event = nullptr;
    VI_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    return UniqueCudaEvent(event);
  }

  at::Tensor cuda_contiguous(const at::Tensor& t, const char* op) const {
    VI_CHECK(t.defined(), "NCCL {}: undefined tensor", op);
    VI_CHECK(t.device().is_cuda() && t.device().index() == device_index_,
             "NCCL {}: tensor on {}, expected cuda:{}", op, t.device().str(), device_index_);
    return t.contiguous();
  }

  int rank_ = 0;
  int size_ = 1;
  int device_index_ = 0;
  // Members are destroyed bottom-up: the communicator before the stream and events its queued
  // work uses, the barrier's device memory last.
  UniqueDeviceInt barrier_flag_;
  UniqueCudaStream comm_stream_;
  UniqueCudaEvent ready_, done_;  // compute -> comm, comm -> compute
  UniqueNcclComm comm_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const LaunchInfo& launch) {
  return std::make_unique<NcclCommunicator>(launch);
}

}  // namespace vi::parallel
