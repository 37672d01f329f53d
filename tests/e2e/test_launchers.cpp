// Jobs that srun or torchrun start without MPI, on one host (tests/multinode runs them across
// two): check-env under Slurm's variables lists every rank and passes its communicator check;
// a rendezvous that never completes, and a rank that stops mid-run, end in an error naming the
// address or the rank within the set time, not a hang.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/test_util.h"
#include "video_infinity/communicator.h"

namespace fs = std::filesystem;
using vi::test::run_command;

namespace {

// A port nobody listens on right now (the kernel's pick for a socket bound to port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string host() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

class LaunchersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!vi::parallel::built_with_store()) GTEST_SKIP() << "LibTorch without c10d TCPStore";
  }
  // `n` processes started like srun would (2 per "node"), each with `extra` environment.
  static vi::test::CommandResult srun_like(int n, const std::string& args, int port, const std::string& extra = "") {
    std::string cmd = "(";
    for (int r = 0; r < n; ++r) {
      cmd += "SLURM_STEP_NUM_TASKS=" + std::to_string(n) + " SLURM_PROCID=" + std::to_string(r) +
             " SLURM_LOCALID=" + std::to_string(r % 2) + " SLURM_STEP_NODELIST=localhost SLURM_JOB_ID=77 " +
             "MASTER_PORT=" + std::to_string(port) + " " + extra + " timeout 60 " + vi::test::binary_path() + " " +
             args + (r == 0 ? "" : " > /dev/null") + " 2>&1 & ";
    }
    return run_command(cmd + "wait $!; s=$?; wait; exit $s)");
  }
};

TEST_F(LaunchersTest, CheckEnvUnderSlurmsVariablesListsEveryRank) {
  auto r = srun_like(3, "check-env --megabytes 1 --rounds 2", free_port());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("launched by Slurm (srun): 3 ranks, rendezvous localhost:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(served by rank 0)"), std::string::npos) << r.output;
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_NE(r.output.find("  rank " + std::to_string(rank) + ": local rank " + std::to_string(rank % 2) + ", host "),
              std::string::npos)
        << r.output;
  }
  EXPECT_NE(r.output.find("communicator: store, 3 ranks, device cpu"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("values checked on every rank: OK"), std::string::npos) << r.output;
}

TEST_F(LaunchersTest, ARendezvousThatNeverCompletesIsAnErrorNamingTheAddress) {
  const int port = free_port();
  const std::string env = "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
                          " VI_RENDEZVOUS_TIMEOUT=2 timeout 60 ";
  // Rank 0 serves the store and waits for a rank 1 that never comes.
  auto alone = run_command(env + vi::test::binary_path() + " check-env 2>&1");
  EXPECT_EQ(alone.status, 1) << alone.output;
  EXPECT_NE(alone.output.find("rank 0 of 2"), std::string::npos) << alone.output;
  EXPECT_NE(alone.output.find("the rendezvous at 127.0.0.1:" + std::to_string(port) +
                              " (served by this rank) failed within 2 s"),
            std::string::npos)
      << alone.output;
  // Rank 1 finds nobody serving it.
  auto orphan = run_command("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
                            " VI_RENDEZVOUS_TIMEOUT=2 timeout 60 " + vi::test::binary_path() + " check-env 2>&1");
  EXPECT_EQ(orphan.status, 1) << orphan.output;
  EXPECT_NE(orphan.output.find("(served by rank 0) failed within 2 s"), std::string::npos) << orphan.output;
}

// Rank 1 stops itself (SIGSTOP) after step 1: rank 0 waits --comm-timeout seconds in the next
// exchange and ends with an error naming rank 1.
TEST_F(LaunchersTest, AStoppedRankIsNamedAfterTheTimeoutAndALostStoreAtOnce) {
  const std::string dir = vi::test::make_temp_dir("launchers");
  auto model = run_command(vi::test::binary_path() + " make-test-model --preset tiny --seed 6 --out " + dir + "/model");
  ASSERT_EQ(model.status, 0) << model.output;
  const std::string args = " --model " + dir + "/model --prompt 'a red fox' --height 64 --width 64 --steps 3 " +
                           "--frames 16 --attn-padding 2 --attn-top-k 4 --conv-padding 2 --progress none " +
                           "--output " + dir + "/out.mp4";
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port()) +
                          " VI_FAULT=rank=1,step=1,mode=stop ";
  auto r = run_command("(RANK=1 " + env + vi::test::binary_path() + args + " --comm-timeout 3 > /dev/null 2>&1 & " +
                       "p=$!; RANK=0 " + env + "timeout 60 " + vi::test::binary_path() + args +
                       " --comm-timeout 3 2>&1; s=$?; kill -9 $p; exit $s)");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "rank 0 hung: " << r.output;
  EXPECT_NE(r.output.find("rank 0 (" + host() + ") waited 3 s for rank 1"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/out.mp4"));

  // Rank 0, which serves the store, dies (SIGKILL) after step 1: rank 1 says at once that the
  // store is gone instead of waiting out the timeout.
  const std::string env0 = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port()) +
                           " VI_FAULT=rank=0,step=1,mode=kill ";
  auto lost = run_command("(RANK=0 " + env0 + vi::test::binary_path() + args +
                          " --comm-timeout 300 > /dev/null 2>&1 & RANK=1 " + env0 + "timeout 60 " +
                          vi::test::binary_path() + args + " --comm-timeout 300 2>&1; s=$?; wait; exit $s)");
  EXPECT_EQ(lost.status, 1) << lost.output;
  // (In a wait, or in the store call that meets the closed connection first.)
  EXPECT_NE(lost.output.find("rank 1 (" + host() + ") lost the rendezvous store"), std::string::npos) << lost.output;
  fs::remove_all(dir);
}

}  // namespace
