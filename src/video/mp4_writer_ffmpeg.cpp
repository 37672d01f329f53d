// Video output through libavformat/libavcodec: RGB24 frames converted to yuv420p by libswscale,
// encoded as they arrive (H.264 via libx264 when present, else MPEG-4 part 2), muxed (MP4, MOV
// or Matroska, from the extension) into a temporary file that finish() renames to the final path.
#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

extern "C" {
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
}

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "core/temp_files.h"
#include "video/libav_util.h"
#include "video/video_internal.h"
#include "video_infinity/video_writer.h"

namespace vi::video {

bool mp4_supported() { return true; }

namespace {

// Removes a file when destroyed unless disarmed: no temporary file survives a failed or
// abandoned writer, whether the constructor, write() or finish() threw.
// While armed it is also removed if the process is ended by a termination signal.
struct RemoveOnDestroy {
  std::string path;
  bool armed = false;
  core::TempFileGuard guard;
  void arm() {
    armed = true;
    guard.reset(path);
  }
  void disarm() {
    armed = false;
    guard.release();
  }
  ~RemoveOnDestroy() {
    if (armed) std::remove(path.c_str());
  }
};

enum class Codec { kH264, kMpeg4 };

// The containers we offer, if libavformat muxes the codec into them: MP4 and QuickTime (one
// muxer family, index at the front), Matroska.
constexpr const char* kContainers[] = {"mp4", "mov", "mkv"};

void check_codec_name(const std::string& codec) {
  VI_CHECK(codec == "auto" || codec == "h264" || codec == "mpeg4", "unknown codec '{}' (expected auto, h264 or mpeg4)",
           codec);
}

// What "auto" becomes: H.264 when this libavcodec has libx264.
AVCodecID codec_id(const Mp4Options& options) {
  check_codec_name(options.codec);
  if (options.codec == "mpeg4") return AV_CODEC_ID_MPEG4;
  if (options.codec == "h264" || avcodec_find_encoder_by_name("libx264") != nullptr) return AV_CODEC_ID_H264;
  return AV_CODEC_ID_MPEG4;
}

std::string extension_of(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  if (!ext.empty()) ext.erase(0, 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

bool muxes(const char* extension, AVCodecID codec) {
  const AVOutputFormat* format = av_guess_format(nullptr, (std::string("x.") + extension).c_str(), nullptr);
  return format != nullptr && avformat_query_codec(format, codec, FF_COMPLIANCE_NORMAL) == 1;
}

// The muxer for `path`'s extension, or nullptr when we do not offer it.
const AVOutputFormat* container_for(const std::string& path, AVCodecID codec) {
  const std::string ext = extension_of(path);
  for (const char* offered : kContainers) {
    if (ext == offered && muxes(offered, codec)) return av_guess_format(nullptr, ("x." + ext).c_str(), nullptr);
  }
  return nullptr;
}

class Mp4Writer final : public VideoWriter {
 public:
  Mp4Writer(const std::string& path, int width, int height, double fps, const Mp4Options& options)
      : path_(path), width_(width), height_(height), fps_(fps), quiet_(options.quiet) {
    temp_.path = core::temporary_path(path);
    libav::route_log_to_spdlog();

    // Muxer first: whether the encoder must put its headers in extradata depends on it. The
    // temporary name has no extension: the muxer is the final path's.
    check_video_output(path, options, "video writer");
    const AVOutputFormat* container = container_for(path, codec_id(options));
    AVFormatContext* format = nullptr;
    VI_AV_CHECK(avformat_alloc_output_context2(&format, container, nullptr, temp_.path.c_str()),
                "cannot create a {} muxer for '{}'", container->name, path);
    format_.reset(format);

    open_encoder(options);

    stream_ = avformat_new_stream(format_.get(), nullptr);
    VI_CHECK(stream_ != nullptr, "'{}': cannot add a video stream (out of memory)", path);
    VI_AV_CHECK(avcodec_parameters_from_context(stream_->codecpar, codec_.get()),
                "'{}': cannot copy the encoder parameters", path);
    stream_->time_base = codec_->time_base;
    stream_->avg_frame_rate = codec_->framerate;
    stream_->r_frame_rate = codec_->framerate;

    temp_.arm();  // avio_open creates the file
    VI_AV_CHECK(avio_open(&format_->pb, temp_.path.c_str(), AVIO_FLAG_WRITE),
                "cannot create '{}' (temporary file for '{}')", temp_.path, path);
    for (const auto& [key, value] : options.metadata) {
      VI_AV_CHECK(av_dict_set(&format_->metadata, key.c_str(), value.c_str(), 0), "'{}': cannot set tag '{}'", path,
                  key);
    }
    AVDictionary* muxer_options = nullptr;
    if (std::strcmp(container->name, "mp4") == 0 || std::strcmp(container->name, "mov") == 0) {
      av_dict_set(&muxer_options, "movflags", "+faststart", 0);  // index first: streamable
    }
    int ret = avformat_write_header(format_.get(), &muxer_options);
    av_dict_free(&muxer_options);
    VI_AV_CHECK(ret, "cannot write the {} header of '{}'", container->name, temp_.path);

    sws_.reset(sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                              SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
    VI_CHECK(sws_ != nullptr, "'{}': cannot create the RGB24 -> yuv420p converter", path);
    // Limited-range BT.709, as the stream is tagged; RGB input is full range.
    const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
    VI_CHECK(sws_setColorspaceDetails(sws_.get(), bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16) >= 0,
             "'{}': the RGB24 -> yuv420p converter rejected BT.709", path);

    rgb_.reset(av_frame_alloc());
    frame_.reset(av_frame_alloc());
    packet_.reset(av_packet_alloc());
    VI_CHECK(rgb_ != nullptr && frame_ != nullptr && packet_ != nullptr, "'{}': out of memory",
             path);
    for (auto [f, pix_fmt] : {std::pair{rgb_.get(), AV_PIX_FMT_RGB24},
                              std::pair{frame_.get(), AV_PIX_FMT_YUV420P}}) {
      f->format = pix_fmt;
      f->width = width;
      f->height = height;
      VI_AV_CHECK(av_frame_get_buffer(f, 0), "'{}': cannot allocate a {}x{} frame", path, width,
                  height);
    }
  }

  void write(const at::Tensor& frames) override {
    VI_CHECK(state_ == State::kOpen, "MP4 writer for '{}': write() after {}", path_,
             state_ == State::kFinished ? "finish()" : "an earlier error");
    at::Tensor f = detail::check_frames(frames, height_, width_, "MP4 writer for '" + path_ + "'");
    try {
      for (int64_t i = 0; i < f.size(0); ++i) {
        // swscale's SIMD reads past the end of a row, so it gets a padded copy, not the tensor.
        av_image_copy_plane(rgb_->data[0], rgb_->linesize[0], f[i].data_ptr<uint8_t>(),
                            3 * width_, 3 * width_, height_);
        // The encoder may still reference the previous frame's buffer.
        VI_AV_CHECK(av_frame_make_writable(frame_.get()), "'{}': cannot allocate a frame", path_);
        sws_scale(sws_.get(), rgb_->data, rgb_->linesize, 0, height_, frame_->data,
                  frame_->linesize);
        frame_->pts = next_pts_;
        frame_->quality = codec_->global_quality;  // the MPEG-4 fixed quantiser; x264 ignores it
        encode(frame_.get());
        ++next_pts_;
      }
    } catch (...) {
      state_ = State::kFailed;
      throw;
    }
  }

  void finish() override {
    VI_CHECK(state_ == State::kOpen, "MP4 writer for '{}': finish() after {}", path_,
             state_ == State::kFinished ? "finish()" : "an earlier error");
    state_ = State::kFailed;  // until the rename succeeds
    VI_CHECK(next_pts_ > 0, "MP4 writer for '{}': no frames were written", path_);
    encode(nullptr);  // drain delayed (B-)frames
    VI_AV_CHECK(av_write_trailer(format_.get()), "cannot finish the video file '{}'", temp_.path);
    VI_AV_CHECK(avio_closep(&format_->pb), "cannot close '{}'", temp_.path);
    std::error_code ec;
    std::filesystem::rename(temp_.path, path_, ec);
    VI_CHECK(!ec, "cannot rename '{}' to '{}': {}", temp_.path, path_, ec.message());
    temp_.disarm();
    state_ = State::kFinished;
    if (quiet_) return;
    std::error_code size_ec;
    const double kb = static_cast<double>(std::filesystem::file_size(path_, size_ec)) / 1e3;
    spdlog::info("wrote {}: {} frames {}x{} at {:g} fps, {}", path_, next_pts_, width_, height_,
                 fps_, size_ec ? "size unknown" : kb < 1e3 ? fmt::format("{:.1f} kB", kb)
                                                           : fmt::format("{:.1f} MB", kb / 1e3));
  }

  std::string description() const override { return description_; }
  int64_t frames_written() const override { return next_pts_; }

 private:
  enum class State { kOpen, kFinished, kFailed };

  void open_encoder(const Mp4Options& options) {
    if (options.codec != "mpeg4") {
      const AVCodec* x264 = avcodec_find_encoder_by_name("libx264");
      if (x264 != nullptr) {
        try {
          open_codec(x264, Codec::kH264, options);
          return;
        } catch (const Error& e) {
          if (options.codec == "h264") throw;
          spdlog::warn("libx264 failed to open ({}); falling back to MPEG-4 part 2", e.message());
        }
      } else {
        VI_CHECK(options.codec != "h264",
                 "MP4 writer for '{}': H.264 requested but this libavcodec has no libx264 encoder "
                 "(use codec mpeg4 or auto)", path_);
        spdlog::info("libx264 is not available in this libavcodec; writing MPEG-4 part 2");
      }
    }
    const AVCodec* mpeg4 = avcodec_find_encoder_by_name("mpeg4");
    VI_CHECK(mpeg4 != nullptr, "MP4 writer for '{}': this libavcodec has neither libx264 nor the "
             "MPEG-4 part 2 encoder", path_);
    open_codec(mpeg4, Codec::kMpeg4, options);
  }

  void open_codec(const AVCodec* codec, Codec kind, const Mp4Options& options) {
    codec_.reset(avcodec_alloc_context3(codec));
    VI_CHECK(codec_ != nullptr, "'{}': out of memory", path_);
    AVCodecContext* c = codec_.get();
    // MPEG-4 part 2 limits the time base to 16-bit numbers.
    const AVRational rate = av_d2q(fps_, 65535);
    c->width = width_;
    c->height = height_;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->framerate = rate;
    c->time_base = av_inv_q(rate);
    c->sample_aspect_ratio = AVRational{1, 1};
    c->color_range = AVCOL_RANGE_MPEG;
    c->colorspace = AVCOL_SPC_BT709;
    c->color_primaries = AVCOL_PRI_BT709;
    c->color_trc = AVCOL_TRC_BT709;
    if (format_->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (kind == Codec::kH264) {
      VI_CHECK(options.crf >= 0 && options.crf <= 51, "MP4 writer: crf {} is outside 0..51",
               options.crf);
      VI_AV_CHECK(av_opt_set_int(c->priv_data, "crf", options.crf, 0), "libx264: cannot set crf {}",
                  options.crf);
      VI_AV_CHECK(av_opt_set(c->priv_data, "preset", options.preset.c_str(), 0),
                  "libx264: cannot set preset '{}'", options.preset);
      description_ = fmt::format("H.264 (libx264) yuv420p, crf {}, preset {}", options.crf,
                                 options.preset);
    } else {
      VI_CHECK(options.mpeg4_qscale >= 1 && options.mpeg4_qscale <= 31,
               "MP4 writer: MPEG-4 qscale {} is outside 1..31", options.mpeg4_qscale);
      c->flags |= AV_CODEC_FLAG_QSCALE;
      c->global_quality = FF_QP2LAMBDA * options.mpeg4_qscale;
      c->gop_size = 12;
      description_ = fmt::format("MPEG-4 part 2 (mpeg4) yuv420p, qscale {}", options.mpeg4_qscale);
    }
    VI_AV_CHECK(avcodec_open2(c, codec, nullptr),
                "'{}': cannot open the encoder ({}) for {}x{} at {:g} fps", path_, description_,
                width_, height_, fps_);
  }

  // Sends one frame (nullptr: end of stream) and muxes every packet the encoder returns.
  void encode(const AVFrame* frame) {
    VI_AV_CHECK(avcodec_send_frame(codec_.get(), frame), "'{}': the encoder rejected frame {}",
                path_, next_pts_);
    for (;;) {
      int ret = avcodec_receive_packet(codec_.get(), packet_.get());
      if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return;
      VI_AV_CHECK(ret, "'{}': encoding failed near frame {}", path_, next_pts_);
      av_packet_rescale_ts(packet_.get(), codec_->time_base, stream_->time_base);
      packet_->stream_index = stream_->index;
      // Takes the packet's reference whether or not it succeeds.
      VI_AV_CHECK(av_interleaved_write_frame(format_.get(), packet_.get()), "cannot write to '{}'",
                  temp_.path);
    }
  }

  std::string path_;
  int width_, height_;
  double fps_;
  bool quiet_;
  std::string description_;
  RemoveOnDestroy temp_;  // declared before format_: removed after the file is closed
  libav::OutputFormatPtr format_;
  libav::CodecContextPtr codec_;
  AVStream* stream_ = nullptr;  // owned by format_
  libav::SwsPtr sws_;
  libav::FramePtr rgb_;    // [H, W, 3] input with padded rows
  libav::FramePtr frame_;  // yuv420p sent to the encoder
  libav::PacketPtr packet_;
  int64_t next_pts_ = 0;
  State state_ = State::kOpen;
};

}  // namespace

std::vector<std::string> video_extensions(const Mp4Options& options) {
  std::vector<std::string> out;
  for (const char* ext : kContainers) {
    if (muxes(ext, codec_id(options))) out.push_back(ext);
  }
  return out;
}

void check_video_output(const std::string& path, const Mp4Options& options, const char* flag) {
  try {
    check_codec_name(options.codec);
  } catch (const Error& e) {
    VI_FAIL("{}: {}", flag, e.message());
  }
  VI_CHECK(options.codec != "h264" || avcodec_find_encoder_by_name("libx264") != nullptr,
           "{}: H.264 requested but this libavcodec has no libx264 encoder (use --codec mpeg4 or auto)", flag);
  if (container_for(path, codec_id(options)) != nullptr) return;
  std::vector<std::string> offered;
  for (const auto& ext : video_extensions(options)) offered.push_back("." + ext);
  const std::string ext = extension_of(path);
  VI_FAIL("{}: '{}': {} (supported: {}, chosen by the file extension)", flag, path,
          ext.empty() ? std::string("no file extension") : "unsupported container '." + ext + "'",
          join_list(offered, ", "));
}

std::unique_ptr<VideoWriter> open_mp4_writer(const std::string& path, int width, int height,
                                             double fps, const Mp4Options& options) {
  VI_CHECK(width > 0 && height > 0, "MP4 writer for '{}': invalid size {}x{}", path, width, height);
  VI_CHECK(width % 2 == 0 && height % 2 == 0,
           "MP4 writer for '{}': yuv420p needs an even width and height, got {}x{}", path, width,
           height);
  VI_CHECK(fps > 0 && fps <= 1000, "MP4 writer for '{}': fps {} is outside (0, 1000]", path, fps);
  auto writer = std::make_unique<Mp4Writer>(path, width, height, fps, options);
  if (!options.quiet) spdlog::info("writing {} ({}x{} at {:g} fps): {}", path, width, height, fps, writer->description());
  return writer;
}

}  // namespace vi::video
