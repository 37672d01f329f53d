// Progress of a generation as rank 0 reports it (--progress auto|bar|log|json|none):
//  bar   one line on stderr, redrawn with a carriage return at every event: stage, step i/N
//        (clip i/N while decoding), s/step, elapsed and ETA as h:mm:ss;
//  log   the same fields as a log line per step (every few steps in long runs) and per clip;
//  json  one JSON object per line on stdout per event, for batch scripts (start, stage, step,
//        clip_written, done); nothing else goes to stdout;
//  auto  bar when stderr is a terminal, else log.
// generate() calls it at each event. The ETA covers the rest of the job, decode and encode
// included (EtaModel says how); its arithmetic has no clock, so tests can check it.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vi::pipeline {

enum class ProgressMode { kNone, kBar, kLog, kJson };

// --progress's values (the settings table's choices).
std::vector<std::string> progress_modes();
// The mode of a rank: auto is bar when stderr is a terminal, else log; --quiet silences every
// mode but json (a script asked for it); ranks other than 0 report nothing.
ProgressMode resolve_progress_mode(const std::string& flag, bool quiet, int rank, bool stderr_is_tty);

// "h:mm:ss", seconds rounded to the nearest, hours unbounded ("27:46:40"); "-:--:--" when
// unknown (nullopt, negative, NaN or infinite).
std::string format_hms(std::optional<double> seconds);

// What is left of the job, from what has been measured so far.
// Denoising: the steps left times the mean seconds per step of the steps this process ran.
// Decoding and encoding (rank 0 writes every clip in order, decoding its own while the other
// ranks decode theirs): before the first clip is written, each clip is estimated at
// kDecodeStepShare of one step's time per local clip (by FLOPs, the VAE decoder costs about
// 0.6 of a guided UNet3D step per frame at VideoCrafter2's sizes; the tiny test model about
// 0.4); from the first written clip on, the measured seconds per written clip replace it.
struct EtaModel {
  static constexpr double kDecodeStepShare = 0.5;

  int64_t steps = 0;         // of the schedule
  int64_t steps_done = 0;    // including steps restored from a checkpoint
  int64_t steps_timed = 0;   // run by this process
  double step_seconds = 0;   // their sum
  int64_t clips = 0;         // of the video
  int64_t local_clips = 1;   // per rank
  int64_t clips_written = 0;
  double decode_seconds = 0;  // since decoding began, to the last written clip

  std::optional<double> seconds_per_step() const;
  // Decoding and encoding one clip: measured, else estimated from the step time.
  std::optional<double> seconds_per_clip() const;
  // nullopt until there is something to estimate from; 0 once every clip is written.
  std::optional<double> remaining_seconds() const;
};

class ProgressReporter {
 public:
  // `text` takes the bar (stderr), `json` the JSON lines (stdout); log lines go to spdlog.
  explicit ProgressReporter(ProgressMode mode, std::FILE* text = stderr, std::FILE* json = stdout);
  ~ProgressReporter();  // ends the bar's line (also when the job fails)
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  ProgressMode mode() const { return mode_; }
  const EtaModel& eta() const { return eta_; }

  // The events, in the job's order. `fields` are added to the JSON event.
  void start(const nlohmann::json& fields, int64_t steps, int64_t clips, int64_t local_clips);
  void stage(const std::string& name);  // "load", "text", "denoise"
  // After step `index` (0-based) of `steps`, which took `seconds`.
  void step(int64_t index, int64_t steps, double seconds);
  void decode_begins();  // stage "decode": decoding and encoding, clip by clip
  void clip_written(int64_t index);  // 0-based, in video order
  void done(const nlohmann::json& fields);

 private:
  class BarLogSinks;
  double elapsed() const;
  // One state line: "<stage>  <what> i/N  x.xx s/<unit>  elapsed h:mm:ss  ETA h:mm:ss".
  std::string line() const;
  void show(bool log_it);
  void emit(nlohmann::json event);
  void draw();
  void end_bar();

  ProgressMode mode_;
  std::FILE* text_;
  std::FILE* json_;
  std::chrono::steady_clock::time_point start_, decode_start_, last_log_;
  EtaModel eta_;
  std::string stage_ = "start";
  size_t drawn_ = 0;  // characters of the bar on screen
  bool redraw_after_log_ = false;
  std::shared_ptr<BarLogSinks> sinks_;  // bar: log lines clear the bar and redraw it after them
};

}  // namespace vi::pipeline
