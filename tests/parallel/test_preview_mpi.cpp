// The live preview under mpiexec -n 1..4 on the tiny reference model, clips of unequal length
// (4 clips of 8, 8, 7, 7 frames; 3 of 8, 8, 7 on 3 ranks), DDIM:
// - the frames rank 0 gathers are exactly the projection of every clip's x0 (each rank's own,
//   all-gathered by the test), padding dropped, and agree with a single-process run's x0
//   (2 steps, a preview after each);
// - the preview does not change the final latents (bit-identical with and without it; 4 steps,
//   a preview every 2).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "common/test_util.h"
#include "parallel/clip_parallel.h"
#include "pipeline/preview.h"
#include "pipeline/text_to_video.h"
#include "video_infinity/video_writer.h"

using namespace vi;
namespace fs = std::filesystem;

namespace {

class PreviewMpiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    parallel::init_launch(nullptr, nullptr);
    comm_ = vi::test::world_communicator();
  }

  static GenerationConfig config(int world, int64_t steps, int64_t every) {
    const int64_t clips = world == 3 ? 3 : 4;
    GenerationConfig c = test::golden_generation_config(clips, "ddim", steps);
    c.frames = clips * c.frames_per_clip - (clips == 3 ? 1 : 2);
    c.frames_per_clip = 0;
    c.preview_every = every;
    return c;
  }

  struct Run {
    at::Tensor final_latents;          // [Cl, 4, F, h, w]
    std::vector<at::Tensor> x0;        // per preview, this rank's [Cl, 4, F, h, w]
    std::vector<at::Tensor> frames;    // rank 0, per preview: uint8 [frames, h, w, 3]
    std::vector<int64_t> steps;        // of the previews
    at::Tensor map;                    // [5, 3]
    nlohmann::json record;
    parallel::ClipLayout layout;
  };

  // `preview`: with a LivePreview (writing `path` on rank 0 when not empty).
  static Run run(GenerationConfig c, parallel::Communicator& comm, bool preview, const std::string& path = {}) {
    resolve_config(c, comm.world_size());
    Run r;
    std::unique_ptr<pipeline::LivePreview> live;
    pipeline::PipelineOptions o;
    if (preview) {
      o.on_x0 = [&](int64_t step, const at::Tensor& x0) {
        r.x0.push_back(x0.clone());
        r.steps.push_back(step);
        live->add(step, x0);
      };
    }
    pipeline::TextToVideoPipeline p(c, comm, c10::kCPU, at::kFloat, o);
    if (preview) {
      pipeline::PreviewOptions po;
      po.path = path;
      po.on_frames = [&](int64_t, const at::Tensor& f) { r.frames.push_back(f.clone()); };
      live = std::make_unique<pipeline::LivePreview>(
          p.layout(), comm, [&p](const at::Tensor& z) { return p.decode_images(z); }, po);
    }
    p.load();
    at::Tensor text = p.encode_text();
    r.final_latents = p.denoise(p.initial_latents(), text);
    if (live) {
      live->finish();
      r.map = live->map().weight;
      r.record = live->record();
    }
    r.layout = p.layout();
    return r;
  }

  // Every clip's real frames of x0 [C, 4, F, h, w] (all clips' slots) projected with `map`, in video order.
  static at::Tensor project_video(const at::Tensor& x0, const parallel::ClipLayout& layout, const at::Tensor& map) {
    std::vector<at::Tensor> clips;
    for (int64_t c = 0; c < layout.clips; ++c) {
      at::Tensor rgb = pipeline::project_to_rgb(x0[c], 0, map);  // [F, h, w, 3]
      clips.push_back(rgb.narrow(0, 0, layout.clip_frames(c)));
    }
    return at::cat(clips, 0);
  }

  std::unique_ptr<parallel::Communicator> comm_;
};

TEST_F(PreviewMpiTest, GatheredFramesAreEveryClipsProjection) {
  const GenerationConfig c = config(comm_->world_size(), 2, 1);
  Run mine = run(c, *comm_, true);
  auto local = parallel::make_local_communicator();
  Run whole = run(c, *local, true);
  EXPECT_FALSE(mine.layout.uniform());
  EXPECT_EQ(mine.steps, (std::vector<int64_t>{0, 1}));
  ASSERT_EQ(mine.x0.size(), 2u);  // the same on every rank: the loop's steps
  ASSERT_TRUE(mine.map.defined());
  // Every rank holds rank 0's map (broadcast once, after the fit).
  at::Tensor maps = comm_->all_gather(mine.map.unsqueeze(0));
  for (int r = 1; r < comm_->world_size(); ++r) EXPECT_TRUE(at::equal(maps[r], maps[0])) << "rank " << r;
  for (size_t p = 0; p < mine.x0.size(); ++p) {
    at::Tensor all_x0 = comm_->all_gather(mine.x0[p].contiguous());  // [C, 4, F, h, w]
    if (comm_->rank() != 0) continue;
    ASSERT_EQ(mine.frames.size(), mine.x0.size());
    const at::Tensor expected = project_video(all_x0, mine.layout, mine.map);
    ASSERT_EQ(mine.frames[p].sizes(), expected.sizes());
    EXPECT_EQ(mine.frames[p].size(0), c.frames);
    EXPECT_TRUE(at::equal(mine.frames[p], expected)) << "preview " << p;
    // A single-process run's x0 through the same map: x0 agree to float rounding, so a colour
    // may land one level apart where it rounds at .5.
    const at::Tensor single = project_video(whole.x0[p], whole.layout, mine.map);
    at::Tensor diff = (mine.frames[p].to(at::kInt) - single.to(at::kInt)).abs();
    const double off = diff.gt(0).sum().item<double>() / static_cast<double>(diff.numel());
    std::printf("%d ranks, preview %zu (%lld frames %lldx%lld): exact vs the gathered x0; vs single process max "
                "|diff| %d, %.4f %% of values differ (x0 rel %.3g)\n",
                comm_->world_size(), p, static_cast<long long>(expected.size(0)),
                static_cast<long long>(expected.size(2)), static_cast<long long>(expected.size(1)),
                diff.max().item<int>(), 100 * off, test::rel_error(all_x0, whole.x0[p]));
    EXPECT_LE(diff.max().item<int>(), 1);
    EXPECT_LE(off, 0.001);
    // Not a flat colour: the clips' content comes through.
    EXPECT_GT(mine.frames[p].to(at::kFloat).std().item<double>(), 1.0);
  }
}

TEST_F(PreviewMpiTest, PreviewLeavesTheLatentsBitIdentical) {
  const GenerationConfig c = config(comm_->world_size(), 4, 2);
  std::string dir;
  if (comm_->rank() == 0) dir = test::make_temp_dir("preview_mpi");
  const std::string path = dir + "/v.mp4.preview.mp4";  // used on rank 0 only
  Run with = run(c, *comm_, true, path);
  Run without = run(c, *comm_, false);
  EXPECT_EQ(with.steps, (std::vector<int64_t>{1, 3}));  // after steps 2 and 4
  EXPECT_TRUE(at::equal(with.final_latents, without.final_latents))
      << "rank " << comm_->rank() << ": max diff " << (with.final_latents - without.final_latents).abs().max();
  if (comm_->rank() == 0) {
    std::printf("%d ranks: %s\n", comm_->world_size(), with.record.dump().c_str());
    EXPECT_EQ(with.record["previews"], 2);
    EXPECT_EQ(with.record["failed"], 0);
    EXPECT_EQ(with.record["last_written_step"], 4);
    EXPECT_GT(with.record["map"]["fit_pixels"].get<int64_t>(), 0);
    EXPECT_EQ(fs::exists(path), video::mp4_supported());
    fs::remove_all(dir);
  }
}

}  // namespace
