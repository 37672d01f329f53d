// The rendezvous store (LibTorch's c10d TCPStore) and a communicator for CPU tensors built on
// it, for jobs that srun or torchrun started without MPI.
//
// Every collective is a numbered operation; all ranks run the collectives in the same order, so
// operation k of every rank meets under the keys "c<comm>/<k>/...". A rank writes its part
// under its own key and reads the parts it needs (a read waits for the key); the last reader
// removes what it read, so the store holds only operations in flight. Point-to-point messages
// are numbered per (sender, receiver) pair. Each wait ends after timeout() seconds with an
// error naming the rank whose part is missing (stopped, dead or hung).
#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>

#include "core/check.h"
#include "parallel/launch.h"
#include "video_infinity/communicator.h"

namespace vi::parallel {

bool built_with_store() { return true; }

c10::intrusive_ptr<c10d::Store> rendezvous_store(const LaunchInfo& launch) {
  static std::mutex mutex;
  // Never destroyed: rank 0's copy serves the other ranks until the process ends.
  static auto* store = new c10::intrusive_ptr<c10d::Store>();
  std::lock_guard<std::mutex> lock(mutex);
  if (*store) return *store;
  VI_CHECK(!launch.master_addr.empty(),
           "rank {} of {} ({}): no rendezvous address: set MASTER_ADDR to rank 0's host and MASTER_PORT to a free port",
           launch.rank, launch.world_size, launcher_name(launch.launcher));
  double seconds = 300;
  if (const char* v = std::getenv("VI_RENDEZVOUS_TIMEOUT"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    seconds = std::strtod(v, &end);
    VI_CHECK(end && *end == '\0' && seconds > 0, "VI_RENDEZVOUS_TIMEOUT='{}' is not a positive number of seconds", v);
  }
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(launch.master_port);
  options.isServer = launch.rank == 0 && !launch.agent_store;
  if (!launch.agent_store) options.numWorkers = static_cast<size_t>(launch.world_size);  // waits for every rank
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  c10::intrusive_ptr<c10d::Store> tcp;
  try {
    tcp = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    VI_FAIL("rank {} of {} ({}): the rendezvous at {}:{} ({}) failed within {} s: {}", launch.rank,
            launch.world_size, launch.host, launch.master_addr, launch.master_port,
            options.isServer ? "served by this rank" : launch.agent_store ? "torchrun's agent" : "served by rank 0",
            seconds, what.substr(0, what.find('\n')));
  }
  *store = c10::make_intrusive<c10d::PrefixStore>(launch.store_prefix, tcp);
  return *store;
}

namespace {

std::vector<uint8_t> to_bytes(const at::Tensor& tensor) {
  const at::Tensor t = tensor.contiguous();
  const auto* p = static_cast<const uint8_t*>(t.data_ptr());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

class StoreCommunicator final : public Communicator {
 public:
  explicit StoreCommunicator(const LaunchInfo& launch)
      : rank_(launch.rank), size_(launch.world_size), host_(launch.host), store_(rendezvous_store(launch)) {
    // Communicators are made in the same order on every rank: the n-th has the same keys everywhere.
    static std::atomic<int> made{0};
    prefix_ = "c" + std::to_string(made++) + "/";
  }

  // The last use of the store: every rank says so, and rank 0 (which may serve the store) waits
  // until all have (at most a minute), so that no rank's final operation finds the server gone.
  // Not after a failed wait: the job is ending with an error then.
  ~StoreCommunicator() override {
    if (broken_) return;  // a peer is gone or hung: nobody to wait for
    try {
      const std::string bye = prefix_ + "bye";
      if (store_->add(bye, 1) == size_) store_->set(bye + "/all", std::vector<uint8_t>{1});
      if (rank_ == 0) store_->wait({bye + "/all"}, std::chrono::seconds(60));
    } catch (const std::exception& e) {
      spdlog::debug("store communicator: leaving the rendezvous: {}", e.what());
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string name() const override { return "store"; }
  c10::Device device() const override { return c10::kCPU; }

  at::Tensor all_gather(const at::Tensor& tensor) override {
    return guarded("all_gather", [&] { return all_gather_impl(tensor); });
  }
  void all_reduce_sum(at::Tensor& tensor) override {
    return guarded("all_reduce_sum", [&] { return all_reduce_sum_impl(tensor); });
  }
  Neighbors exchange_neighbors(const at::Tensor& to_left, const at::Tensor& to_right, Topology topology) override {
    return guarded("exchange_neighbors", [&] { return exchange_neighbors_impl(to_left, to_right, topology); });
  }
  void broadcast(at::Tensor& tensor, int root) override {
    return guarded("broadcast", [&] { return broadcast_impl(tensor, root); });
  }
  void barrier() override {
    return guarded("barrier", [&] { return barrier_impl(); });
  }
  void send(const at::Tensor& tensor, int dst) override {
    return guarded("send", [&] { return send_impl(tensor, dst); });
  }
  void recv(at::Tensor& tensor, int src) override {
    return guarded("recv", [&] { return recv_impl(tensor, src); });
  }

 private:
  at::Tensor all_gather_impl(const at::Tensor& tensor) {
    check_cpu(tensor, "all_gather");
    VI_CHECK(tensor.dim() > 0, "store all_gather: a 0-d tensor cannot be concatenated along dim 0");
    const std::string op = next_op();
    put(op + std::to_string(rank_), tensor, size_ - 1);
    std::vector<at::Tensor> parts;
    for (int r = 0; r < size_; ++r) {
      parts.push_back(r == rank_ ? tensor.contiguous() : take(op + std::to_string(r), r, tensor, "all_gather", false));
    }
    finish(op, size_, [&] {
      for (int r = 0; r < size_; ++r) store_->deleteKey(op + std::to_string(r));
    });
    return at::cat(parts, 0);
  }

  void all_reduce_sum_impl(at::Tensor& tensor) {
    // Every rank sums the same parts in rank order: the same result everywhere, bit for bit.
    // Half precision is summed in fp32, as the MPI communicator does.
    const at::ScalarType type = tensor.scalar_type();
    const bool low = type == at::kHalf || type == at::kBFloat16;
    at::Tensor work = low ? tensor.to(at::kFloat) : tensor;
    at::Tensor all = all_gather(work.reshape({1, -1}));
    tensor.copy_(all.sum(0, /*keepdim=*/false, work.scalar_type()).view(tensor.sizes()));
  }

  Neighbors exchange_neighbors_impl(const at::Tensor& to_left, const at::Tensor& to_right, Topology topology) {
    check_cpu(to_left, "exchange_neighbors");
    check_cpu(to_right, "exchange_neighbors");
    const NeighborRanks peer = neighbor_ranks(rank_, size_, topology);
    const std::string op = next_op();
    auto key = [&](int r, const char* side) { return op + std::to_string(r) + side; };
    if (peer.left >= 0) put(key(rank_, "l"), to_left, 1);
    if (peer.right >= 0) put(key(rank_, "r"), to_right, 1);
    Neighbors got;
    // Each key has one reader, which removes it.
    if (peer.left >= 0) got.from_left = take(key(peer.left, "r"), peer.left, to_right, "exchange_neighbors", true);
    if (peer.right >= 0) got.from_right = take(key(peer.right, "l"), peer.right, to_left, "exchange_neighbors", true);
    return got;
  }

  void broadcast_impl(at::Tensor& tensor, int root) {
    VI_CHECK(root >= 0 && root < size_, "broadcast: root {} outside a world of {}", root, size_);
    check_cpu(tensor, "broadcast");
    const std::string op = next_op();
    if (rank_ == root) {
      put(op + "b", tensor, size_ - 1);
      return;
    }
    tensor.copy_(take(op + "b", root, tensor, "broadcast", false));
    finish(op, size_ - 1, [&] { store_->deleteKey(op + "b"); });
  }

  void barrier_impl() {
    const std::string op = next_op();
    if (store_->add(op + "n", 1) == size_) store_->set(op + "go", std::vector<uint8_t>{1});
    wait_for(op + "go", -1, "barrier");
    finish(op, size_, [&] {
      store_->deleteKey(op + "n");
      store_->deleteKey(op + "go");
    });
  }

  void send_impl(const at::Tensor& tensor, int dst) {
    VI_CHECK(dst >= 0 && dst < size_ && dst != rank_, "send: rank {} to rank {} in a world of {}", rank_, dst, size_);
    check_cpu(tensor, "send");
    put(message_key(rank_, dst, sent_[dst]++), tensor, 1);
  }

  void recv_impl(at::Tensor& tensor, int src) {
    VI_CHECK(src >= 0 && src < size_ && src != rank_, "recv: rank {} from rank {} in a world of {}", rank_, src, size_);
    check_cpu(tensor, "recv");
    tensor.copy_(take(message_key(src, rank_, received_[src]++), src, tensor, "recv", true));
  }

  // Runs one operation; any failure of the store (a timeout, a lost connection: rank 0 or
  // torchrun's agent ended) marks the communicator broken and becomes an error naming this rank.
  template <typename F>
  std::invoke_result_t<F> guarded(const char* op, F f) {
    try {
      return f();
    } catch (const Error&) {
      broken_ = true;
      throw;
    } catch (const std::exception& e) {
      broken_ = true;
      const std::string what = e.what();
      VI_FAIL("store {}: rank {} ({}) lost the rendezvous store (did rank 0, or torchrun's agent, end?): {}", op, rank_,
              host_,
              what.substr(0, what.find('\n')));
    }
  }

  static void check_cpu(const at::Tensor& t, const char* op) {
    VI_CHECK(t.device().is_cpu(), "store {}: the store communicator takes CPU tensors, got {}", op, t.device().str());
  }
  std::string next_op() { return prefix_ + std::to_string(op_++) + "/"; }
  std::string message_key(int src, int dst, int64_t n) const {
    return prefix_ + "p" + std::to_string(src) + "-" + std::to_string(dst) + "/" + std::to_string(n);
  }

  // Counted as if sent to each of `receivers` (what the other communicators count; through the
  // store the bytes travel once to the server and once from it to each receiver).
  void put(const std::string& key, const at::Tensor& tensor, int receivers) {
    store_->set(key, to_bytes(tensor));
    count_sent(tensor.nbytes() * static_cast<uint64_t>(receivers));
  }

  // Waits for `key` (written by rank `from`); the error names that rank, or says the store
  // itself is gone when the wait ended early (a closed connection, not the timeout).
  void wait_for(const std::string& key, int from, const char* op) {
    const double seconds = timeout() > 0 ? timeout() : 30.0 * 24 * 3600;
    const auto start = std::chrono::steady_clock::now();
    try {
      store_->wait({key}, std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    } catch (const std::exception& e) {
      broken_ = true;
      const std::string what = e.what();
      const std::string first_line = what.substr(0, what.find('\n'));
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      VI_CHECK(waited >= 0.9 * seconds,
               "store {}: rank {} ({}) lost the rendezvous store after {:.1f} s (did rank 0, or torchrun's agent, "
               "end?): {}",
               op, rank_, host_, waited, first_line);
      const std::string whom = from >= 0 ? fmt::format("rank {}", from) : std::string("the other ranks");
      VI_FAIL("store {}: rank {} ({}) waited {:.0f} s for {} (stopped, dead or hung?): {}", op, rank_, host_, seconds,
              whom, first_line);
    }
  }

  // Rank `from`'s tensor under `key`, shaped like `like`; removed from the store when `remove`
  // (its only reader).
  at::Tensor take(const std::string& key, int from, const at::Tensor& like, const char* op, bool remove) {
    wait_for(key, from, op);
    const std::vector<uint8_t> bytes = store_->get(key);
    if (remove) store_->deleteKey(key);
    at::Tensor out = at::empty(like.sizes(), like.options().memory_format(at::MemoryFormat::Contiguous));
    VI_CHECK(bytes.size() == out.nbytes(), "store {}: rank {} sent {} bytes, rank {} expected {} (shape {}, {})", op,
             from, bytes.size(), rank_, out.nbytes(), c10::str(like.sizes()), c10::toString(like.scalar_type()));
    if (!bytes.empty()) std::memcpy(out.data_ptr(), bytes.data(), bytes.size());
    return out;
  }

  // Called by each of `readers` ranks once done with operation `op`; the last one cleans up.
  template <typename Cleanup>
  void finish(const std::string& op, int readers, Cleanup cleanup) {
    if (store_->add(op + "done", 1) == readers) {
      cleanup();
      store_->deleteKey(op + "done");
    }
  }

  int rank_, size_;
  std::string host_;
  c10::intrusive_ptr<c10d::Store> store_;
  std::string prefix_;
  int64_t op_ = 0;
  std::map<int, int64_t> sent_, received_;
  bool broken_ = false;  // a wait failed
};

}  // namespace

std::unique_ptr<Communicator> make_store_communicator(const LaunchInfo& launch) {
  return std::make_unique<StoreCommunicator>(launch);
}

}  // namespace vi::parallel
