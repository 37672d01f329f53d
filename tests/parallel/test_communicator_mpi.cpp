// The world's communicator, MPI under mpiexec -n 1..4 and the rendezvous store under torchrun
// (no MPI): every collective on rank-seeded data, checked exactly on every rank. EXPECT_* only
// (an early return on one rank would deadlock the rest).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "video_infinity/communicator.h"

using vi::parallel::Communicator;

namespace {

class MpiCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    launch_ = vi::parallel::init_launch(nullptr, nullptr);
    comm_ = vi::test::world_communicator();
  }
  vi::parallel::LaunchInfo launch_;
  std::unique_ptr<Communicator> comm_;
};

TEST_F(MpiCommunicatorTest, KnowsItsPlace) {
  EXPECT_EQ(comm_->rank(), launch_.rank);
  EXPECT_EQ(comm_->world_size(), launch_.world_size);
  EXPECT_GE(launch_.local_rank, 0);
  EXPECT_LT(launch_.local_rank, launch_.world_size);
  EXPECT_EQ(comm_->name(), launch_.mpi ? "mpi" : "store");
  EXPECT_EQ(launch_.launcher, launch_.mpi ? vi::parallel::Launcher::kMpi : vi::parallel::Launcher::kTorchrun);
}

TEST_F(MpiCommunicatorTest, AllGatherConcatenatesInRankOrder) {
  const int n = comm_->world_size();
  for (auto type : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kByte}) {
    at::Tensor mine = (at::arange(6, at::kFloat).reshape({2, 3}) + 10 * comm_->rank()).to(type);
    at::Tensor all = comm_->all_gather(mine);
    EXPECT_EQ(all.sizes(), (std::vector<int64_t>{2 * n, 3})) << c10::toString(type);
    EXPECT_EQ(all.scalar_type(), type);
    for (int r = 0; r < n; ++r) {
      at::Tensor expected = (at::arange(6, at::kFloat).reshape({2, 3}) + 10 * r).to(type);
      EXPECT_TRUE(at::equal(all.slice(0, 2 * r, 2 * r + 2), expected)) << "rank block " << r << " " << c10::toString(type);
    }
  }
  // Non-contiguous input.
  at::Tensor strided = (at::arange(12, at::kFloat).reshape({3, 4}) + comm_->rank()).t();
  at::Tensor all = comm_->all_gather(strided);
  EXPECT_TRUE(at::equal(all.slice(0, 4 * comm_->rank(), 4 * comm_->rank() + 4), strided));
}

TEST_F(MpiCommunicatorTest, AllReduceSumsExactly) {
  const int n = comm_->world_size();
  for (auto type : {at::kFloat, at::kDouble, at::kLong, at::kInt, at::kHalf, at::kBFloat16}) {
    at::Tensor t = (at::arange(5, at::kFloat) + comm_->rank()).to(type);
    comm_->all_reduce_sum(t);
    at::Tensor expected = (at::arange(5, at::kFloat) * n + n * (n - 1) / 2).to(type);
    EXPECT_EQ(t.scalar_type(), type);
    EXPECT_TRUE(at::equal(t, expected)) << c10::toString(type) << " got " << t;
  }
}

TEST_F(MpiCommunicatorTest, NeighbourExchangeManyRounds) {
  const int r = comm_->rank();
  const int n = comm_->world_size();
  for (int round = 0; round < 50; ++round) {
    // Left and right messages differ in shape, so a mix-up cannot pass.
    at::Tensor to_left = at::full({2, 3}, 1000.0 * round + 100 * r + 1);
    at::Tensor to_right = at::full({4}, 1000.0 * round + 100 * r + 2);
    auto got = comm_->exchange_neighbors(to_left, to_right);
    if (r == 0) {
      EXPECT_FALSE(got.from_left.defined());
    } else {
      EXPECT_TRUE(got.from_left.defined() && got.from_left.sizes() == to_right.sizes());
      if (got.from_left.defined()) {
        EXPECT_TRUE(at::equal(got.from_left, at::full({4}, 1000.0 * round + 100 * (r - 1) + 2))) << round;
      }
    }
    if (r == n - 1) {
      EXPECT_FALSE(got.from_right.defined());
    } else {
      EXPECT_TRUE(got.from_right.defined() && got.from_right.sizes() == to_left.sizes());
      if (got.from_right.defined()) {
        EXPECT_TRUE(at::equal(got.from_right, at::full({2, 3}, 1000.0 * round + 100 * (r + 1) + 1))) << round;
      }
    }
  }
}

TEST_F(MpiCommunicatorTest, RingExchangeWrapsAround) {
  const int r = comm_->rank();
  const int n = comm_->world_size();
  for (int round = 0; round < 20; ++round) {
    at::Tensor to_left = at::full({2, 3}, 1000.0 * round + 100 * r + 1);
    at::Tensor to_right = at::full({4}, 1000.0 * round + 100 * r + 2);
    auto got = comm_->exchange_neighbors(to_left, to_right, vi::parallel::Topology::kRing);
    // Rank 0's left neighbour is rank n-1 and rank n-1's right neighbour rank 0 (on one rank, itself;
    // on two, the same rank on both sides: the directions must not be mixed up).
    const int left = (r + n - 1) % n, right = (r + 1) % n;
    ASSERT_TRUE(got.from_left.defined() && got.from_right.defined());
    EXPECT_TRUE(at::equal(got.from_left, at::full({4}, 1000.0 * round + 100 * left + 2))) << round;
    EXPECT_TRUE(at::equal(got.from_right, at::full({2, 3}, 1000.0 * round + 100 * right + 1))) << round;
  }
}

TEST_F(MpiCommunicatorTest, BroadcastFromEveryRoot) {
  for (int root = 0; root < comm_->world_size(); ++root) {
    at::Tensor t = at::full({3, 2}, comm_->rank() == root ? 7.0 + root : -1.0, at::kDouble);
    comm_->broadcast(t, root);
    EXPECT_TRUE(at::equal(t, at::full({3, 2}, 7.0 + root, at::kDouble))) << "root " << root;
  }
  at::Tensor t = at::zeros({1});
  EXPECT_THROW(comm_->broadcast(t, comm_->world_size()), std::exception);
}

TEST_F(MpiCommunicatorTest, CountsBytesSent) {
  const int r = comm_->rank();
  const int n = comm_->world_size();
  comm_->reset_bytes_sent();
  comm_->exchange_neighbors(at::zeros({10}), at::zeros({20}));  // 40 B left, 80 B right
  uint64_t expected = (r > 0 ? 40 : 0) + (r < n - 1 ? 80 : 0);
  EXPECT_EQ(comm_->bytes_sent(), expected);
  comm_->reset_bytes_sent();
  comm_->all_gather(at::zeros({4}));
  EXPECT_EQ(comm_->bytes_sent(), 16u * (n - 1));
  comm_->barrier();
}

TEST_F(MpiCommunicatorTest, PointToPointToRankZero) {
  // Every rank streams two messages to rank 0, which takes them in rank order.
  const int n = comm_->world_size();
  if (comm_->rank() == 0) {
    for (int src = 1; src < n; ++src) {
      for (int m = 0; m < 2; ++m) {
        at::Tensor got = at::empty({3, 4}, at::kByte);
        comm_->recv(got, src);
        EXPECT_TRUE(at::equal(got, at::full({3, 4}, 10 * src + m, at::kByte))) << src << " " << m;
      }
    }
  } else {
    for (int m = 0; m < 2; ++m) comm_->send(at::full({3, 4}, 10 * comm_->rank() + m, at::kByte), 0);
  }
  comm_->barrier();
}

TEST_F(MpiCommunicatorTest, RejectsBadInput) {
  EXPECT_THROW(comm_->all_gather(at::Tensor()), std::exception);
  EXPECT_THROW(comm_->all_gather(at::scalar_tensor(1.0)), std::exception);
}

}  // namespace
