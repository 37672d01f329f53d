// Temporary files that must not outlive an ended process. Writers create their output under a
// temporary name (temporary_path) and rename it at the end; an exception removes the temporary file through the
// writer's destructor, but a launcher ending the job (mpirun sends SIGTERM to every rank once
// one has failed) runs no destructors. install_termination_cleanup() makes SIGTERM, SIGINT and
// SIGHUP remove every registered file before the process ends with that signal.
#pragma once

#include <string>

namespace vi::core {

// "<path>.partial-<pid>": same directory as path, so the final rename is atomic.
std::string temporary_path(const std::string& path);

// Writes bytes to temporary_path(path) (guarded) and renames it to path; throws naming path.
void write_file_atomically(const std::string& path, const std::string& bytes);

// Removes temporary_path(path) files of processes that no longer exist (a writer killed by
// SIGKILL runs no handler); returns how many were removed. Files of running processes stay.
int remove_stale_temporaries(const std::string& path);

// Throws "<flag>: directory '<dir>' does not exist / is not writable" unless a file can be
// created beside `path` (checked by creating and removing a probe file).
void check_writable(const std::string& path, const char* flag);
// The same for a directory that may not exist yet: it, or its nearest existing ancestor.
void check_creatable_dir(const std::string& dir, const char* flag);

// Installs the signal handlers (idempotent; call once at start-up, after MPI_Init).
void install_termination_cleanup();

// Registered while alive: removed by the handlers if a termination signal arrives.
class TempFileGuard {
 public:
  TempFileGuard() = default;
  explicit TempFileGuard(const std::string& path) { reset(path); }
  ~TempFileGuard() { release(); }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

  void reset(const std::string& path);  // registers `path` (releasing the previous one)
  void release();                       // unregisters (the file was renamed or removed)

 private:
  int slot_ = -1;
};

}  // namespace vi::core
