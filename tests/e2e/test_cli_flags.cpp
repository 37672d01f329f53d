// The command line as people use it, on a random tiny model: global flags anywhere, the bare
// command, a prompt that is a subcommand's name, the short aliases, the encoder options and
// the container from the extension, outputs that exist or are directories, exit codes, source
// locations only at debug level, one report of a settings error under mpiexec, and Ctrl-C
// (SIGINT to the process, to mpiexec, to the ranks): one line with the step and the resume
// command, no partial files, and the printed command finishes the job.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

#ifdef VI_HAVE_FFMPEG
extern "C" {
#include <libavformat/avformat.h>
}
#endif

#include "common/test_util.h"
#include "video_infinity/communicator.h"

namespace fs = std::filesystem;
using vi::test::CommandResult;
using vi::test::run_command;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

const std::regex kSourceLocation(R"(\([A-Za-z0-9_]+\.(cpp|h):[0-9]+\))");

// A command started in the background with its output in a file; ended by the test.
class Background {
 public:
  Background(const std::string& command, const std::string& log) : log_(log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string shell = "exec " + command + " > " + log + " 2>&1";
      ::execl("/bin/sh", "sh", "-c", shell.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && status_ < 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  std::string output() const { return fs::exists(log_) ? vi::test::read_file(log_) : std::string(); }

  // Until `needle` is in the output; false when the process ended first or after `seconds`.
  bool wait_for(const std::string& needle, double seconds) {
    const auto t0 = Clock::now();
    while (seconds_since(t0) < seconds) {
      if (output().find(needle) != std::string::npos) return true;
      if (::waitpid(pid_, &raw_, WNOHANG) == pid_) {
        status_ = decode(raw_);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  // The exit status as a shell reports it (128 + N for signal N); -1 after `seconds` (then killed).
  int wait(double seconds) {
    const auto t0 = Clock::now();
    while (status_ < 0 && seconds_since(t0) < seconds) {
      if (::waitpid(pid_, &raw_, WNOHANG) == pid_) status_ = decode(raw_);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return status_;
  }
  // The video-infinity processes this one started (mpiexec's ranks).
  std::vector<pid_t> children() const {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
      const std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream in(e.path() / "stat");  // the process may have ended: then empty
      const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      // "pid (comm) state ppid ..."
      const auto close = stat.rfind(')');
      if (close == std::string::npos || stat.find("(video-infinity)") == std::string::npos) continue;
      int ppid = 0;
      char state = 0;
      if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == pid_) {
        out.push_back(static_cast<pid_t>(std::stol(name)));
      }
    }
    return out;
  }

 private:
  static int decode(int raw) { return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw); }
  std::string log_;
  pid_t pid_ = -1;
  int raw_ = 0;
  int status_ = -1;
};

class CliFlagsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = vi::test::make_temp_dir("cli-flags");
    model_ = dir_ + "/model";
    auto r = run_command(vi::test::binary_path() + " make-test-model --preset tiny --seed 4 --out " + model_);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string bin() { return vi::test::binary_path(); }
  static std::string mpi(int ranks) {
    return vi::parallel::built_with_mpi() ? vi::test::mpiexec(ranks) : std::string();
  }
  // A run of about a second (no -q: some tests read the progress lines).
  static std::string small(const std::string& out, int steps = 2, const std::string& prompt = "'a red fox'") {
    return " --prompt " + prompt + " --model " + model_ + " -H 64 -W 64 --num-frames 16 --steps " +
           std::to_string(steps) + " --attn-padding 2 --attn-top-k 4 --conv-padding 2 -o " + out;
  }
  static nlohmann::json sidecar(const std::string& video) {
    return nlohmann::json::parse(vi::test::read_file(video + ".json"));
  }
  // Entries of `dir` whose name contains ".partial-".
  static std::vector<std::string> partial_files(const std::string& dir) {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().filename().string().find(".partial-") != std::string::npos) found.push_back(e.path());
    }
    return found;
  }
  static std::string fresh_dir(const std::string& name) {
    const std::string d = dir_ + "/" + name;
    fs::create_directories(d);
    return d;
  }

  static std::string dir_, model_;
};
std::string CliFlagsTest::dir_;
std::string CliFlagsTest::model_;

TEST_F(CliFlagsTest, BareCommandPrintsTheHelpWithTheExitCodes) {
  auto r = run_command(bin());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("Subcommands:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Exit codes:\n  0      success"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("A subcommand is required"), std::string::npos) << r.output;
  auto help = run_command(bin() + " generate --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.output.find("130 Ctrl-C"), std::string::npos) << help.output;
  for (const char* alias : {"-o,--output", "-n,--negative-prompt", "-W,--width", "-H,--height", "-s,--seed",
                            "--cfg-scale", "--num-inference-steps", "--num-frames", "-y,--overwrite", "--crf"}) {
    EXPECT_NE(help.output.find(alias), std::string::npos) << alias;
  }
}

TEST_F(CliFlagsTest, GlobalFlagsWorkAfterTheSubcommand) {
  // -v after `generate` (and after `inspect`): debug level, so errors carry their source location.
  auto v = run_command(bin() + " generate" + small(dir_ + "/unused.mp4") + " --steps 0 -v");
  EXPECT_EQ(v.status, 2) << v.output;
  EXPECT_TRUE(std::regex_search(v.output, kSourceLocation)) << v.output;
  auto level = run_command(bin() + " generate" + small(dir_ + "/unused.mp4") + " --steps 0 --log-level debug");
  EXPECT_EQ(level.status, 2) << level.output;
  EXPECT_TRUE(std::regex_search(level.output, kSourceLocation)) << level.output;
  auto inspect = run_command(bin() + " inspect " + model_ + "/unet --no-tensors --log-level warn");
  EXPECT_EQ(inspect.status, 0) << inspect.output;
  auto both = run_command(bin() + " -q generate" + small(dir_ + "/unused.mp4") + " -v");
  EXPECT_EQ(both.status, 2) << both.output;
  EXPECT_NE(both.output.find("excludes"), std::string::npos) << both.output;

  // -q after the options of a real run: no progress, no summary, the video.
  const std::string out = fresh_dir("quiet") + "/q.mp4";
  auto q = run_command(bin() + small(out) + " -q");
  ASSERT_EQ(q.status, 0) << q.output;
  EXPECT_TRUE(fs::exists(out));
  EXPECT_EQ(q.output.find("step 1/2"), std::string::npos) << q.output;
  EXPECT_EQ(q.output.find("wrote"), std::string::npos) << q.output;
  EXPECT_EQ(q.output.find("[info]"), std::string::npos) << q.output;
}

TEST_F(CliFlagsTest, APromptEqualToASubcommandNameIsAPrompt) {
  const std::string d = fresh_dir("prompt");
  // `video-infinity --prompt inspect ...`: the first word is a flag, so this is generate.
  auto a = run_command(bin() + small(d + "/a.mp4", 2, "inspect") + " -q");
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_EQ(sidecar(d + "/a.mp4")["settings"]["prompts"], nlohmann::json::array({"inspect"}));
  auto b = run_command(bin() + " -q" + small(d + "/b.mp4", 2, "check-env"));
  ASSERT_EQ(b.status, 0) << b.output;
  EXPECT_EQ(sidecar(d + "/b.mp4")["settings"]["prompts"], nlohmann::json::array({"check-env"}));
}

TEST_F(CliFlagsTest, AliasesAndEncoderOptionsReachTheirSettings) {
  const std::string d = fresh_dir("aliases");
  const std::string out = d + "/alias.mp4", frames = d + "/frames";
  auto r = run_command(bin() + " --model " + model_ +
                       " --prompt fox -n blurry -W 64 -H 48 -s 7 --cfg-scale 3.5 --num-inference-steps 2"
                       " --num-frames 16 --attn-padding 2 --attn-top-k 4 --conv-padding 2 --codec h264 --crf 30"
                       " --preset fast -q --save-frames " + frames + " -o " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto s = sidecar(out);
  EXPECT_EQ(s["settings"]["output"], out);
  EXPECT_EQ(s["settings"]["negative_prompt"], "blurry");
  EXPECT_EQ(s["settings"]["width"], 64);
  EXPECT_EQ(s["settings"]["height"], 48);
  EXPECT_EQ(s["settings"]["seed"], 7);
  EXPECT_EQ(s["settings"]["guidance"], 3.5);
  EXPECT_EQ(s["settings"]["steps"], 2);
  EXPECT_EQ(s["settings"]["frames"], 16);
  EXPECT_EQ(s["settings"]["codec"], "h264");
  EXPECT_EQ(s["settings"]["crf"], 30);
  EXPECT_EQ(s["settings"]["preset"], "fast");
  EXPECT_EQ(s["video"], "H.264 (libx264) yuv420p, crf 30, preset fast");
  // The frames went through a temporary directory, renamed at the end.
  EXPECT_TRUE(fs::exists(frames + "/frame_000015.png"));
  EXPECT_TRUE(partial_files(d).empty()) << partial_files(d).front();

  auto m = run_command(bin() + small(d + "/mpeg4.mp4") + " --codec mpeg4 -q");
  ASSERT_EQ(m.status, 0) << m.output;
  EXPECT_EQ(sidecar(d + "/mpeg4.mp4")["video"], "MPEG-4 part 2 (mpeg4) yuv420p, qscale 2");
}

TEST_F(CliFlagsTest, BadEncoderOptionsAreUsageErrors) {
  const std::string out = fresh_dir("encoder") + "/e.mp4";
  for (const auto& [flag, needle] : std::vector<std::pair<std::string, std::string>>{
           {" --crf 52", "--crf must be in 0..51, got 52"},
           {" --preset quick", "--preset: unknown preset 'quick' (expected ultrafast"},
           {" --codec vp9", "--codec: unknown codec 'vp9' (expected auto, h264 or mpeg4)"}}) {
    auto r = run_command(bin() + small(out) + flag);
    EXPECT_EQ(r.status, 2) << flag << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
  }
  EXPECT_FALSE(fs::exists(out));
}

#ifdef VI_HAVE_FFMPEG
// The demuxer's name and the file's major brand (MP4 "isom", QuickTime "qt  ").
std::pair<std::string, std::string> container_of(const std::string& path) {
  AVFormatContext* ctx = nullptr;
  if (avformat_open_input(&ctx, path.c_str(), nullptr, nullptr) < 0) return {};
  std::pair<std::string, std::string> out{ctx->iformat->name, ""};
  if (const AVDictionaryEntry* brand = av_dict_get(ctx->metadata, "major_brand", nullptr, 0)) out.second = brand->value;
  avformat_close_input(&ctx);
  return out;
}

TEST_F(CliFlagsTest, TheExtensionChoosesTheContainer) {
  const std::string d = fresh_dir("containers");
  for (const char* ext : {"mkv", "mov", "mp4"}) {
    const std::string out = d + "/v." + ext;
    auto r = run_command(bin() + small(out) + " -q");
    ASSERT_EQ(r.status, 0) << r.output;
    const auto [name, brand] = container_of(out);
    if (std::string(ext) == "mkv") EXPECT_EQ(name, "matroska,webm");
    if (std::string(ext) == "mov") EXPECT_EQ(brand, "qt  ") << name;
    if (std::string(ext) == "mp4") EXPECT_EQ(brand, "isom") << name;
  }
  // Refused before any work (the model does not even exist), listing what is supported.
  for (const char* out : {"/v.gif", "/v.avi", "/v"}) {
    const auto t0 = Clock::now();
    auto r = run_command(bin() + " --model /nonexistent --prompt x -o " + d + out);
    EXPECT_LT(seconds_since(t0), 10.0);
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("(supported: .mp4, .mov, .mkv"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d + out));
  }
}
#endif

TEST_F(CliFlagsTest, ExistingOutputsAreRefusedUnlessOverwrite) {
  const std::string d = fresh_dir("overwrite");
  const std::string out = d + "/o.mp4", frames = d + "/frames", latents = d + "/z.safetensors";
  const std::string all = small(out) + " -q --save-frames " + frames + " --save-latents " + latents;
  ASSERT_EQ(run_command(bin() + all).status, 0);
  const auto first = sidecar(out);

  auto again = run_command(bin() + all + " -s 9");
  EXPECT_EQ(again.status, 2) << again.output;
  EXPECT_NE(again.output.find("'" + out + "' exists (-y/--overwrite replaces it)"), std::string::npos)
      << again.output;
  EXPECT_EQ(sidecar(out), first) << "a refused run changed the outputs";
  // Each output on its own.
  fs::rename(out, d + "/kept.mp4");
  auto json = run_command(bin() + all + " -s 9");
  EXPECT_EQ(json.status, 2);
  EXPECT_NE(json.output.find(out + ".json' exists"), std::string::npos) << json.output;
  fs::rename(out + ".json", d + "/kept.json");
  auto f = run_command(bin() + all + " -s 9");
  EXPECT_EQ(f.status, 2);
  EXPECT_NE(f.output.find("--save-frames: '" + frames + "' is not empty"), std::string::npos) << f.output;
  fs::rename(frames, d + "/kept-frames");
  auto z = run_command(bin() + all + " -s 9");
  EXPECT_EQ(z.status, 2);
  EXPECT_NE(z.output.find("--save-latents: '" + latents + "' exists"), std::string::npos) << z.output;

  // -y replaces them all.
  fs::rename(d + "/kept.mp4", out);
  fs::rename(d + "/kept.json", out + ".json");
  fs::rename(d + "/kept-frames", frames);
  fs::remove_all(frames + "/frame_000003.png");
  auto y = run_command(bin() + all + " -s 9 -y");
  ASSERT_EQ(y.status, 0) << y.output;
  EXPECT_EQ(sidecar(out)["seed"], 9);
  EXPECT_TRUE(fs::exists(frames + "/frame_000003.png"));
  EXPECT_TRUE(fs::exists(latents));
  EXPECT_TRUE(partial_files(d).empty());
}

TEST_F(CliFlagsTest, AnOutputThatIsADirectoryIsRefusedBeforeAnyWork) {
  const std::string d = fresh_dir("isdir");
  const auto t0 = Clock::now();
  // The model does not exist: reaching it would be another error.
  auto r = run_command(bin() + " --model /nonexistent --prompt x -o " + d);
  EXPECT_LT(seconds_since(t0), 10.0);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--output: '" + d + "' is a directory"), std::string::npos) << r.output;
}

TEST_F(CliFlagsTest, ExitCodesAndSourceLocations) {
  const std::string out = fresh_dir("codes") + "/c.mp4";
  auto flag = run_command(bin() + " --no-such-flag");
  EXPECT_EQ(flag.status, 2) << flag.output;
  auto settings = run_command(bin() + small(out) + " --steps 0");
  EXPECT_EQ(settings.status, 2) << settings.output;
  EXPECT_NE(settings.output.find("--steps must be at least 1"), std::string::npos) << settings.output;
  EXPECT_FALSE(std::regex_search(settings.output, kSourceLocation)) << settings.output;
  auto run = run_command(bin() + " --model " + dir_ + "/no-model --prompt x -H 64 -W 64 --num-frames 16 "
                         "--attn-padding 2 -o " + out);
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_NE(run.output.find("does not exist"), std::string::npos) << run.output;
  EXPECT_FALSE(std::regex_search(run.output, kSourceLocation)) << run.output;
  auto debug = run_command(bin() + " -v --model " + dir_ + "/no-model --prompt x -H 64 -W 64 --num-frames 16 "
                           "--attn-padding 2 -o " + out);
  EXPECT_EQ(debug.status, 1) << debug.output;
  EXPECT_TRUE(std::regex_search(debug.output, kSourceLocation)) << debug.output;
}

TEST_F(CliFlagsTest, SettingsErrorUnderMpiexecIsReportedOnceWithoutAbort) {
  if (!vi::parallel::built_with_mpi()) GTEST_SKIP() << "built without MPI";
  const std::string d = fresh_dir("mpi-usage");
  auto r = run_command("timeout 60 " + mpi(2) + bin() + small(d + "/m.mp4") + " --steps 0");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(count(r.output, "--steps must be at least 1"), 1u) << r.output;
  EXPECT_EQ(r.output.find("MPI_ABORT"), std::string::npos) << r.output;
  // An output only rank 0 checks: the others hear of it and end the same way.
  vi::test::write_file(d + "/exists.mp4", "x");
  auto o = run_command("timeout 60 " + mpi(2) + bin() + small(d + "/exists.mp4"));
  EXPECT_EQ(o.status, 2) << o.output;
  EXPECT_EQ(count(o.output, "exists (-y/--overwrite replaces it)"), 1u) << o.output;
  EXPECT_EQ(o.output.find("MPI_ABORT"), std::string::npos) << o.output;
}

// Ctrl-C in the middle of denoising: `launcher` + the binary, `signal_ranks`: SIGINT goes to the
// rank processes instead of the launched process. Expects `signal_name` in the line and `status`.
struct Interruption {
  const char* name;
  int ranks;          // 0: the binary alone
  bool signal_ranks;
  const char* signal_name;
  int status;
};

void PrintTo(const Interruption& i, std::ostream* os) { *os << i.name; }

class InterruptTest : public CliFlagsTest, public ::testing::WithParamInterface<Interruption> {};

TEST_P(InterruptTest, PrintsTheStepAndTheResumeCommandLeavesNothingAndResumes) {
  const Interruption p = GetParam();
  if (p.ranks > 0 && !vi::parallel::built_with_mpi()) GTEST_SKIP() << "built without MPI";
  const std::string d = fresh_dir(std::string("interrupt-") + p.name);
  const std::string out = d + "/v.mp4", ckpt = d + "/ckpt";
  constexpr int kSteps = 24;
  const std::string command = (p.ranks > 0 ? vi::test::mpiexec(p.ranks) : std::string()) + bin() + small(out, kSteps) +
                              " --checkpoint-dir " + ckpt + " --checkpoint-every 2 --save-frames " + d + "/frames";
  Background job(command, d + "/log");
  ASSERT_TRUE(job.wait_for("step 3/24", 120)) << job.output();
  if (p.signal_ranks) {
    const auto ranks = job.children();
    ASSERT_EQ(ranks.size(), static_cast<size_t>(p.ranks)) << job.output();
    for (pid_t rank : ranks) ::kill(rank, SIGINT);
  } else {
    ::kill(job.pid(), SIGINT);
  }
  const int status = job.wait(60);
  const std::string log = job.output();
  EXPECT_EQ(status, p.status) << log;

  // One line: the step, the newest checkpoint, the command.
  EXPECT_EQ(count(log, "video-infinity: interrupted"), 1u) << log;
  std::smatch m;
  const std::regex line(std::string("video-infinity: interrupted by ") + p.signal_name +
                        " after step ([0-9]+)/24; newest complete checkpoint: (\\S+)/step-([0-9]{6}); "
                        "resume with: (.*)\n");
  ASSERT_TRUE(std::regex_search(log, m, line)) << log;
  const int step = std::stoi(m[1]), checkpoint = std::stoi(m[3]);
  EXPECT_GE(step, 3);
  EXPECT_LT(step, kSteps);
  EXPECT_EQ(m[2].str(), ckpt);
  EXPECT_EQ(checkpoint, step - step % 2);
  EXPECT_TRUE(fs::is_directory(ckpt + "/step-" + std::string(m[3]))) << log;
  const std::string resume = m[4];
  EXPECT_NE(resume.find(" --resume"), std::string::npos) << resume;

  // Nothing half-written.
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".json"));
  EXPECT_FALSE(fs::exists(d + "/frames"));
  EXPECT_TRUE(partial_files(d).empty()) << partial_files(d).front();

  // The printed command finishes the job from that checkpoint.
  auto resumed = run_command("timeout 300 " + resume);
  ASSERT_EQ(resumed.status, 0) << resume << "\n" << resumed.output;
  EXPECT_TRUE(fs::exists(out));
  // From the checkpoint named, or from the next one when every rank had written it but rank 0 had
  // not yet removed the older one (the line is only updated after that).
  const int resumed_from = sidecar(out)["checkpoint"]["resumed_from_step"];
  EXPECT_TRUE(resumed_from == checkpoint || resumed_from == checkpoint + 2) << resumed_from << " vs " << checkpoint;
  EXPECT_TRUE(fs::exists(d + "/frames/frame_000015.png"));
}

// mpiexec turns its SIGINT into SIGTERM for the ranks and exits 1 itself (OpenMPI); ranks that
// die of SIGINT themselves make it exit 130.
INSTANTIATE_TEST_SUITE_P(Launchers, InterruptTest,
                         ::testing::Values(Interruption{"alone", 0, false, "SIGINT", 130},
                                           Interruption{"mpiexec", 2, false, "SIGTERM", 1},
                                           Interruption{"ranks", 2, true, "SIGINT", 130}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(CliFlagsTest, AFailureWhileFramesAreWrittenLeavesNoFrameDirectory) {
  if (!vi::parallel::built_with_mpi()) GTEST_SKIP() << "built without MPI";
  // Rank 1 stops after the last step: rank 0 writes its own clip's frames into the temporary
  // directory, waits for rank 1's, gives up after --comm-timeout and ends the job.
  const std::string d = fresh_dir("frames-failed");
  auto r = run_command("timeout 120 " + vi::test::mpiexec(2) + "-x VI_FAULT=rank=1,step=2,mode=stop " + bin() +
                       small(d + "/v.mp4") + " --comm-timeout 5 --save-frames " + d + "/frames");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("for rank 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("frames.partial-"), std::string::npos) << "rank 0 never wrote frames\n" << r.output;
  EXPECT_FALSE(fs::exists(d + "/frames"));
  EXPECT_FALSE(fs::exists(d + "/v.mp4"));
  EXPECT_TRUE(partial_files(d).empty()) << partial_files(d).front() << "\n" << r.output;
}

}  // namespace
