#include "pipeline/progress.h"

#include <fmt/format.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/check.h"

namespace vi::pipeline {

namespace {

using Clock = std::chrono::steady_clock;

// A log line while the bar is on screen would be glued to it: a sink before the terminal's
// clears the bar, one after redraws it.
class CallbackSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  explicit CallbackSink(std::function<void()> f) : f_(std::move(f)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg&) override { f_(); }
  void flush_() override {}

 private:
  std::function<void()> f_;
};

// Log mode: every step up to this many steps; beyond, about this many lines per run.
constexpr int64_t kLogEveryStepUpTo = 50;
constexpr int64_t kLogLinesPerRun = 25;
constexpr double kLogAtLeastEverySeconds = 30;

nlohmann::json optional_json(std::optional<double> v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

}  // namespace

std::vector<std::string> progress_modes() { return {"auto", "bar", "log", "json", "none"}; }

ProgressMode resolve_progress_mode(const std::string& flag, bool quiet, int rank, bool stderr_is_tty) {
  if (rank != 0) return ProgressMode::kNone;
  if (flag == "json") return ProgressMode::kJson;
  if (quiet || flag == "none") return ProgressMode::kNone;
  if (flag == "bar") return ProgressMode::kBar;
  if (flag == "log") return ProgressMode::kLog;
  VI_CHECK(flag == "auto", "--progress: unknown mode '{}' (expected {})", flag, join_list(progress_modes()));
  return stderr_is_tty ? ProgressMode::kBar : ProgressMode::kLog;
}

std::string format_hms(std::optional<double> seconds) {
  if (!seconds || !std::isfinite(*seconds) || *seconds < 0) return "-:--:--";
  const auto s = static_cast<int64_t>(std::llround(*seconds));
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60);
}

std::optional<double> EtaModel::seconds_per_step() const {
  if (steps_timed <= 0) return std::nullopt;
  return step_seconds / static_cast<double>(steps_timed);
}

std::optional<double> EtaModel::seconds_per_clip() const {
  if (clips_written > 0) return decode_seconds / static_cast<double>(clips_written);
  const auto per_step = seconds_per_step();
  if (!per_step) return std::nullopt;
  return kDecodeStepShare * *per_step / static_cast<double>(std::max<int64_t>(local_clips, 1));
}

std::optional<double> EtaModel::remaining_seconds() const {
  const int64_t steps_left = std::max<int64_t>(steps - steps_done, 0);
  const int64_t clips_left = std::max<int64_t>(clips - clips_written, 0);
  double left = 0;
  if (steps_left > 0) {
    const auto per_step = seconds_per_step();
    if (!per_step) return std::nullopt;
    left += static_cast<double>(steps_left) * *per_step;
  }
  if (clips_left > 0) {
    const auto per_clip = seconds_per_clip();
    if (!per_clip) return std::nullopt;
    left += static_cast<double>(clips_left) * *per_clip;
  }
  return left;
}

class ProgressReporter::BarLogSinks {
 public:
  explicit BarLogSinks(ProgressReporter& r)
      : logger_(spdlog::default_logger()),
        clear_(std::make_shared<CallbackSink>([&r] {
          if (r.drawn_ == 0) return;
          std::fprintf(r.text_, "\r%*s\r", static_cast<int>(r.drawn_), "");
          std::fflush(r.text_);
          r.drawn_ = 0;
          r.redraw_after_log_ = true;
        })),
        redraw_(std::make_shared<CallbackSink>([&r] {
          if (!r.redraw_after_log_) return;
          r.redraw_after_log_ = false;
          r.draw();
        })) {
    auto& sinks = logger_->sinks();
    sinks.insert(sinks.begin(), clear_);
    sinks.push_back(redraw_);
  }
  ~BarLogSinks() {
    auto& sinks = logger_->sinks();
    sinks.erase(std::remove_if(sinks.begin(), sinks.end(),
                               [&](const spdlog::sink_ptr& s) { return s == clear_ || s == redraw_; }),
                sinks.end());
  }

 private:
  std::shared_ptr<spdlog::logger> logger_;
  spdlog::sink_ptr clear_, redraw_;
};

ProgressReporter::ProgressReporter(ProgressMode mode, std::FILE* text, std::FILE* json)
    : mode_(mode), text_(text), json_(json), start_(Clock::now()), decode_start_(start_), last_log_(start_) {
  if (mode_ == ProgressMode::kBar && spdlog::default_logger()) sinks_ = std::make_shared<BarLogSinks>(*this);
}

ProgressReporter::~ProgressReporter() {
  sinks_.reset();
  end_bar();
}

double ProgressReporter::elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

std::string ProgressReporter::line() const {
  std::string s = stage_;
  if (stage_ == "denoise") {
    const auto per_step = eta_.seconds_per_step();
    s += fmt::format("  step {}/{}", eta_.steps_done, eta_.steps);
    if (per_step) s += fmt::format("  {:.2f} s/step", *per_step);
  } else if (stage_ == "decode") {
    s += fmt::format("  clip {}/{}", eta_.clips_written, eta_.clips);
    if (eta_.clips_written > 0) s += fmt::format("  {:.2f} s/clip", *eta_.seconds_per_clip());
  }
  s += "  elapsed " + format_hms(elapsed());
  if (stage_ != "done") s += "  ETA " + format_hms(eta_.remaining_seconds());
  return s;
}

void ProgressReporter::draw() {
  const std::string s = line();
  // Spaces over what is left of a longer previous line.
  const int pad = drawn_ > s.size() ? static_cast<int>(drawn_ - s.size()) : 0;
  std::fprintf(text_, "\r%s%*s", s.c_str(), pad, "");
  std::fflush(text_);
  drawn_ = s.size() + static_cast<size_t>(pad);
}

void ProgressReporter::end_bar() {
  if (drawn_ == 0) return;
  std::fputc('\n', text_);
  std::fflush(text_);
  drawn_ = 0;
}

void ProgressReporter::show(bool log_it) {
  if (mode_ == ProgressMode::kBar) draw();
  if (mode_ == ProgressMode::kLog && log_it) {
    spdlog::info("{}", line());
    last_log_ = Clock::now();
  }
}

void ProgressReporter::emit(nlohmann::json event) {
  if (mode_ != ProgressMode::kJson) return;
  event["elapsed_s"] = elapsed();
  const std::string s = event.dump() + "\n";
  std::fwrite(s.data(), 1, s.size(), json_);
  std::fflush(json_);
}

void ProgressReporter::start(const nlohmann::json& fields, int64_t steps, int64_t clips, int64_t local_clips) {
  eta_.steps = steps;
  eta_.clips = clips;
  eta_.local_clips = local_clips;
  nlohmann::json event = {{"event", "start"}};
  event.update(fields);
  emit(std::move(event));
}

void ProgressReporter::stage(const std::string& name) {
  stage_ = name;
  emit({{"event", "stage"}, {"stage", name}});
  show(false);
}

void ProgressReporter::step(int64_t index, int64_t steps, double seconds) {
  const bool first = eta_.steps_timed == 0;
  stage_ = "denoise";
  eta_.steps = steps;
  eta_.steps_done = index + 1;
  ++eta_.steps_timed;
  eta_.step_seconds += seconds;
  emit({{"event", "step"},
        {"step", eta_.steps_done},
        {"steps", steps},
        {"s_per_step", optional_json(eta_.seconds_per_step())},
        {"eta_s", optional_json(eta_.remaining_seconds())}});
  const int64_t every = steps <= kLogEveryStepUpTo ? 1 : (steps + kLogLinesPerRun - 1) / kLogLinesPerRun;
  const bool long_silence =
      std::chrono::duration<double>(Clock::now() - last_log_).count() >= kLogAtLeastEverySeconds;
  show(first || eta_.steps_done == steps || eta_.steps_done % every == 0 || long_silence);
}

void ProgressReporter::decode_begins() {
  eta_.steps_done = eta_.steps;  // a run resumed after its last step has no step events
  decode_start_ = Clock::now();
  stage("decode");
}

void ProgressReporter::clip_written(int64_t index) {
  eta_.clips_written = index + 1;
  eta_.decode_seconds = std::chrono::duration<double>(Clock::now() - decode_start_).count();
  emit({{"event", "clip_written"},
        {"clip", eta_.clips_written},
        {"clips", eta_.clips},
        {"s_per_clip", optional_json(eta_.seconds_per_clip())},
        {"eta_s", optional_json(eta_.remaining_seconds())}});
  show(true);
}

void ProgressReporter::done(const nlohmann::json& fields) {
  stage_ = "done";
  nlohmann::json event = {{"event", "done"}, {"eta_s", 0.0}};
  event.update(fields);
  emit(std::move(event));
  show(false);
  end_bar();
}

}  // namespace vi::pipeline
