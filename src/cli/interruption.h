// What a job says when a signal ends it (Ctrl-C, a batch system's SIGTERM, a closed pipe): one
// line with the step reached, the newest complete checkpoint and the command that resumes.
// The line is kept up to date after every step and written by the termination handler
// (core/temp_files.h), which may only copy preformatted bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "video_infinity/communicator.h"
#include "video_infinity/generation_config.h"

namespace vi::cli {

// `word` as one shell word ('...' when it holds anything but [A-Za-z0-9_@%+=:,./-]).
std::string shell_quote(const std::string& word);

// The command that runs this job again, shell-quoted, with --resume added when `resume` and
// missing. `argv` is this process's; under MPI it is the launcher's command line when the
// launcher (mpiexec, mpirun, ...) is this rank's parent and ends with `argv`, else
// "mpiexec -n <world size>" + argv; under torchrun, its command line likewise (this node's);
// under srun, "srun -n <world size>" + argv.
std::string rerun_command(const std::vector<std::string>& argv, const parallel::LaunchInfo& launch, bool resume);

// On rank 0: sets the termination line for a generate job and keeps it current.
class InterruptionReport {
 public:
  InterruptionReport(const GenerationConfig& config, const parallel::LaunchInfo& launch,
                     const std::vector<std::string>& argv);
  ~InterruptionReport();  // the job is over (done or failed): no line any more
  InterruptionReport(const InterruptionReport&) = delete;
  InterruptionReport& operator=(const InterruptionReport&) = delete;
  // After step index `i` of `steps` (and its checkpoint) completed.
  void after_step(int64_t i, int64_t steps);

 private:
  std::string step_dir(int64_t steps_done) const;
  // The line's text after the signal's name: where the job was, the checkpoint, the command.
  std::string line(const std::string& where, int64_t checkpoint, bool resuming) const;

  const GenerationConfig& config_;
  bool enabled_;
  std::string command_;
  bool first_step_ = true;
  int64_t newest_checkpoint_ = -1;  // steps done of the newest complete checkpoint; -1: none known
};

}  // namespace vi::cli
