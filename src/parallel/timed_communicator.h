// A communicator that forwards every call to another one and accounts the wall time spent in
// the calls: what benchmarks report as the communication share of a step. With an asynchronous
// backend (NCCL) the calls only enqueue work; pass `synchronize` (a device sync) to time the
// transfers themselves, which then also stops them from overlapping compute: a measurement mode.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "video_infinity/communicator.h"

namespace vi::parallel {

class TimedCommunicator final : public Communicator {
 public:
  explicit TimedCommunicator(Communicator& inner, std::function<void()> synchronize = nullptr);

  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  std::string name() const override { return inner_.name(); }
  c10::Device device() const override { return inner_.device(); }

  at::Tensor all_gather(const at::Tensor& tensor) override;
  void all_reduce_sum(at::Tensor& tensor) override;
  Neighbors exchange_neighbors(const at::Tensor& to_left, const at::Tensor& to_right, Topology topology) override;
  void broadcast(at::Tensor& tensor, int root) override;
  void barrier() override;
  void send(const at::Tensor& tensor, int dst) override;
  void recv(at::Tensor& tensor, int src) override;
  // Forwarded so that the inner communicator's watchdog still runs, but not timed: it moves no
  // data, and where it waits (an NCCL barrier) it mostly waits for the step's queued compute.
  void step_boundary() override { inner_.step_boundary(); }

  // Seconds inside the inner communicator's calls, and the number of calls, since the last reset.
  double seconds() const { return seconds_; }
  int64_t calls() const { return calls_; }
  void reset_stats();

 private:
  template <typename F>
  auto timed(F&& f) -> decltype(f());

  Communicator& inner_;
  std::function<void()> synchronize_;
  double seconds_ = 0;
  int64_t calls_ = 0;
};

}  // namespace vi::parallel
