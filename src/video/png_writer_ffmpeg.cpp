// PNG frames through libavcodec's PNG encoder: lossless rgb24, deflate-compressed.
#include <cstring>

#include "core/check.h"
#include "video/libav_util.h"
#include "video/video_internal.h"

namespace vi::video::detail {

std::string encode_png_libav(const uint8_t* rgb, int width, int height) {
  libav::route_log_to_spdlog();
  const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
  VI_CHECK(codec != nullptr, "this libavcodec has no PNG encoder");
  // A fresh context per frame: PNG is intra-only and the encoder cannot be reused after a
  // flush; opening it costs microseconds next to the deflate itself.
  libav::CodecContextPtr ctx(avcodec_alloc_context3(codec));
  VI_CHECK(ctx != nullptr, "PNG encoder: out of memory");
  ctx->width = width;
  ctx->height = height;
  ctx->pix_fmt = AV_PIX_FMT_RGB24;
  ctx->time_base = AVRational{1, 1};
  VI_AV_CHECK(avcodec_open2(ctx.get(), codec, nullptr), "cannot open the PNG encoder for {}x{}",
              width, height);

  libav::FramePtr frame(av_frame_alloc());
  VI_CHECK(frame != nullptr, "PNG encoder: out of memory");
  frame->format = AV_PIX_FMT_RGB24;
  frame->width = width;
  frame->height = height;
  VI_AV_CHECK(av_frame_get_buffer(frame.get(), 0), "PNG encoder: cannot allocate a {}x{} frame",
              width, height);
  const size_t row = static_cast<size_t>(width) * 3;
  for (int y = 0; y < height; ++y) {
    std::memcpy(frame->data[0] + static_cast<ptrdiff_t>(y) * frame->linesize[0], rgb + y * row, row);
  }
  frame->pts = 0;

  VI_AV_CHECK(avcodec_send_frame(ctx.get(), frame.get()), "PNG encoder: cannot encode a frame");
  VI_AV_CHECK(avcodec_send_frame(ctx.get(), nullptr), "PNG encoder: cannot flush");
  libav::PacketPtr packet(av_packet_alloc());
  VI_CHECK(packet != nullptr, "PNG encoder: out of memory");
  std::string png;
  for (;;) {
    int ret = avcodec_receive_packet(ctx.get(), packet.get());
    if (ret == AVERROR_EOF) break;
    VI_AV_CHECK(ret, "PNG encoder: cannot encode a {}x{} frame", width, height);
    png.append(reinterpret_cast<const char*>(packet->data), packet->size);
    av_packet_unref(packet.get());
  }
  VI_CHECK(!png.empty(), "PNG encoder produced no data for a {}x{} frame", width, height);
  return png;
}

}  // namespace vi::video::detail
