// The strict loader reports every problem of a checkpoint in one error, with the tensor's
// full name and both shapes, and loads a good checkpoint exactly.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <filesystem>

#include "common/test_util.h"
#include "core/check.h"
#include "core/state_dict.h"

namespace fs = std::filesystem;

namespace {

struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    convs = register_module("convs", torch::nn::ModuleList());
    convs->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 8, 3)));
    convs->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 1)));
    norm = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(2, 8)));
    proj = register_module("proj", torch::nn::Linear(8, 3));
    steps = register_buffer("steps", at::zeros({2}, at::kLong));
  }
  torch::nn::ModuleList convs{nullptr};
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Linear proj{nullptr};
  at::Tensor steps;
};
TORCH_MODULE(TinyNet);

class StateDictTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = vi::test::make_temp_dir("state-dict"); }
  void TearDown() override { fs::remove_all(dir_); }

  // A checkpoint with the module's own names and random values (prefix prepended).
  std::vector<std::pair<std::string, at::Tensor>> checkpoint(const std::string& prefix = "") {
    TinyNet net;
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (auto& [name, t] : vi::core::named_state(*net)) {
      out.emplace_back(prefix + name, t.is_floating_point() ? at::randn(t.sizes()) : at::arange(t.numel(), at::kLong));
    }
    return out;
  }
  vi::core::WeightStore save(const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
    std::string file = dir_ + "/w" + std::to_string(counter_++) + ".safetensors";
    vi::core::save_safetensors(file, tensors);
    return vi::core::WeightStore::open(file);
  }
  std::string dir_;
  int counter_ = 0;
};

TEST_F(StateDictTest, LoadsEveryTensorExactlyAndConvertsDtype) {
  auto ck = checkpoint("text_model.");
  TinyNet net;
  vi::core::LoadOptions opts;
  opts.prefix = "text_model.";
  opts.dtype = at::kDouble;
  vi::core::load_state_dict(*net, save(ck), opts);
  auto state = vi::core::named_state(*net);
  ASSERT_EQ(state.size(), ck.size());
  for (size_t i = 0; i < ck.size(); ++i) {
    const auto& got = state[i].second;
    if (got.is_floating_point()) {
      EXPECT_EQ(got.scalar_type(), at::kDouble) << state[i].first;
      EXPECT_FALSE(got.requires_grad()) << state[i].first;
    } else {
      EXPECT_EQ(got.scalar_type(), at::kLong) << state[i].first;  // integer buffers keep their type
    }
    EXPECT_TRUE(at::equal(got.to(ck[i].second.scalar_type()), ck[i].second)) << state[i].first;
  }
  // The loaded parameters are copies, not views of the read-only mapping: writable.
  net->proj->weight.data().add_(1.0);
}

TEST_F(StateDictTest, OneErrorListsEveryProblem) {
  auto ck = checkpoint();
  std::vector<std::pair<std::string, at::Tensor>> bad;
  for (auto& [name, t] : ck) {
    if (name == "convs.1.bias") continue;                                           // missing
    if (name == "convs.1.weight") t = at::randn({8, 4, 1, 1});                      // wrong shape
    if (name == "proj.bias") t = at::zeros({3}, at::kLong);                         // wrong dtype
    bad.emplace_back(name, t);
  }
  bad.emplace_back("convs.2.weight", at::randn({1}));                               // unexpected
  TinyNet net;
  try {
    vi::core::load_state_dict(*net, save(bad));
    ADD_FAILURE() << "no error";
  } catch (const vi::Error& e) {
    const std::string what = e.what();
    std::printf("%s\n", what.c_str());
    EXPECT_NE(what.find("4 problems"), std::string::npos);
    EXPECT_NE(what.find("tensor 'convs.1.bias': missing (expected shape [8])"), std::string::npos);
    EXPECT_NE(what.find("tensor 'convs.1.weight': got [8, 4, 1, 1], expected [8, 8, 1, 1]"), std::string::npos);
    EXPECT_NE(what.find("tensor 'proj.bias': dtype I64, expected a floating type"), std::string::npos);
    EXPECT_NE(what.find("tensor 'convs.2.weight': unexpected"), std::string::npos);
  }
  // Nothing was half-loaded: the module is untouched by a failed load.
  EXPECT_EQ(net->proj->weight.scalar_type(), at::kFloat);
}

TEST_F(StateDictTest, OptionalAndIgnoredNames) {
  auto ck = checkpoint();
  std::vector<std::pair<std::string, at::Tensor>> partial;
  for (auto& kv : ck) {
    if (kv.first != "steps") partial.push_back(kv);
  }
  partial.emplace_back("encoder.conv.weight", at::randn({2}));
  partial.emplace_back("position_ids", at::arange(4, at::kLong));
  vi::core::LoadOptions opts;
  opts.optional_names = {"steps"};
  opts.ignored_names = {"encoder.*", "position_ids"};
  TinyNet net;
  EXPECT_NO_THROW(vi::core::load_state_dict(*net, save(partial), opts));
  opts.ignored_names = {"encoder.*"};
  EXPECT_THROW(vi::core::load_state_dict(*net, save(partial), opts), vi::Error);
  // Non-strict loading skips what is missing or extra.
  vi::core::LoadOptions loose;
  loose.strict = false;
  EXPECT_NO_THROW(vi::core::load_state_dict(*net, save(partial), loose));
}

}  // namespace
