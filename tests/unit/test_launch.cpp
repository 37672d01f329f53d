// Where a process stands in a job that MPI did not launch: torchrun's variables, Slurm's (srun
// without an MPI plugin), and a world of one when neither is set; malformed values are errors
// naming the variable.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "common/test_util.h"
#include "video_infinity/communicator.h"

namespace vi::parallel {
namespace {

// Sets exactly `vars` among the launch variables for one test, restoring none (each test sets
// all it needs; unset ones are cleared).
void set_launch_env(const std::map<std::string, std::string>& vars) {
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                           "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "SLURM_STEP_NUM_TASKS",
                           "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST",
                           "SLURM_JOB_ID", "SLURM_STEP_ID"}) {
    ::unsetenv(name);
  }
  for (const auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
}

TEST(Launch, NothingSetIsAWorldOfOne) {
  set_launch_env({});
  const LaunchInfo l = launch_from_environment();
  EXPECT_EQ(l.launcher, Launcher::kSingle);
  EXPECT_EQ(l.world_size, 1);
  EXPECT_EQ(l.rank, 0);
  EXPECT_TRUE(l.master_addr.empty());
}

TEST(Launch, TorchrunVariables) {
  set_launch_env({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node07"},
                  {"MASTER_PORT", "29400"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                  {"TORCHELASTIC_RESTART_COUNT", "2"}});
  const LaunchInfo l = launch_from_environment();
  EXPECT_EQ(l.launcher, Launcher::kTorchrun);
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.world_size, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.master_addr, "node07");
  EXPECT_EQ(l.master_port, 29400);
  EXPECT_TRUE(l.agent_store);
  EXPECT_EQ(l.store_prefix, "video-infinity/restart-2/");  // a restart does not see the last one's keys

  // Without torchrun's agent (a hand-made environment): rank 0 serves the store, port 29500.
  set_launch_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "10.0.0.1"}});
  const LaunchInfo d = launch_from_environment();
  EXPECT_FALSE(d.agent_store);
  EXPECT_EQ(d.master_port, 29500);
  EXPECT_EQ(d.local_rank, 0);
}

TEST(Launch, SlurmVariablesOfAJobStep) {
  set_launch_env({{"SLURM_STEP_NUM_TASKS", "16"}, {"SLURM_PROCID", "9"}, {"SLURM_LOCALID", "1"},
                  {"SLURM_STEP_NODELIST", "gpu[03-04,07]"}, {"SLURM_JOB_ID", "123456"}, {"SLURM_STEP_ID", "0"}});
  const LaunchInfo l = launch_from_environment();
  EXPECT_EQ(l.launcher, Launcher::kSlurm);
  EXPECT_EQ(l.rank, 9);
  EXPECT_EQ(l.world_size, 16);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.master_addr, "gpu03");           // the step's first host runs rank 0
  EXPECT_EQ(l.master_port, 20000 + 123456 % 20000);  // one port per job: jobs sharing a node do not clash
  EXPECT_EQ(l.store_prefix, "video-infinity/slurm-123456.0/");

  // MASTER_ADDR and MASTER_PORT override; torchrun's RANK wins over Slurm's (torchrun inside srun).
  set_launch_env({{"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_PROCID", "1"}, {"SLURM_STEP_NODELIST", "a1"},
                  {"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "31000"}});
  const LaunchInfo o = launch_from_environment();
  EXPECT_EQ(o.master_addr, "10.1.2.3");
  EXPECT_EQ(o.master_port, 31000);
  set_launch_env({{"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_PROCID", "1"}, {"RANK", "3"}, {"WORLD_SIZE", "4"}});
  EXPECT_EQ(launch_from_environment().launcher, Launcher::kTorchrun);

  // A batch script's own environment (no job step: no SLURM_STEP_NUM_TASKS) is a world of one.
  set_launch_env({{"SLURM_PROCID", "0"}, {"SLURM_JOB_NODELIST", "gpu[01-02]"}});
  EXPECT_EQ(launch_from_environment().launcher, Launcher::kSingle);
}

TEST(Launch, FirstHostOfASlurmHostList) {
  EXPECT_EQ(first_slurm_host("node17"), "node17");
  EXPECT_EQ(first_slurm_host("gpu[03-04,07],cpu1"), "gpu03");
  EXPECT_EQ(first_slurm_host("gpu[12,14]-ib"), "gpu12-ib");
  EXPECT_EQ(first_slurm_host("rack[1-2]-node[08-09]"), "rack1-node08");
  EXPECT_EQ(first_slurm_host("a,b"), "a");
  EXPECT_NE(test::error_of([] { first_slurm_host("gpu[03"); }).find("'[' without ']'"), std::string::npos);
  EXPECT_NE(test::error_of([] { first_slurm_host(""); }).find("names no host"), std::string::npos);
}

TEST(Launch, MalformedValuesNameTheVariable) {
  set_launch_env({{"RANK", "two"}, {"WORLD_SIZE", "4"}});
  std::string e = test::error_of([] { launch_from_environment(); });
  EXPECT_NE(e.find("RANK='two'"), std::string::npos) << e;
  set_launch_env({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
  e = test::error_of([] { launch_from_environment(); });
  EXPECT_NE(e.find("rank 4 is outside a world of 4"), std::string::npos) << e;
  set_launch_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}});
  e = test::error_of([] { launch_from_environment(); });
  EXPECT_NE(e.find("MASTER_PORT='70000' is not an integer from 0 to 65535"), std::string::npos) << e;
  set_launch_env({});
}

// Two CPU ranks without MPI and without a rendezvous address cannot talk: an error saying what to
// set, not a hang.
TEST(Launch, ACpuWorldWithoutMpiNeedsARendezvous) {
  LaunchInfo many;
  many.world_size = 2;
  many.launcher = Launcher::kTorchrun;
  const std::string e = test::error_of([&] { make_communicator(many, c10::kCPU); });
  EXPECT_NE(e.find("set MASTER_ADDR and MASTER_PORT"), std::string::npos) << e;
}

}  // namespace
}  // namespace vi::parallel
