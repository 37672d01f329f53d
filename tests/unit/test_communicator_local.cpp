// The single-process communicator: a world of one where every collective is the identity.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <type_traits>

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
