// Temporary files that must not outlive an ended process. Writers create their output under a
// temporary name (temporary_path) and rename it at the end; an exception removes the temporary file through the
// writer's destructor, but a launcher ending the job (mpirun sends SIGTERM to every rank once
// one has failed, and on Ctrl-C) runs no destructors. install_termination_cleanup() makes
// SIGTERM, SIGINT, SIGHUP and SIGPIPE remove every registered file (or directory of files),
// write the line set by set_termination_message() to stderr, and end the process with that
// signal (a shell sees 128 + the signal number).
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

// Throws "<flag>: '<path>' is a directory" and, unless `overwrite`, "<flag>: '<path>' exists
// (-y/--overwrite replaces it)": an output that would replace something is refused before any work.
void check_new_output(const std::string& path, const char* flag, bool overwrite);

// Installs the signal handlers (idempotent; call once at start-up, after MPI_Init).
void install_termination_cleanup();

// What the handlers write to stderr before ending the process, as one line:
// "video-infinity: interrupted by SIG<NAME>" + `rest` + "\n" (rest e.g. " at step 7/30; ...").
// When `gone_path` is given and no longer exists at the signal, `rest_if_gone` replaces `rest`
// (the job went on past what `rest` says: a checkpoint it names was replaced by a newer one).
// Nothing is written until it is set (ranks other than 0 never set it). Thread-safe; the handler
// reads a copy kept in fixed storage (a signal handler may not allocate).
void set_termination_message(const std::string& rest, const std::string& gone_path = {},
                             const std::string& rest_if_gone = {});
void clear_termination_message();  // the job is over: a signal now ends the process silently

// Registered while alive: removed by the handlers if a termination signal arrives.
class TempFileGuard {
 public:
  TempFileGuard() = default;
  explicit TempFileGuard(const std::string& path, bool directory = false) { reset(path, directory); }
  ~TempFileGuard() { release(); }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

  // Registers `path` (releasing the previous one); a `directory` is removed with the files in it
  // (one level: a directory of frames).
  void reset(const std::string& path, bool directory = false);
  void release();                       // unregisters (the file was renamed or removed)

 private:
  int slot_ = -1;
};

}  // namespace vi::core
