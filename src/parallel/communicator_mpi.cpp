// MPI: process bootstrap (rank, node-local rank) and a communicator for CPU tensors.
#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/check.h"
#include "parallel/launch.h"
#include "video_infinity/communicator.h"

namespace vi::parallel {

namespace {

bool g_we_initialised = false;

int world_rank() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  int rank = -1;
  if (initialised) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

}  // namespace

#define VI_MPI_CHECK(call)                                                                              \
  do {                                                                                                  \
    int vi_mpi_rc = (call);                                                                             \
    if (vi_mpi_rc != MPI_SUCCESS) {                                                                     \
      char vi_mpi_msg[MPI_MAX_ERROR_STRING] = {};                                                       \
      int vi_mpi_len = 0;                                                                               \
      MPI_Error_string(vi_mpi_rc, vi_mpi_msg, &vi_mpi_len);                                             \
      VI_FAIL("MPI error on rank {} ({}): {} failed: {}", world_rank(), host_name(), #call, vi_mpi_msg); \
    }                                                                                                   \
  } while (0)

bool built_with_mpi() { return true; }

namespace {

// A communicator made by MPI_Comm_dup / MPI_Comm_split_type, freed when it goes out of scope
// unless MPI is finalised by then (freeing after MPI_Finalize is erroneous).
class OwnedMpiComm {
 public:
  OwnedMpiComm() = default;
  ~OwnedMpiComm() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (comm_ != MPI_COMM_NULL && !finalised) MPI_Comm_free(&comm_);
  }
  OwnedMpiComm(const OwnedMpiComm&) = delete;
  OwnedMpiComm& operator=(const OwnedMpiComm&) = delete;

  MPI_Comm get() const { return comm_; }
  MPI_Comm* out() { return &comm_; }  // for the MPI call that creates it

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// True when an MPI launcher (mpirun/mpiexec/srun with PMI) started this process.
bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "PMI_RANK"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

}  // namespace

LaunchInfo init_launch(int* argc, char*** argv) {
  // Started by another launcher (torchrun-style or srun without an MPI plugin, more than one
  // rank): the environment defines the world and MPI stays down (MPI_Init would make each
  // process a world of its own).
  if (!launched_by_mpi()) {
    LaunchInfo env = launch_from_environment();
    if (env.world_size > 1) return env;
  }
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    VI_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    g_we_initialised = true;
    // Errors come back as codes (turned into exceptions) instead of killing the process silently.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  LaunchInfo info;
  info.mpi = true;
  info.launcher = Launcher::kMpi;
  info.host = host_name();
  VI_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &info.rank));
  VI_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &info.world_size));
  OwnedMpiComm node;
  VI_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, node.out()));
  VI_MPI_CHECK(MPI_Comm_rank(node.get(), &info.local_rank));
  return info;
}

void finalize_launch() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (g_we_initialised && !finalised) MPI_Finalize();
}

[[noreturn]] void abort_job(int code) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (initialised && !finalised) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

namespace {

int byte_count(const at::Tensor& t, const char* op) {
  VI_CHECK(t.nbytes() <= static_cast<size_t>(INT_MAX), "MPI {}: tensor of {} bytes exceeds one message (2 GiB)", op,
           t.nbytes());
  return static_cast<int>(t.nbytes());
}

// Every operation is built from non-blocking point-to-point messages completed by one polling
// loop, so that a rank never blocks inside MPI: when a peer stops (SIGSTOP), hangs or dies
// without the launcher noticing, the wait ends after timeout() seconds with an error naming
// the ranks whose messages are missing, and main() ends the job. Each operation has its own
// tag; MPI keeps messages of one (source, tag) in order, and every rank runs the collectives in
// the same order, so messages always meet the right receive.
class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    VI_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, comm_.out()));
    MPI_Comm_set_errhandler(comm_.get(), MPI_ERRORS_RETURN);
    VI_MPI_CHECK(MPI_Comm_rank(comm_.get(), &rank_));
    VI_MPI_CHECK(MPI_Comm_size(comm_.get(), &size_));
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string name() const override { return "mpi"; }
  c10::Device device() const override { return c10::kCPU; }

  at::Tensor all_gather(const at::Tensor& tensor) override {
    at::Tensor in = cpu_contiguous(tensor, "all_gather");
    std::vector<int64_t> shape = in.sizes().vec();
    VI_CHECK(!shape.empty(), "MPI all_gather: a 0-d tensor cannot be concatenated along dim 0");
    shape[0] *= size_;
    at::Tensor out = at::empty(shape, in.options());
    const int count = byte_count(in, "all_gather");
    auto* base = static_cast<uint8_t*>(out.data_ptr());
    std::memcpy(base + static_cast<size_t>(rank_) * count, in.data_ptr(), static_cast<size_t>(count));
    Pending p("all_gather");
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      p.recv(comm_.get(), base + static_cast<size_t>(r) * count, count, r, kTagAllGather);
    }
    for (int r = 0; r < size_; ++r) {
      if (r != rank_) p.send(comm_.get(), in.data_ptr(), count, r, kTagAllGather);
    }
    wait(p);
    count_sent(static_cast<uint64_t>(count) * (size_ - 1));
    return out;
  }

  void all_reduce_sum(at::Tensor& tensor) override {
    VI_CHECK(tensor.device().is_cpu(), "MPI all_reduce_sum: tensor on {}, expected CPU", tensor.device().str());
    if (size_ == 1) return;
    // Every rank sums the same gathered values in rank order: identical results on all ranks.
    // Half types are summed in float32 and cast back.
    at::Tensor work = tensor.contiguous();
    if (work.scalar_type() == at::kHalf || work.scalar_type() == at::kBFloat16) work = work.to(at::kFloat);
    at::Tensor gathered = all_gather(work.reshape({1, -1}));
    tensor.copy_(gathered.sum(0, /*keepdim=*/false, work.scalar_type()).view(tensor.sizes()));
  }

  Neighbors exchange_neighbors(const at::Tensor& to_left, const at::Tensor& to_right, Topology topology) override {
    at::Tensor left_out = cpu_contiguous(to_left, "exchange_neighbors");
    at::Tensor right_out = cpu_contiguous(to_right, "exchange_neighbors");
    const NeighborRanks peer = neighbor_ranks(rank_, size_, topology);
    if (peer.left == rank_) return {right_out.clone(), left_out.clone()};  // a ring of one
    Neighbors got;
    Pending p("exchange_neighbors");
    // Receives first, then sends, all non-blocking: no ordering between ranks can deadlock. The
    // tags keep the two directions apart when both neighbours are the same rank (a ring of two).
    if (peer.left >= 0) {
      got.from_left = at::empty_like(right_out);
      p.recv(comm_.get(), got.from_left.data_ptr(), byte_count(right_out, "exchange"), peer.left, kTagToRight);
    }
    if (peer.right >= 0) {
      got.from_right = at::empty_like(left_out);
      p.recv(comm_.get(), got.from_right.data_ptr(), byte_count(left_out, "exchange"), peer.right, kTagToLeft);
    }
    if (peer.left >= 0) {
      p.send(comm_.get(), left_out.data_ptr(), byte_count(left_out, "exchange"), peer.left, kTagToLeft);
      count_sent(left_out.nbytes());
    }
    if (peer.right >= 0) {
      p.send(comm_.get(), right_out.data_ptr(), byte_count(right_out, "exchange"), peer.right, kTagToRight);
      count_sent(right_out.nbytes());
    }
    wait(p);
    return got;
  }

  void broadcast(at::Tensor& tensor, int root) override {
    VI_CHECK(root >= 0 && root < size_, "broadcast: root {} outside a world of {}", root, size_);
    VI_CHECK(tensor.device().is_cpu(), "MPI broadcast: tensor on {}, expected CPU", tensor.device().str());
    at::Tensor work = tensor.contiguous();
    const int count = byte_count(work, "broadcast");
    Pending p("broadcast");
    if (rank_ == root) {
      for (int r = 0; r < size_; ++r) {
        if (r != root) p.send(comm_.get(), work.data_ptr(), count, r, kTagBroadcast);
      }
      count_sent(work.nbytes() * (size_ - 1));
    } else {
      p.recv(comm_.get(), work.data_ptr(), count, root, kTagBroadcast);
    }
    wait(p);
    if (!work.is_same(tensor)) tensor.copy_(work);
  }

  void barrier() override {
    // A one-byte message to and from every rank: each rank knows which ranks have arrived.
    std::vector<uint8_t> got(static_cast<size_t>(size_));
    uint8_t token = 1;
    Pending p("barrier");
    for (int r = 0; r < size_; ++r) {
      if (r != rank_) p.recv(comm_.get(), &got[static_cast<size_t>(r)], 1, r, kTagBarrier);
    }
    for (int r = 0; r < size_; ++r) {
      if (r != rank_) p.send(comm_.get(), &token, 1, r, kTagBarrier);
    }
    wait(p);
  }

  void send(const at::Tensor& tensor, int dst) override {
    VI_CHECK(dst >= 0 && dst < size_ && dst != rank_, "send: invalid destination rank {}", dst);
    at::Tensor t = cpu_contiguous(tensor, "send");
    Pending p("send");
    p.send(comm_.get(), t.data_ptr(), byte_count(t, "send"), dst, kTagPointToPoint);
    wait(p);
    count_sent(t.nbytes());
  }

  void recv(at::Tensor& tensor, int src) override {
    VI_CHECK(src >= 0 && src < size_ && src != rank_, "recv: invalid source rank {}", src);
    VI_CHECK(tensor.is_contiguous() && tensor.device().is_cpu(), "MPI recv: needs a contiguous CPU tensor");
    Pending p("recv");
    p.recv(comm_.get(), tensor.data_ptr(), byte_count(tensor, "recv"), src, kTagPointToPoint);
    wait(p);
  }

 private:
  static constexpr int kTagToLeft = 101;
  static constexpr int kTagToRight = 102;
  static constexpr int kTagPointToPoint = 103;
  static constexpr int kTagAllGather = 104;
  static constexpr int kTagBroadcast = 105;
  static constexpr int kTagBarrier = 106;

  // The requests of one operation and the rank each one waits on.
  struct Pending {
    explicit Pending(const char* op) : op(op) {}
    void recv(MPI_Comm comm, void* data, int bytes, int peer, int tag) {
      requests.emplace_back();
      peers.push_back(peer);
      receiving.push_back(true);
      VI_MPI_CHECK(MPI_Irecv(data, bytes, MPI_BYTE, peer, tag, comm, &requests.back()));
    }
    void send(MPI_Comm comm, const void* data, int bytes, int peer, int tag) {
      requests.emplace_back();
      peers.push_back(peer);
      receiving.push_back(false);
      VI_MPI_CHECK(MPI_Isend(data, bytes, MPI_BYTE, peer, tag, comm, &requests.back()));
    }
    const char* op;
    std::vector<MPI_Request> requests;
    std::vector<int> peers;
    std::vector<bool> receiving;
  };

  // Completes every request of `p`, or throws once timeout() seconds pass without completion.
  // Polls, backing off from spinning to 1 ms sleeps, so a long wait costs little CPU.
  void wait(Pending& p) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const double limit = timeout();
    const int n = static_cast<int>(p.requests.size());
    for (int64_t polls = 0;; ++polls) {
      int done = 0;
      VI_MPI_CHECK(MPI_Testall(n, p.requests.data(), &done, MPI_STATUSES_IGNORE));
      if (done) return;
      const double waited = std::chrono::duration<double>(Clock::now() - start).count();
      if (limit > 0 && waited > limit) fail_timeout(p, waited);
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 50 : 1000));
    }
  }

  [[noreturn]] void fail_timeout(Pending& p, double waited) {
    std::vector<int> silent, not_receiving;
    for (size_t i = 0; i < p.requests.size(); ++i) {
      int done = 0;
      MPI_Test(&p.requests[i], &done, MPI_STATUS_IGNORE);
      if (done) continue;
      auto& list = p.receiving[i] ? silent : not_receiving;
      if (std::find(list.begin(), list.end(), p.peers[i]) == list.end()) list.push_back(p.peers[i]);
    }
    std::vector<int> failed = silent.empty() ? not_receiving : silent;
    std::sort(failed.begin(), failed.end());
    std::string names;
    for (int r : failed) names += (names.empty() ? "" : ", ") + std::to_string(r);
    VI_FAIL("rank {} waited {:.0f} s in {} for rank{} {} ({}): the rank has stopped, died or hangs "
            "(--comm-timeout {:g} s); ending the job",
            rank_, waited, p.op, failed.size() == 1 ? "" : "s", names,
            silent.empty() ? "it does not receive" : "no data arrived", timeout());
  }

  static at::Tensor cpu_contiguous(const at::Tensor& t, const char* op) {
    VI_CHECK(t.defined(), "MPI {}: undefined tensor", op);
    VI_CHECK(t.device().is_cpu(), "MPI {}: tensor on {}, expected CPU", op, t.device().str());
    return t.contiguous();
  }

  OwnedMpiComm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  VI_CHECK(initialised, "make_mpi_communicator: MPI is not initialised (call init_launch first)");
  return std::make_unique<MpiCommunicator>();
}

void mpi_broadcast_bytes(void* data, int bytes, int root) {
  VI_MPI_CHECK(MPI_Bcast(data, bytes, MPI_BYTE, root, MPI_COMM_WORLD));
}

}  // namespace vi::parallel
