// main() for the multi-rank tests: under mpiexec, or under torchrun / srun without MPI (the
// rendezvous store). Every rank runs every test; the job passes only if every rank passed
// (agreed with an all-reduce over the world's communicator), so one failing rank fails the
// ctest. Tests use EXPECT_* between collectives (an early return on one rank would deadlock the
// rest).
#include <gtest/gtest.h>

#include <cstdio>

#include "common/test_util.h"
#include "video_infinity/communicator.h"

int main(int argc, char** argv) {
  const vi::parallel::LaunchInfo launch = vi::parallel::init_launch(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (launch.rank != 0) {
    // Only rank 0 prints the progress; failures are printed by every rank.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = local_failed;
  {
    auto comm = vi::test::world_communicator();
    at::Tensor flag = at::full({1}, static_cast<int64_t>(local_failed), at::kLong);
    comm->all_reduce_sum(flag);
    any_failed = flag.item<int64_t>() > 0 ? 1 : 0;
  }
  if (local_failed) std::fprintf(stderr, "rank %d: tests FAILED\n", launch.rank);
  vi::parallel::finalize_launch();
  return any_failed;
}
