#include "pipeline/preview.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"
#include "core/safetensors_format.h"
#include "core/temp_files.h"
#include "pipeline/text_to_video.h"
#include "video_infinity/video_writer.h"

namespace vi::pipeline {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The latent crop the map is fitted on: at most this many latent pixels a side (256 decoded).
constexpr int64_t kFitCrop = 32;
// Frames upsampled and handed to the encoder at a time (bounds the encoder thread's memory).
constexpr int64_t kEncodeChunk = 32;

// One output coordinate's two source samples and the second one's weight: torch's bilinear
// interpolation with align_corners=false (area_pixel_compute_source_index).
struct Tap {
  int64_t i0 = 0, i1 = 0;
  float l = 0;
};

std::vector<Tap> bilinear_taps(int64_t in, int64_t factor) {
  std::vector<Tap> taps(static_cast<size_t>(in * factor));
  for (int64_t o = 0; o < in * factor; ++o) {
    const float s = std::max((static_cast<float>(o) + 0.5f) / static_cast<float>(factor) - 0.5f, 0.0f);
    Tap& t = taps[static_cast<size_t>(o)];
    t.i0 = std::min(static_cast<int64_t>(s), in - 1);
    t.i1 = std::min(t.i0 + 1, in - 1);
    t.l = s - static_cast<float>(t.i0);
  }
  return taps;
}

}  // namespace

nlohmann::json LatentRgbMap::to_json() const {
  nlohmann::json rows = nlohmann::json::array();
  at::Tensor w = weight.to(at::kDouble).contiguous();
  for (int64_t r = 0; r < w.size(0); ++r) {
    rows.push_back({w[r][0].item<double>(), w[r][1].item<double>(), w[r][2].item<double>()});
  }
  nlohmann::json bias = rows.back();
  rows.erase(rows.size() - 1);
  return {{"weight", rows},  // one [R, G, B] row per latent channel, 0..255 per latent unit
          {"bias", bias},
          {"fit_pixels", pixels},
          {"rmse", rmse},
          {"psnr_db", psnr_db},
          {"rmse_block_means", rmse_blocks},
          {"rmse_constant_colour", rmse_constant}};
}

LatentRgbMap fit_latent_rgb_map(const at::Tensor& latents, const at::Tensor& images) {
  VI_CHECK(latents.dim() == 4 && images.dim() == 4 && images.size(0) == latents.size(0) && images.size(1) == 3,
           "preview fit: latents [N, C, h, w] and images [N, 3, H, W] expected, got {} and {}",
           core::shape_str(latents.sizes().vec()), core::shape_str(images.sizes().vec()));
  const int64_t N = latents.size(0), C = latents.size(1), h = latents.size(2), w = latents.size(3);
  const int64_t s = images.size(2) / h;
  VI_CHECK(s >= 1 && images.size(2) == s * h && images.size(3) == s * w,
           "preview fit: images {} are not an integer multiple of the latents {}",
           core::shape_str(images.sizes().vec()), core::shape_str(latents.sizes().vec()));
  at::Tensor z = latents.to(at::kCPU, at::kDouble);
  at::Tensor img = images.to(at::kCPU, at::kDouble);
  at::Tensor blocks = at::avg_pool2d(img, {s, s});  // [N, 3, h, w]: what each latent pixel becomes, on average
  at::Tensor X = at::cat({z.permute({0, 2, 3, 1}).reshape({N * h * w, C}), at::ones({N * h * w, 1}, at::kDouble)},
                         1);                                       // [P, C + 1]
  at::Tensor Y = blocks.permute({0, 2, 3, 1}).reshape({N * h * w, 3});  // [P, 3]
  at::Tensor beta = std::get<0>(at::linalg_lstsq(X, Y));             // [C + 1, 3]
  LatentRgbMap m;
  m.weight = beta.to(at::kFloat).contiguous();
  m.pixels = N * h * w;
  m.rmse_blocks = std::sqrt((X.matmul(beta) - Y).pow(2).mean().item<double>());
  m.rmse_constant = std::sqrt((Y - Y.mean(0, true)).pow(2).mean().item<double>());
  // What the preview shows (uint8, upsampled) against the decode itself.
  at::Tensor shown = upsample_frames(project_to_rgb(latents.to(at::kCPU), 1, m.weight), s).to(at::kDouble);
  const double mse = (shown - img.permute({0, 2, 3, 1})).pow(2).mean().item<double>();
  m.rmse = std::sqrt(mse);
  m.psnr_db = mse > 0 ? 10.0 * std::log10(255.0 * 255.0 / mse) : 100.0;  // 100: identical
  return m;
}

at::Tensor project_to_rgb(const at::Tensor& x, int64_t channel_dim, const at::Tensor& weight) {
  const int64_t dim = channel_dim < 0 ? channel_dim + x.dim() : channel_dim;
  VI_CHECK(dim >= 0 && dim < x.dim(), "preview projection: channel dimension {} of a {}-d tensor", channel_dim, x.dim());
  const int64_t C = x.size(dim);
  VI_CHECK(weight.dim() == 2 && weight.size(0) == C + 1 && weight.size(1) == 3,
           "preview projection: a map of shape {} for {} latent channels (expected [{}, 3])",
           core::shape_str(weight.sizes().vec()), C, C + 1);
  at::Tensor wt = weight.to(at::kCPU, at::kFloat).contiguous();
  const auto a = wt.accessor<float, 2>();
  at::Tensor xf = x.to(at::kFloat);
  std::vector<at::Tensor> rgb;
  for (int64_t k = 0; k < 3; ++k) {
    // One multiply and one add per channel, element-wise: no reduction whose order could depend
    // on the tensor's size.
    at::Tensor v = xf.select(dim, 0) * a[0][k];
    for (int64_t c = 1; c < C; ++c) v = v + xf.select(dim, c) * a[c][k];
    rgb.push_back(v + a[C][k]);
  }
  return at::stack(rgb, -1).clamp_(0, 255).round_().to(at::kByte);
}

at::Tensor upsample_frames(const at::Tensor& frames, int64_t factor) {
  VI_CHECK(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == at::kByte && factor >= 1,
           "upsample_frames: uint8 [N, h, w, 3] and a factor >= 1 expected, got {} {} and {}",
           c10::toString(frames.scalar_type()), core::shape_str(frames.sizes().vec()), factor);
  at::Tensor src = frames.to(at::kCPU).contiguous();
  const int64_t N = src.size(0), h = src.size(1), w = src.size(2), H = h * factor, W = w * factor;
  at::Tensor out = at::empty({N, H, W, 3}, at::kByte);
  const auto rows = bilinear_taps(h, factor), cols = bilinear_taps(w, factor);
  const uint8_t* in = src.data_ptr<uint8_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* frame = in + n * h * w * 3;
    for (int64_t y = 0; y < H; ++y) {
      const Tap& r = rows[static_cast<size_t>(y)];
      const uint8_t* top = frame + r.i0 * w * 3;
      const uint8_t* bottom = frame + r.i1 * w * 3;
      for (int64_t x = 0; x < W; ++x) {
        const Tap& c = cols[static_cast<size_t>(x)];
        for (int64_t k = 0; k < 3; ++k) {
          const float t = top[c.i0 * 3 + k] + c.l * (top[c.i1 * 3 + k] - top[c.i0 * 3 + k]);
          const float b = bottom[c.i0 * 3 + k] + c.l * (bottom[c.i1 * 3 + k] - bottom[c.i0 * 3 + k]);
          *o++ = static_cast<uint8_t>(t + r.l * (b - t) + 0.5f);
        }
      }
    }
  }
  return out;
}

std::string preview_path(const std::string& output) { return output + ".preview.mp4"; }

void prepare_preview(const GenerationConfig& config) {
  if (config.preview_every == 0) return;
  VI_CHECK(video::mp4_supported(), "--preview-every needs a build with ffmpeg (the preview is an MP4 video)");
  VI_CHECK(!config.output.empty(), "--preview-every needs --output (the preview is <output>.preview.mp4)");
  const std::string path = preview_path(config.output);
  // A resumed job finds the preview its interrupted run left: its own, replaced as it goes.
  core::check_new_output(path, "--preview-every (its preview <output>.preview.mp4)", config.overwrite || config.resume);
  core::remove_stale_temporaries(path);  // of a rank 0 SIGKILLed while writing a preview
}

LivePreview::LivePreview(const parallel::ClipLayout& layout, parallel::Communicator& comm, Decoder decoder,
                         PreviewOptions options)
    : layout_(layout), comm_(comm), decoder_(std::move(decoder)), options_(std::move(options)) {
  VI_CHECK(options_.upscale >= 1, "preview: upscale {} < 1", options_.upscale);
}

LivePreview::~LivePreview() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stop_) pending_ = Job{};  // unwinding from an error: nothing more is written
    stop_ = true;
  }
  wake_.notify_all();
  if (encoder_.joinable()) encoder_.join();
}

// Rank 0 fits the map to one decoded frame of its x0; every rank receives it (NaN: no previews).
void LivePreview::fit(const at::Tensor& x0) {
  const int64_t C = x0.size(1), h = x0.size(3), w = x0.size(4);
  at::Tensor packed = at::full({C + 1, 3}, std::numeric_limits<float>::quiet_NaN(),
                               at::TensorOptions().dtype(at::kFloat).device(comm_.device()));
  if (comm_.rank() == 0) {
    try {
      const int64_t hc = std::min(h, kFitCrop), wc = std::min(w, kFitCrop);
      at::Tensor frame = x0[0].select(1, layout_.local_frames(0) / 2);                        // [C, h, w]
      frame = frame.narrow(1, (h - hc) / 2, hc).narrow(2, (w - wc) / 2, wc).unsqueeze(0);  // [1, C, hc, wc]
      at::Tensor images = decoder_(frame);                                                 // [1, 3, 8hc, 8wc]
      images = images.to(at::kCPU, at::kFloat).div(2).add(0.5).clamp(0, 1).mul(255);
      map_ = fit_latent_rgb_map(frame, images);
      VI_CHECK(map_.weight.isfinite().all().item<bool>(), "the least-squares solution is not finite");
      packed.copy_(map_.weight);
      spdlog::info("preview: {} at {}x{}; latent-to-RGB map fitted to the VAE decode of a {}x{} latent crop: RMSE "
                   "{:.1f} of 255 ({:.1f} dB PSNR) against that decode (block means: {:.1f}, a constant colour "
                   "{:.1f})",
                   options_.path.empty() ? std::string("no file") : options_.path, w * options_.upscale,
                   h * options_.upscale, wc, hc, map_.rmse, map_.psnr_db, map_.rmse_blocks, map_.rmse_constant);
    } catch (const std::exception& e) {
      spdlog::warn("preview: cannot fit the latent-to-RGB map ({}): no previews in this run", e.what());
      map_ = LatentRgbMap{};
    }
  }
  comm_.broadcast(packed, 0);
  if (!packed.isfinite().all().item<bool>()) {
    disabled_ = true;
    map_ = LatentRgbMap{};
    return;
  }
  if (comm_.rank() != 0) map_.weight = packed.to(at::kCPU);
}

void LivePreview::add(int64_t step, const at::Tensor& x0) {
  if (disabled_) return;
  if (!fitted()) {
    const auto t0 = Clock::now();
    fit(x0);
    fit_seconds_ = seconds_since(t0);
    if (disabled_) return;
  }
  const auto t0 = Clock::now();
  const int64_t Cl = x0.size(0), F = x0.size(2), h = x0.size(3), w = x0.size(4);
  VI_CHECK(Cl == layout_.local_clips && F == layout_.frames, "preview: x0 of shape {} for {} local clips of {} frames",
           core::shape_str(x0.sizes().vec()), layout_.local_clips, layout_.frames);
  at::Tensor mine = project_to_rgb(x0, 1, map_.weight).reshape({Cl * F, h, w, 3}).to(comm_.device());
  const uint64_t before = comm_.bytes_sent();
  at::Tensor all = comm_.all_gather(mine.contiguous());  // [C * F, h, w, 3], every clip's slot
  bytes_per_gather_ = comm_.bytes_sent() - before;
  ++gathered_;
  if (comm_.rank() == 0) {
    std::vector<at::Tensor> clips;
    for (int64_t c = 0; c < layout_.clips; ++c) clips.push_back(all.narrow(0, c * F, layout_.clip_frames(c)));
    at::Tensor frames = at::cat(clips, 0).cpu();  // [frames, h, w, 3]
    if (options_.on_frames) options_.on_frames(step, frames);
    if (!options_.path.empty()) queue(Job{step, frames});
  }
  loop_seconds_ += seconds_since(t0);
}

void LivePreview::queue(Job job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stop_) return;
  if (pending_.frames.defined()) ++replaced_;  // still waiting for the encoder: the newer one wins
  pending_ = std::move(job);
  if (!encoder_.joinable()) encoder_ = std::thread([this] { encode_loop(); });
  wake_.notify_one();
}

void LivePreview::encode_loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return pending_.frames.defined() || stop_; });
      if (!pending_.frames.defined()) return;
      job = std::move(pending_);
      pending_ = Job{};
    }
    const auto t0 = Clock::now();
    bool ok = true;
    try {
      write(job);
    } catch (const std::exception& e) {
      ok = false;
      spdlog::warn("preview after step {} not written ({}); the generation goes on", job.step + 1, e.what());
    }
    std::lock_guard<std::mutex> lock(mutex_);
    encode_seconds_ += seconds_since(t0);
    if (ok) {
      ++written_;
      last_written_step_ = job.step;
    } else {
      ++failed_;
    }
  }
}

// Upsampled chunk by chunk into the writer, which encodes to "<path>.partial-<pid>" (removed on
// an error or a termination signal) and renames it over the previous preview.
void LivePreview::write(const Job& job) const {
  const int64_t n = job.frames.size(0), h = job.frames.size(1), w = job.frames.size(2), f = options_.upscale;
  video::Mp4Options o;
  o.crf = options_.crf;
  o.preset = options_.preset;
  o.mpeg4_qscale = 8;
  o.quiet = true;
  o.metadata = {{"comment", fmt::format("video-infinity live preview: the x0 prediction at step {} through a fitted "
                                        "latent-to-RGB map", job.step + 1)}};
  auto writer = video::open_mp4_writer(options_.path, static_cast<int>(w * f), static_cast<int>(h * f), options_.fps, o);
  for (int64_t i = 0; i < n; i += kEncodeChunk) {
    writer->write(upsample_frames(job.frames.narrow(0, i, std::min(kEncodeChunk, n - i)), f));
  }
  writer->finish();
}

void LivePreview::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;  // the encoder writes what is pending, then ends
  }
  wake_.notify_all();
  if (encoder_.joinable()) encoder_.join();
}

nlohmann::json LivePreview::record() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {{"file", options_.path},
          {"fps", options_.fps},
          {"upscale", options_.upscale},
          {"encoder", fmt::format("crf {}, preset {}", options_.crf, options_.preset)},
          {"map", fitted() ? map_.to_json() : nlohmann::json(nullptr)},
          {"fit_seconds", fit_seconds_},
          {"previews", gathered_},
          {"written", written_},
          {"replaced_while_waiting", replaced_},
          {"failed", failed_},
          {"last_written_step", last_written_step_ + 1},
          {"loop_seconds", loop_seconds_},  // on the denoising loop, without the fit
          {"encode_seconds", encode_seconds_},  // on the encoder thread, overlapping the loop
          {"bytes_sent_per_preview", bytes_per_gather_}};
}

std::unique_ptr<LivePreview> make_live_preview(const GenerationConfig& config, parallel::Communicator& comm,
                                               TextToVideoPipeline& pipe) {
  PreviewOptions options;
  options.path = preview_path(config.output);
  options.fps = config.export_fps;
  return std::make_unique<LivePreview>(
      pipe.layout(), comm, [&pipe](const at::Tensor& z) { return pipe.decode_images(z); }, std::move(options));
}

}  // namespace vi::pipeline
