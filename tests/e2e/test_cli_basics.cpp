// The binary itself: help, version, inspect on the reference model, check-env under mpiexec,
// and clear errors for bad input.
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "video_infinity/communicator.h"

using vi::test::binary_path;
using vi::test::run_command;

TEST(Cli, HelpListsSubcommands) {
  auto r = run_command(binary_path() + " --help");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("inspect"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("check-env"), std::string::npos) << r.output;
  auto v = run_command(binary_path() + " --version");
  EXPECT_EQ(v.status, 0);
  EXPECT_NE(v.output.find(VI_VERSION), std::string::npos) << v.output;
}

TEST(Cli, InspectCountsTheReferenceUNet) {
  auto r = run_command(binary_path() + " inspect " + vi::test::tiny_unet_dir());
  EXPECT_EQ(r.status, 0) << r.output;
  // 470 tensors, 1,349,636 parameters: the header totals of the reference tiny UNet file.
  EXPECT_NE(r.output.find("470 tensors, 1,349,636 parameters"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("down_blocks.0.temp_convs.0.conv1.2.weight"), std::string::npos);
}

TEST(Cli, InspectOfAMissingDirectoryFailsWithTheName) {
  auto r = run_command(binary_path() + " inspect /nonexistent/model");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("/nonexistent/model"), std::string::npos) << r.output;
}

TEST(Cli, UnknownSubcommandOrFlagFails) {
  EXPECT_NE(run_command(binary_path() + " frobnicate").status, 0);
  EXPECT_NE(run_command(binary_path() + " check-env --device tpu").status, 0);
}

TEST(Cli, CheckEnvOnTwoRanks) {
  if (!vi::parallel::built_with_mpi()) GTEST_SKIP() << "built without MPI";
  auto r = run_command(vi::test::mpiexec(2) + binary_path() + " check-env --megabytes 1 --rounds 2");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("communicator: mpi, 2 ranks"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("values checked on every rank: OK"), std::string::npos) << r.output;
}
