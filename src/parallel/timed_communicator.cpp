#include "parallel/timed_communicator.h"

#include <ATen/ATen.h>

#include <chrono>
#include <type_traits>

namespace vi::parallel {

TimedCommunicator::TimedCommunicator(Communicator& inner, std::function<void()> synchronize)
    : inner_(inner), synchronize_(std::move(synchronize)) {}

void TimedCommunicator::reset_stats() {
  seconds_ = 0;
  calls_ = 0;
  reset_bytes_sent();
}

template <typename F>
auto TimedCommunicator::timed(F&& f) -> decltype(f()) {
  if (synchronize_) synchronize_();
  const uint64_t bytes_before = inner_.bytes_sent();
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&] {
    if (synchronize_) synchronize_();
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++calls_;
    count_sent(inner_.bytes_sent() - bytes_before);
  };
  if constexpr (std::is_void_v<decltype(f())>) {
    f();
    finish();
  } else {
    auto result = f();
    finish();
    return result;
  }
}

at::Tensor TimedCommunicator::all_gather(const at::Tensor& tensor) {
  return timed([&] { return inner_.all_gather(tensor); });
}
void TimedCommunicator::all_reduce_sum(at::Tensor& tensor) {
  timed([&] { inner_.all_reduce_sum(tensor); });
}
Neighbors TimedCommunicator::exchange_neighbors(const at::Tensor& to_left, const at::Tensor& to_right,
                                                Topology topology) {
  return timed([&] { return inner_.exchange_neighbors(to_left, to_right, topology); });
}
void TimedCommunicator::broadcast(at::Tensor& tensor, int root) {
  timed([&] { inner_.broadcast(tensor, root); });
}
void TimedCommunicator::barrier() {
  timed([&] { inner_.barrier(); });
}
void TimedCommunicator::send(const at::Tensor& tensor, int dst) {
  timed([&] { inner_.send(tensor, dst); });
}
void TimedCommunicator::recv(at::Tensor& tensor, int src) {
  timed([&] { inner_.recv(tensor, src); });
}

}  // namespace vi::parallel
