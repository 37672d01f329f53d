// The communication layer clip parallelism runs on. Implementations are interchangeable:
// a single-process one, MPI (CPU tensors), NCCL (CUDA tensors, bootstrapped over MPI or a rendezvous
// store) and one over the rendezvous store itself (CPU tensors without MPI).
// Every call is collective over the world unless said otherwise; tensors must have the same
// shape and dtype on every rank.
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vi::parallel {

// How ranks neighbour each other: a line (rank 0 has no left neighbour, rank N-1 no right one) or
// a ring (rank N-1 and rank 0 are neighbours; in a world of one, the rank is its own neighbour).
enum class Topology { kLine, kRing };

// What a rank receives in a neighbour exchange. Undefined tensors at the ends of a line.
struct Neighbors {
  at::Tensor from_left;   // what rank-1 sent to its right (same shape as our to_right)
  at::Tensor from_right;  // what rank+1 sent to its left  (same shape as our to_left)
};

class Communicator {
 public:
  Communicator() = default;
  virtual ~Communicator() = default;
  // It owns library handles that cannot be shared (an NCCL communicator, a duplicated MPI_Comm)
  // and wrappers and the pipeline hold it by reference: it stays where it was made.
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  Communicator(Communicator&&) = delete;
  Communicator& operator=(Communicator&&) = delete;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string name() const = 0;     // "local", "mpi", "nccl"
  virtual c10::Device device() const = 0;   // where its tensors must live

  // Every rank's tensor concatenated along dim 0 in rank order: [world * n, ...].
  virtual at::Tensor all_gather(const at::Tensor& tensor) = 0;
  // Element-wise sum over ranks, in place.
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;
  // Sends to_left to the left neighbour (rank-1) and to_right to the right one (rank+1) and
  // receives from both, in one call that cannot deadlock for any world size. On a line, sends to
  // a missing neighbour are skipped; on a ring, rank N-1's right neighbour is rank 0.
  virtual Neighbors exchange_neighbors(const at::Tensor& to_left, const at::Tensor& to_right,
                                       Topology topology = Topology::kLine) = 0;
  // Overwrites `tensor` on every rank with root's.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
  // Point to point (not collective): `tensor` to rank `dst`; recv fills a tensor of the sender's
  // shape and dtype from rank `src`. Used to stream decoded clips to rank 0.
  virtual void send(const at::Tensor& tensor, int dst) = 0;
  virtual void recv(at::Tensor& tensor, int src) = 0;

  // Called by the pipeline once after every denoising step, on every rank (so it may be
  // collective). A communicator whose calls can leave a dead peer unnoticed checks for it here;
  // the default does nothing.
  virtual void step_boundary() {}

  // Bytes this rank has sent to other ranks since construction or the last reset.
  uint64_t bytes_sent() const { return bytes_sent_; }
  void reset_bytes_sent() { bytes_sent_ = 0; }

  // Watchdog: a call that waits longer than `seconds` for another rank throws a vi::Error naming
  // the ranks it is still waiting for (a stopped, dead or hung rank); 0 waits forever.
  void set_timeout(double seconds) { timeout_seconds_ = seconds; }
  double timeout() const { return timeout_seconds_; }

 protected:
  void count_sent(uint64_t bytes) { bytes_sent_ += bytes; }

 private:
  uint64_t bytes_sent_ = 0;
  double timeout_seconds_ = 0;
};

// Which launcher started the job, so which source tells each process its place.
enum class Launcher {
  kSingle,    // one process, nothing set
  kMpi,       // mpirun/mpiexec, or srun with an MPI plugin (PMI/PMIx): MPI owns the world
  kSlurm,     // srun without MPI: SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID
  kTorchrun,  // torchrun or anything that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
};
std::string launcher_name(Launcher launcher);

// Where this process stands in the job: from MPI when an MPI launcher started it, else from
// the Slurm or torchrun-style environment (launch_from_environment), else a world of one.
struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;     // index among the ranks on this node (picks the GPU)
  bool mpi = false;       // MPI is initialised and owns the world
  Launcher launcher = Launcher::kSingle;
  std::string host;
  // The rendezvous of a job launched without MPI: a key-value store (LibTorch's c10d TCPStore)
  // at master_addr:master_port, served by rank 0, or by torchrun's agent when agent_store is set
  // (TORCHELASTIC_USE_AGENT_STORE). Empty master_addr: none (the NCCL id then goes through
  // VI_NCCL_ID_FILE). store_prefix keeps this job's keys apart from the agent's and from an
  // earlier restart's.
  std::string master_addr;
  int master_port = 0;
  bool agent_store = false;
  std::string store_prefix = "video-infinity/";
};

// The launch the environment describes, without MPI: torchrun-style (RANK and WORLD_SIZE set),
// else Slurm's srun (SLURM_STEP_NUM_TASKS and SLURM_PROCID set; the rendezvous defaults to the
// first host of SLURM_STEP_NODELIST, port 20000 + SLURM_JOB_ID mod 20000, unless MASTER_ADDR or
// MASTER_PORT say), else a world of one. Throws naming the variable that is malformed.
LaunchInfo launch_from_environment();
// The first host of a Slurm host list ("gpu[03-04,07],cpu1" -> "gpu03").
std::string first_slurm_host(const std::string& nodelist);

// Where this process stands: the environment's launch when srun or torchrun started several
// ranks without MPI (MPI stays down), else MPI's world (initialised here when the binary has
// MPI; idempotent), else a world of one. Call once at the start of main.
LaunchInfo init_launch(int* argc, char*** argv);
// Finalises MPI if init_launch started it.
void finalize_launch();
// Ends every rank of the job with `code` (MPI_Abort under MPI, else std::exit).
[[noreturn]] void abort_job(int code);

// The neighbours of `rank` in a world of `size`: -1 where there is none (the ends of a line).
struct NeighborRanks {
  int left = -1, right = -1;
};
NeighborRanks neighbor_ranks(int rank, int size, Topology topology);

// Every rank's `text`, in rank order (two all-gathers: the lengths, then the bytes padded to the
// longest). For small things: host names, a rank's resolved settings.
std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& text);

// The communicator for `device`: local for a world of one, NCCL for CUDA, MPI for CPU tensors
// when MPI launched the job, else the rendezvous store.
std::unique_ptr<Communicator> make_communicator(const LaunchInfo& launch, c10::Device device);

std::unique_ptr<Communicator> make_local_communicator(c10::Device device = c10::kCPU);
// Throw when the binary was built without the library.
std::unique_ptr<Communicator> make_mpi_communicator();
std::unique_ptr<Communicator> make_nccl_communicator(const LaunchInfo& launch);
// CPU tensors without MPI: every transfer goes through the launch's rendezvous store (slow for
// large tensors, all through one server; for CPU jobs started by srun or torchrun, and for
// check-env). Throws when the launch has no rendezvous or LibTorch has no TCPStore.
std::unique_ptr<Communicator> make_store_communicator(const LaunchInfo& launch);

bool built_with_mpi();
bool built_with_nccl();
bool built_with_store();  // LibTorch's c10d TCPStore is available

}  // namespace vi::parallel
