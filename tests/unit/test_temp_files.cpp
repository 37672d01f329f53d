// Temporary files registered with TempFileGuard are removed when a termination signal ends the
// process (what mpirun sends every rank once one has failed), and only while registered.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "common/test_util.h"
#include "core/temp_files.h"

namespace fs = std::filesystem;

namespace {

// Forks a child that creates `registered` (guarded) and `released` (guarded, then released),
// then raises `sig`; returns the child's wait status.
int child_ends_with(int sig, const std::string& registered, const std::string& released) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    vi::core::install_termination_cleanup();
    std::ofstream(registered) << "partial";
    std::ofstream(released) << "complete";
    vi::core::TempFileGuard guard(registered);
    {
      vi::core::TempFileGuard done(released);
      done.release();
    }
    std::raise(sig);
    ::_exit(0);  // not reached: the handler ends the process with the signal
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(TempFiles, TerminationSignalsRemoveRegisteredFilesOnly) {
  const std::string dir = vi::test::make_temp_dir("temp_files");
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    const std::string registered = dir + "/out.mp4.partial", released = dir + "/kept.mp4";
    const int status = child_ends_with(sig, registered, released);
    ASSERT_TRUE(WIFSIGNALED(status)) << "signal " << sig << ": the child exited normally";
    EXPECT_EQ(WTERMSIG(status), sig) << "the process must still end with the signal";
    EXPECT_FALSE(fs::exists(registered)) << "signal " << sig;
    EXPECT_TRUE(fs::exists(released)) << "signal " << sig;
    fs::remove(released);
  }
  fs::remove_all(dir);
}

TEST(TempFiles, SignalsRemoveRegisteredDirectoriesAndPrintTheMessageOnce) {
  const std::string dir = vi::test::make_temp_dir("temp_files_dir");
  for (int sig : {SIGINT, SIGTERM, SIGPIPE}) {
    const std::string frames = dir + "/frames.partial-1", err = dir + "/stderr";
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], STDERR_FILENO);
      vi::core::install_termination_cleanup();
      fs::create_directories(frames);
      for (int i = 0; i < 300; ++i) std::ofstream(frames + "/frame_" + std::to_string(i) + ".png") << "png";
      vi::core::TempFileGuard guard(frames, /*directory=*/true);
      vi::core::set_termination_message(" after step 1/9; old");
      // The checkpoint named exists (SIGTERM, SIGPIPE) or was replaced by a newer one (SIGINT).
      const std::string checkpoint = sig == SIGINT ? dir + "/removed" : dir;
      vi::core::set_termination_message(" after step 2/9; resume with: x --resume", checkpoint,
                                        " after step 4/9; newer");
      std::raise(sig);
      ::_exit(0);
    }
    ::close(out[1]);
    std::string text;
    char buf[256];
    for (ssize_t n; (n = ::read(out[0], buf, sizeof(buf))) > 0;) text.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << sig;
    EXPECT_EQ(WTERMSIG(status), sig);
    EXPECT_FALSE(fs::exists(frames)) << "signal " << sig;
    const std::string name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGPIPE";
    EXPECT_EQ(text, "video-infinity: interrupted by " + name +
                        (sig == SIGINT ? " after step 4/9; newer\n" : " after step 2/9; resume with: x --resume\n"));
  }
  fs::remove_all(dir);
}

TEST(TempFiles, ManyGuardsReuseSlots) {
  // More guards over time than there are slots: released slots are reused.
  for (int i = 0; i < 1000; ++i) {
    vi::core::TempFileGuard guard("/nonexistent/file-" + std::to_string(i));
  }
  const std::string dir = vi::test::make_temp_dir("temp_files_reuse");
  const std::string registered = dir + "/late.partial", released = dir + "/late.done";
  const int status = child_ends_with(SIGTERM, registered, released);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(registered));
  fs::remove_all(dir);
}

}  // namespace
