// The single-process communicator: a world of one where every collective is the identity.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <type_traits>

#include "parallel/timed_communicator.h"
#include "video_infinity/communicator.h"

// Communicators own handles and are held by reference (wrappers, the pipeline): never copied or moved.
static_assert(!std::is_copy_constructible_v<vi::parallel::Communicator>);
static_assert(!std::is_copy_assignable_v<vi::parallel::Communicator>);
static_assert(!std::is_move_constructible_v<vi::parallel::Communicator>);
static_assert(!std::is_move_assignable_v<vi::parallel::Communicator>);

TEST(LocalCommunicator, WorldOfOne) {
  auto comm = vi::parallel::make_local_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  at::Tensor t = at::arange(6, at::kFloat).reshape({2, 3});
  at::Tensor g = comm->all_gather(t);
  EXPECT_TRUE(at::equal(g, t));
  EXPECT_NE(g.data_ptr(), t.data_ptr());
  at::Tensor s = t.clone();
  comm->all_reduce_sum(s);
  EXPECT_TRUE(at::equal(s, t));
  auto n = comm->exchange_neighbors(t, t);
  EXPECT_FALSE(n.from_left.defined());
  EXPECT_FALSE(n.from_right.defined());
  // On a ring the rank is its own neighbour: what it sends right comes back from the left.
  at::Tensor u = t + 100;
  auto ring = comm->exchange_neighbors(t, u, vi::parallel::Topology::kRing);
  EXPECT_TRUE(at::equal(ring.from_left, u));
  EXPECT_TRUE(at::equal(ring.from_right, t));
  comm->broadcast(s, 0);
  EXPECT_THROW(comm->broadcast(s, 1), std::exception);
  comm->barrier();
  EXPECT_EQ(comm->bytes_sent(), 0u);
}

TEST(LocalCommunicator, FactoryPicksByWorldAndDevice) {
  vi::parallel::LaunchInfo one;
  EXPECT_EQ(vi::parallel::make_communicator(one, c10::kCPU)->name(), "local");
  vi::parallel::LaunchInfo many;
  many.world_size = 2;
  many.mpi = false;
  // Two CPU ranks without MPI cannot talk: a clear error, not a hang.
  EXPECT_THROW(vi::parallel::make_communicator(many, c10::kCPU), std::exception);
}

// The pipeline calls step_boundary() after every denoising step; a world of one has no peer to
// wait for, with or without a timeout, and sends nothing.
TEST(LocalCommunicator, StepBoundaryChangesNothing) {
  auto comm = vi::parallel::make_local_communicator();
  comm->step_boundary();
  comm->set_timeout(5);
  comm->step_boundary();
  EXPECT_EQ(comm->bytes_sent(), 0u);
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_EQ(comm->timeout(), 5);
}

namespace {

// A world of one that counts its step boundaries.
class CountingCommunicator final : public vi::parallel::Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string name() const override { return "counting"; }
  c10::Device device() const override { return c10::kCPU; }
  at::Tensor all_gather(const at::Tensor& tensor) override { return tensor.clone(); }
  void all_reduce_sum(at::Tensor&) override {}
  vi::parallel::Neighbors exchange_neighbors(const at::Tensor&, const at::Tensor&, vi::parallel::Topology) override {
    return {};
  }
  void broadcast(at::Tensor&, int) override {}
  void barrier() override {}
  void send(const at::Tensor&, int) override {}
  void recv(at::Tensor&, int) override {}
  void step_boundary() override { ++boundaries; }
  int boundaries = 0;
};

}  // namespace

// A timing wrapper must not swallow the watchdog of the communicator it wraps, nor count it as a
// communication call.
TEST(TimedCommunicator, ForwardsStepBoundaryUntimed) {
  CountingCommunicator inner;
  vi::parallel::TimedCommunicator timed(inner);
  timed.step_boundary();
  timed.step_boundary();
  EXPECT_EQ(inner.boundaries, 2);
  EXPECT_EQ(timed.calls(), 0);
}
