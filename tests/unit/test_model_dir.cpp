// Model directories: the reference's composed layout, the HF cache layout, and errors that
// name the file that was expected.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_util.h"
#include "core/check.h"
#include "core/model_dir.h"
#include "core/safetensors.h"

namespace fs = std::filesystem;
using vi::core::resolve_model;

namespace {

using vi::test::error_of;

TEST(ModelDir, ReferenceLayoutWithSeparateUNetAtItsRoot) {
  auto paths = resolve_model(vi::test::tiny_model_dir(), vi::test::tiny_unet_dir());
  EXPECT_EQ(fs::path(paths.unet), fs::path(vi::test::tiny_unet_dir()));
  EXPECT_EQ(fs::path(paths.vae).filename(), "vae");
  // Without --unet the placeholder unet/ of zeroscope is used.
  auto plain = resolve_model(vi::test::tiny_model_dir());
  EXPECT_EQ(fs::path(plain.unet).filename(), "unet");
  // Every component's weights open.
  for (const auto& dir : {paths.unet, paths.text_encoder, paths.vae}) {
    EXPECT_GT(vi::core::WeightStore::open(dir).size(), 0u) << dir;
  }
}

TEST(ModelDir, HuggingFaceCacheLayout) {
  std::string cache = vi::test::make_temp_dir("hf");
  fs::path entry = fs::path(cache) / "models--cerspense--zeroscope_v2_576w";
  fs::create_directories(entry / "refs");
  fs::create_directories(entry / "snapshots");
  fs::create_directory_symlink(vi::test::tiny_model_dir(), entry / "snapshots" / "abc123");
  vi::test::write_file((entry / "refs" / "main").string(), "abc123");
  auto paths = resolve_model(entry.string());
  EXPECT_EQ(fs::path(paths.root), entry / "snapshots" / "abc123");
  // Without refs/main the single snapshot is taken; with two it is an error.
  fs::remove(entry / "refs" / "main");
  EXPECT_NO_THROW(resolve_model(entry.string()));
  fs::create_directory_symlink(vi::test::tiny_model_dir(), entry / "snapshots" / "def456");
  EXPECT_NE(error_of([&] { resolve_model(entry.string()); }).find("2 snapshots"), std::string::npos);
  fs::remove_all(cache);
}

TEST(ModelDir, MissingPartsNameTheExpectedFile) {
  std::string dir = vi::test::make_temp_dir("modeldir");
  EXPECT_NE(error_of([&] { resolve_model(dir + "/nope"); }).find("does not exist"), std::string::npos);
  std::string e = error_of([&] { resolve_model(dir); });
  EXPECT_NE(e.find(dir + "/unet/config.json"), std::string::npos) << e;
  fs::create_directories(fs::path(dir) / "unet");
  vi::test::write_file(dir + "/unet/config.json", "{}");
  e = error_of([&] { resolve_model(dir, "", vi::core::kUNet); });
  EXPECT_NE(e.find("diffusion_pytorch_model.safetensors"), std::string::npos) << e;
  e = error_of([&] { resolve_model(dir, "", vi::core::kTokenizer); });
  EXPECT_NE(e.find(dir + "/tokenizer/vocab.json"), std::string::npos) << e;
  e = error_of([&] { resolve_model(dir, dir + "/missing-unet"); });
  EXPECT_NE(e.find("--unet"), std::string::npos) << e;
  fs::remove_all(dir);
}

}  // namespace
