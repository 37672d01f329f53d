// MPI: process bootstrap (rank, node-local rank) and a communicator for CPU tensors.
#include <ATen/ATen.h>
#include <mpi.h>

#include <climits>
#include <cstdlib>

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

// True when an MPI launcher (mpirun/mpiexec/srun with PMI) started this process.
bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "PMI_RANK"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

}  // namespace

LaunchInfo init_launch(int* argc, char*** argv) {
  // Started by another launcher (RANK/WORLD_SIZE set, no MPI launcher): the environment
  // defines the world and MPI stays down (NCCL then bootstraps through VI_NCCL_ID_FILE).
  const char* world = std::getenv("WORLD_SIZE");
  if (!launched_by_mpi() && world != nullptr && std::string(world) != "1") return launch_from_environment();
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
  info.host = host_name();
  VI_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &info.rank));
  VI_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &info.world_size));
  MPI_Comm node = MPI_COMM_NULL;
  VI_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, &node));
  VI_MPI_CHECK(MPI_Comm_rank(node, &info.local_rank));
  MPI_Comm_free(&node);
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

MPI_Datatype mpi_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    default: return MPI_DATATYPE_NULL;
  }
}

int byte_count(const at::Tensor& t, const char* op) {
  VI_CHECK(t.nbytes() <= static_cast<size_t>(INT_MAX), "MPI {}: tensor of {} bytes exceeds one message (2 GiB)", op,
           t.nbytes());
  return static_cast<int>(t.nbytes());
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    VI_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    VI_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    VI_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised) MPI_Comm_free(&comm_);
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
    VI_MPI_CHECK(MPI_Allgather(in.data_ptr(), count, MPI_BYTE, out.data_ptr(), count, MPI_BYTE, comm_));
    count_sent(static_cast<uint64_t>(count) * (size_ - 1));
    return out;
  }

  void all_reduce_sum(at::Tensor& tensor) override {
    VI_CHECK(tensor.device().is_cpu(), "MPI all_reduce_sum: tensor on {}, expected CPU", tensor.device().str());
    // Half types are reduced in float32 (MPI has no such types); the result is cast back.
    at::Tensor work = tensor.contiguous();
    if (mpi_type(work.scalar_type()) == MPI_DATATYPE_NULL) work = work.to(at::kFloat);
    VI_CHECK(mpi_type(work.scalar_type()) != MPI_DATATYPE_NULL, "MPI all_reduce_sum: unsupported dtype {}",
             c10::toString(tensor.scalar_type()));
    VI_CHECK(work.numel() <= INT_MAX, "MPI all_reduce_sum: tensor too large");
    VI_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, work.data_ptr(), static_cast<int>(work.numel()),
                               mpi_type(work.scalar_type()), MPI_SUM, comm_));
    if (size_ > 1) count_sent(work.nbytes());
    if (!work.is_same(tensor)) tensor.copy_(work);
  }

  Neighbors exchange_neighbors(const at::Tensor& to_left, const at::Tensor& to_right) override {
    at::Tensor left_out = cpu_contiguous(to_left, "exchange_neighbors");
    at::Tensor right_out = cpu_contiguous(to_right, "exchange_neighbors");
    Neighbors got;
    MPI_Request requests[4];
    int n = 0;
    // Receives first, then sends, all non-blocking: no ordering between ranks can deadlock.
    if (rank_ > 0) {
      got.from_left = at::empty_like(right_out);
      VI_MPI_CHECK(MPI_Irecv(got.from_left.data_ptr(), byte_count(right_out, "exchange"), MPI_BYTE, rank_ - 1,
                             kTagToRight, comm_, &requests[n++]));
    }
    if (rank_ + 1 < size_) {
      got.from_right = at::empty_like(left_out);
      VI_MPI_CHECK(MPI_Irecv(got.from_right.data_ptr(), byte_count(left_out, "exchange"), MPI_BYTE, rank_ + 1,
                             kTagToLeft, comm_, &requests[n++]));
    }
    if (rank_ > 0) {
      VI_MPI_CHECK(MPI_Isend(left_out.data_ptr(), byte_count(left_out, "exchange"), MPI_BYTE, rank_ - 1, kTagToLeft,
                             comm_, &requests[n++]));
      count_sent(left_out.nbytes());
    }
    if (rank_ + 1 < size_) {
      VI_MPI_CHECK(MPI_Isend(right_out.data_ptr(), byte_count(right_out, "exchange"), MPI_BYTE, rank_ + 1,
                             kTagToRight, comm_, &requests[n++]));
      count_sent(right_out.nbytes());
    }
    VI_MPI_CHECK(MPI_Waitall(n, requests, MPI_STATUSES_IGNORE));
    return got;
  }

  void broadcast(at::Tensor& tensor, int root) override {
    VI_CHECK(root >= 0 && root < size_, "broadcast: root {} outside a world of {}", root, size_);
    VI_CHECK(tensor.device().is_cpu(), "MPI broadcast: tensor on {}, expected CPU", tensor.device().str());
    at::Tensor work = tensor.contiguous();
    VI_MPI_CHECK(MPI_Bcast(work.data_ptr(), byte_count(work, "broadcast"), MPI_BYTE, root, comm_));
    if (rank_ == root) count_sent(work.nbytes() * (size_ - 1));
    if (!work.is_same(tensor)) tensor.copy_(work);
  }

  void barrier() override { VI_MPI_CHECK(MPI_Barrier(comm_)); }

  void send(const at::Tensor& tensor, int dst) override {
    VI_CHECK(dst >= 0 && dst < size_ && dst != rank_, "send: invalid destination rank {}", dst);
    at::Tensor t = cpu_contiguous(tensor, "send");
    VI_MPI_CHECK(MPI_Send(t.data_ptr(), byte_count(t, "send"), MPI_BYTE, dst, kTagPointToPoint, comm_));
    count_sent(t.nbytes());
  }

  void recv(at::Tensor& tensor, int src) override {
    VI_CHECK(src >= 0 && src < size_ && src != rank_, "recv: invalid source rank {}", src);
    VI_CHECK(tensor.is_contiguous() && tensor.device().is_cpu(), "MPI recv: needs a contiguous CPU tensor");
    VI_MPI_CHECK(MPI_Recv(tensor.data_ptr(), byte_count(tensor, "recv"), MPI_BYTE, src, kTagPointToPoint, comm_,
                          MPI_STATUS_IGNORE));
  }

 private:
  static constexpr int kTagToLeft = 101;
  static constexpr int kTagToRight = 102;
  static constexpr int kTagPointToPoint = 103;

  static at::Tensor cpu_contiguous(const at::Tensor& t, const char* op) {
    VI_CHECK(t.defined(), "MPI {}: undefined tensor", op);
    VI_CHECK(t.device().is_cpu(), "MPI {}: tensor on {}, expected CPU", op, t.device().str());
    return t.contiguous();
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
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

// Used by the NCCL communicator to share its unique id.
void mpi_broadcast_bytes(void* data, int bytes, int root) {
  VI_MPI_CHECK(MPI_Bcast(data, bytes, MPI_BYTE, root, MPI_COMM_WORLD));
}

}  // namespace vi::parallel
