// libav* resources owned by unique_ptr with deleters, error strings, and av_log routed to
// spdlog. Included only by *_ffmpeg.cpp files (compiled when VI_HAVE_FFMPEG).
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

#include <memory>
#include <string>

#include "core/check.h"

namespace vi::video::libav {

struct CodecContextDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsDeleter {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
// Closes the output file (if opened) before freeing the muxer context.
struct OutputFormatDeleter {
  void operator()(AVFormatContext* c) const {
    if (c->pb != nullptr && !(c->oformat->flags & AVFMT_NOFILE)) avio_closep(&c->pb);
    avformat_free_context(c);
  }
};

using CodecContextPtr = std::unique_ptr<AVCodecContext, CodecContextDeleter>;
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;
using OutputFormatPtr = std::unique_ptr<AVFormatContext, OutputFormatDeleter>;

// "Invalid argument" etc. for a negative libav return code.
std::string error_string(int code);

// Sends libav's log lines to spdlog (warnings and errors at warn, the rest at debug), once
// per process, so encoder chatter (x264 statistics) stays out of the progress output.
void route_log_to_spdlog();

}  // namespace vi::video::libav

// VI_AV_CHECK(ret, "format {}", args...): throws vi::Error when ret < 0, appending libav's
// description of ret.
#define VI_AV_CHECK(ret, ...)                                                              \
  do {                                                                                     \
    const int vi_av_ret_ = (ret);                                                          \
    if (vi_av_ret_ < 0) {                                                                  \
      ::vi::detail::throw_error(__FILE__, __LINE__,                                        \
                                ::fmt::format(__VA_ARGS__) + ": " +                        \
                                    ::vi::video::libav::error_string(vi_av_ret_));         \
    }                                                                                      \
  } while (0)
