#include "cli/interruption.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <unistd.h>

#include "core/temp_files.h"
#include "pipeline/checkpoint_layout.h"

namespace vi::cli {

namespace {

// The parent's argv (from /proc), empty when unreadable.
std::vector<std::string> parent_argv() {
  std::ifstream in("/proc/" + std::to_string(::getppid()) + "/cmdline", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  for (size_t start = 0; start < bytes.size();) {
    const size_t end = bytes.find('\0', start);
    out.push_back(bytes.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

bool is_mpi_launcher(const std::string& program) {
  const std::string name = std::filesystem::path(program).filename().string();
  return name == "mpiexec" || name == "mpirun" || name == "orterun" || name == "prterun" || name == "mpiexec.hydra";
}

std::string join_quoted(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + shell_quote(w);
  return out;
}

}  // namespace

std::string shell_quote(const std::string& word) {
  const bool plain = !word.empty() && word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                             "0123456789_@%+=:,./-") == std::string::npos;
  if (plain) return word;
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string rerun_command(const std::vector<std::string>& argv, const parallel::LaunchInfo& launch, bool resume) {
  std::vector<std::string> words = argv;
  // The launcher's own command line when it started this process directly (mpirun on this node,
  // torchrun's agent with --no-python): its argv ends with ours.
  const std::vector<std::string> parent = parent_argv();
  const auto our_length = static_cast<std::ptrdiff_t>(argv.size());
  const bool ends_with_ours =
      parent.size() > argv.size() && std::equal(argv.begin(), argv.end(), parent.end() - our_length);
  const bool torchrun = std::any_of(parent.begin(), parent.end(), [](const std::string& w) {
    return w == "torch.distributed.run" || std::filesystem::path(w).filename() == "torchrun";
  });
  if (launch.mpi) {
    if (!parent.empty() && is_mpi_launcher(parent.front()) && ends_with_ours) {
      words = parent;
    } else if (launch.world_size > 1) {
      words.insert(words.begin(), {"mpiexec", "-n", std::to_string(launch.world_size)});
    }
  } else if (launch.launcher == parallel::Launcher::kTorchrun && torchrun && ends_with_ours) {
    words = parent;  // this node's torchrun command (each node reruns its own)
  } else if (launch.launcher == parallel::Launcher::kSlurm) {
    words.insert(words.begin(), {"srun", "-n", std::to_string(launch.world_size)});
  }
  if (resume && std::find(argv.begin(), argv.end(), "--resume") == argv.end()) words.push_back("--resume");
  return join_quoted(words);
}

InterruptionReport::InterruptionReport(const GenerationConfig& config, const parallel::LaunchInfo& launch,
                                       const std::vector<std::string>& argv)
    : config_(config), enabled_(launch.rank == 0) {
  if (!enabled_) return;
  command_ = rerun_command(argv, launch, !config.checkpoint_dir.empty());
  core::set_termination_message(line(config.resume ? " before the first step of this run" : " before the first step",
                                     -1, config.resume));
}

InterruptionReport::~InterruptionReport() {
  if (enabled_) core::clear_termination_message();
}

void InterruptionReport::after_step(int64_t i, int64_t steps) {
  if (!enabled_) return;
  const int64_t done = i + 1;
  if (first_step_ && i > 0) newest_checkpoint_ = i;  // resumed from the checkpoint after step i
  first_step_ = false;
  const int64_t every = config_.checkpoint_every;
  const bool checkpoints = !config_.checkpoint_dir.empty() && every > 0;
  if (checkpoints && (done % every == 0 || done == steps)) newest_checkpoint_ = done;
  auto where = [&](int64_t k) {
    return k == steps ? fmt::format(" after the last step ({}/{}), while decoding", k, steps)
                      : fmt::format(" after step {}/{}", k, steps);
  };
  if (!checkpoints || newest_checkpoint_ <= 0 || newest_checkpoint_ >= steps) {
    core::set_termination_message(line(where(done), newest_checkpoint_, false));
    return;
  }
  // The next checkpoint replaces this one once every rank has written it, before the next
  // update of this line: a signal in between finds this one gone and names the next.
  const int64_t next = std::min((newest_checkpoint_ / every + 1) * every, steps);
  core::set_termination_message(line(where(done), newest_checkpoint_, false), step_dir(newest_checkpoint_),
                                line(where(next), next, false));
}

std::string InterruptionReport::step_dir(int64_t steps_done) const {
  return config_.checkpoint_dir + "/" + pipeline::step_dir_name(steps_done);
}

std::string InterruptionReport::line(const std::string& where, int64_t checkpoint, bool resuming) const {
  if (config_.checkpoint_dir.empty()) {
    return where + "; no checkpoints (--checkpoint-dir makes a job resumable); run again with: " + command_;
  }
  const std::string newest = checkpoint > 0 ? "; newest complete checkpoint: " + step_dir(checkpoint)
                             : resuming    ? std::string()  // --resume will find it
                                           : std::string("; no complete checkpoint yet");
  return where + newest + "; resume with: " + command_;
}

}  // namespace vi::cli
