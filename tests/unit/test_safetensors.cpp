// The safetensors reader is strict: every malformed file gives a vi::Error naming the file and
// the problem, never a crash; well-formed files (ours and the reference's) round-trip exactly.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "core/check.h"
#include "core/safetensors.h"

namespace fs = std::filesystem;
using vi::core::SafetensorsFile;
using vi::core::WeightStore;

namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = vi::test::make_temp_dir("safetensors"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // A file from a raw header string and data bytes.
  std::string raw_file(const std::string& name, const std::string& header, size_t data_bytes,
                       int64_t declared_len = -1) {
    std::string bytes(8, '\0');
    uint64_t n = declared_len >= 0 ? static_cast<uint64_t>(declared_len) : header.size();
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    bytes += header;
    bytes += std::string(data_bytes, '\x01');
    vi::test::write_file(path(name), bytes);
    return path(name);
  }

  // Opening `file` must throw a vi::Error whose message names the file and contains `needle`.
  void expect_error(const std::string& file, const std::string& needle) {
    try {
      SafetensorsFile f(file);
      ADD_FAILURE() << "no error for " << file << " (expected '" << needle << "')";
    } catch (const vi::Error& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(file), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << "expected '" << needle << "' in: " << what;
    }
  }

  std::string dir_;
};

TEST_F(SafetensorsTest, RoundTripEveryDtypeWithMetadata) {
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f64", at::randn({3, 2}, at::kDouble)},
      {"f32", at::randn({4, 5, 6})},
      {"f16", at::randn({7}).to(at::kHalf)},
      {"bf16", at::randn({2, 3}).to(at::kBFloat16)},
      {"i64", at::arange(10, at::kLong).reshape({2, 5})},
      {"i32", at::arange(6, at::kInt)},
      {"u8", at::arange(256, at::kInt).to(at::kByte)},
      {"bool", at::rand({9}) > 0.5},
      {"scalar", at::scalar_tensor(3.5)},
      {"empty", at::empty({0, 4})},
      {"strided", at::randn({6, 4}).t()},  // non-contiguous input is written contiguously
  };
  vi::core::save_safetensors(path("all.safetensors"), tensors, {{"format", "pt"}, {"note", "round trip"}});
  SafetensorsFile f(path("all.safetensors"));
  EXPECT_EQ(f.tensors().size(), tensors.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "round trip");
  for (const auto& [name, t] : tensors) {
    at::Tensor got = f.tensor(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(got, t)) << name;
  }
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_THROW(f.tensor("nope"), vi::Error);
  // No temporary file is left beside the output.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(SafetensorsTest, TensorsAreViewsIntoTheMapping) {
  vi::core::save_safetensors(path("v.safetensors"), {{"a", at::ones({1024})}, {"b", at::zeros({16})}});
  SafetensorsFile f(path("v.safetensors"));
  at::Tensor a = f.tensor("a");
  at::Tensor a2 = f.tensor("a");
  EXPECT_EQ(a.data_ptr(), a2.data_ptr());  // same bytes, no copy
  WeightStore store = WeightStore::open(path("v.safetensors"));
  EXPECT_EQ(store.get("a").data_ptr(), store.get("a").data_ptr());
  at::Tensor converted = store.get("a", at::kHalf);
  EXPECT_EQ(converted.scalar_type(), at::kHalf);
  EXPECT_FLOAT_EQ(converted.sum().item<float>(), 1024.0f);
}

TEST_F(SafetensorsTest, ViewOutlivesTheFileObject) {
  vi::core::save_safetensors(path("alive.safetensors"), {{"x", at::arange(100, at::kFloat)}});
  at::Tensor x;
  { x = SafetensorsFile(path("alive.safetensors")).tensor("x"); }
  EXPECT_FLOAT_EQ(x[99].item<float>(), 99.0f);
}

TEST_F(SafetensorsTest, HeaderOnlyReadMatchesFullParse) {
  vi::core::save_safetensors(path("h.safetensors"), {{"w", at::randn({8, 3})}, {"b", at::randn({3})}});
  auto header = vi::core::read_safetensors_header(path("h.safetensors"));
  SafetensorsFile f(path("h.safetensors"));
  ASSERT_EQ(header.tensors.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(header.tensors[i].name, f.tensors()[i].name);
    EXPECT_EQ(header.tensors[i].shape, f.tensors()[i].shape);
  }
}

TEST_F(SafetensorsTest, ShardedCheckpointThroughIndex) {
  vi::core::save_safetensors(path("m-00001-of-00002.safetensors"), {{"a", at::ones({2})}});
  vi::core::save_safetensors(path("m-00002-of-00002.safetensors"), {{"b", at::full({3}, 2.0)}});
  nlohmann::json index = {{"metadata", {{"total_size", 20}}},
                          {"weight_map", {{"a", "m-00001-of-00002.safetensors"}, {"b", "m-00002-of-00002.safetensors"}}}};
  vi::test::write_file(path("model.safetensors.index.json"), index.dump());
  WeightStore store = WeightStore::open(dir_);  // the directory resolves to the index
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_FLOAT_EQ(store.get("b").sum().item<float>(), 6.0f);
  EXPECT_NE(store.file_of("b").find("00002"), std::string::npos);

  // An index pointing at a shard that lacks the tensor is an error naming both.
  nlohmann::json bad = index;
  bad["weight_map"]["c"] = "m-00001-of-00002.safetensors";
  vi::test::write_file(path("bad.safetensors.index.json"), bad.dump());
  try {
    WeightStore::open(path("bad.safetensors.index.json"));
    ADD_FAILURE() << "no error";
  } catch (const vi::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'c'"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, DirectoryWithoutWeightsNamesWhatWasExpected) {
  try {
    WeightStore::open(dir_);
    ADD_FAILURE() << "no error";
  } catch (const vi::Error& e) {
    EXPECT_NE(std::string(e.what()).find("diffusion_pytorch_model.safetensors"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, MalformedFiles) {
  const std::string good = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  // Control: the good header opens.
  EXPECT_NO_THROW(SafetensorsFile(raw_file("good.safetensors", good, 8)));

  vi::test::write_file(path("empty.safetensors"), "");
  expect_error(path("empty.safetensors"), "too short");
  vi::test::write_file(path("short.safetensors"), "abc");
  expect_error(path("short.safetensors"), "too short");
  expect_error(raw_file("longheader.safetensors", good, 8, 10000), "runs past the end");
  expect_error(raw_file("insane.safetensors", good, 8, int64_t{1} << 40), "not sane");
  expect_error(raw_file("truncated.safetensors", good, 5), "outside the data area");
  expect_error(raw_file("notjson.safetensors", "{not json at all}", 0), "not valid JSON");
  expect_error(raw_file("array.safetensors", "[1,2,3]", 0), "does not start with '{'");
  expect_error(raw_file("string.safetensors", R"({"t":"oops"})", 0), "not an object");
  expect_error(raw_file("dtype.safetensors", R"({"t":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2),
               "unsupported dtype 'F8_E4M3'");
  expect_error(raw_file("size.safetensors", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
               "needs 12 bytes");
  expect_error(raw_file("range.safetensors", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[100,108]}})", 8),
               "outside the data area");
  expect_error(raw_file("reversed.safetensors", R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
               "reversed");
  expect_error(raw_file("overlap.safetensors",
                        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        12),
               "overlap");
  expect_error(raw_file("gap.safetensors", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
               "unused bytes");
  expect_error(raw_file("trailing.safetensors", good, 12), "after the last tensor");
  expect_error(raw_file("negshape.safetensors", R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
               "non-negative");
  expect_error(raw_file("noshape.safetensors", R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8), "shape");
  expect_error(raw_file("extra.safetensors", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8),
               "unknown field 'x'");
  expect_error(raw_file("dup.safetensors",
                        R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                        8),
               "twice");
  expect_error(raw_file("meta.safetensors", R"({"__metadata__":{"a":1}})", 0), "__metadata__");
  expect_error(raw_file("overflow.safetensors",
                        R"({"t":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
               "overflows");
  expect_error(path("does-not-exist.safetensors"), "cannot open");
}

TEST_F(SafetensorsTest, EveryPrefixOfAValidFileIsRejectedCleanly) {
  vi::core::save_safetensors(path("full.safetensors"), {{"w", at::randn({5, 3})}, {"b", at::randn({3})}});
  const std::string bytes = vi::test::read_file(path("full.safetensors"));
  int rejected = 0;
  for (size_t n = 0; n < bytes.size(); n += 7) {
    vi::test::write_file(path("prefix.safetensors"), bytes.substr(0, n));
    EXPECT_THROW(SafetensorsFile(path("prefix.safetensors")), vi::Error) << "prefix of " << n << " bytes";
    ++rejected;
  }
  EXPECT_GT(rejected, 10);
}

TEST_F(SafetensorsTest, EveryReferenceFileLoads) {
  int files = 0;
  int64_t tensors = 0;
  for (const auto& e : fs::recursive_directory_iterator(vi::test::reference_dir())) {
    if (e.path().extension() != ".safetensors") continue;
    SafetensorsFile f(e.path().string());
    for (const auto& info : f.tensors()) {
      at::Tensor t = f.tensor(info.name);
      EXPECT_EQ(t.numel(), info.numel());
      ++tensors;
    }
    ++files;
  }
  EXPECT_GE(files, 16);
  EXPECT_GT(tensors, 100);
  std::printf("reference: %d safetensors files, %lld tensors loaded\n", files, static_cast<long long>(tensors));
}

}  // namespace
