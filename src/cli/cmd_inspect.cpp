// `video-infinity inspect DIR`: a model's components, each tensor's name, dtype and shape, and
// parameter counts — from the safetensors headers alone, so it is instant on multi-GB files.
#include <nlohmann/json.hpp>
#include <spdlog/fmt/fmt.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "core/check.h"
#include "core/model_dir.h"
#include "core/safetensors.h"

namespace fs = std::filesystem;

namespace vi::cli {

namespace {

struct Options {
  std::string dir;
  bool tensors = true;
};

// Headers of every file of a checkpoint (one file or the shards of an index).
std::vector<core::TensorInfo> checkpoint_tensors(const std::string& file) {
  std::vector<core::TensorInfo> out;
  if (file.size() > 11 && file.compare(file.size() - 11, 11, ".index.json") == 0) {
    nlohmann::json index;
    try {
      std::ifstream in(file);
      index = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      VI_FAIL("{}: shard index is not valid JSON: {}", file, e.what());
    }
    VI_CHECK(index.contains("weight_map") && index["weight_map"].is_object(), "{}: no weight_map", file);
    std::set<std::string> shards;
    for (auto& v : index["weight_map"]) shards.insert(v.get<std::string>());
    for (const auto& s : shards) {
      auto header = core::read_safetensors_header((fs::path(file).parent_path() / s).string());
      out.insert(out.end(), header.tensors.begin(), header.tensors.end());
    }
  } else {
    out = core::read_safetensors_header(file).tensors;
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

int run(const Options& opt) {
  const std::string root = core::resolve_hf_cache(opt.dir);
  VI_CHECK(fs::is_directory(root), "inspect: '{}' is not a directory", opt.dir);
  // Components: the root itself (a UNet at the root) and each subdirectory with weights.
  std::vector<std::pair<std::string, std::string>> components;  // (name, checkpoint file)
  if (auto f = core::WeightStore::locate(root)) components.emplace_back(".", *f);
  std::vector<fs::path> subdirs;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.is_directory()) subdirs.push_back(e.path());
  }
  std::sort(subdirs.begin(), subdirs.end());
  for (const auto& d : subdirs) {
    if (auto f = core::WeightStore::locate(d.string())) components.emplace_back(d.filename().string(), *f);
  }
  if (fs::exists(fs::path(root) / "model_index.json")) std::printf("model_index.json present\n");
  for (const auto& d : subdirs) {
    if (fs::exists(d / "scheduler_config.json")) std::printf("%s/: scheduler config\n", d.filename().c_str());
    if (fs::exists(d / "vocab.json")) std::printf("%s/: tokenizer files\n", d.filename().c_str());
  }
  VI_CHECK(!components.empty(), "inspect: no safetensors weights under '{}'", root);

  int64_t total = 0;
  for (const auto& [name, file] : components) {
    auto tensors = checkpoint_tensors(file);
    int64_t params = 0;
    std::map<std::string, int> dtypes;
    for (const auto& t : tensors) {
      params += t.numel();
      dtypes[core::dtype_name(t.dtype)]++;
    }
    std::string dtype_list;
    for (const auto& [d, n] : dtypes) dtype_list += fmt::format("{}{} x{}", dtype_list.empty() ? "" : ", ", d, n);
    std::printf("\n== %s (%s): %zu tensors, %s parameters [%s]\n", name.c_str(), fs::path(file).filename().c_str(),
                tensors.size(), with_commas(params).c_str(), dtype_list.c_str());
    if (opt.tensors) {
      for (const auto& t : tensors) {
        std::printf("  %-80s %-5s %s\n", t.name.c_str(), core::dtype_name(t.dtype), core::shape_str(t.shape).c_str());
      }
    }
    total += params;
  }
  std::printf("\ntotal: %s parameters in %zu component%s\n", with_commas(total).c_str(), components.size(),
              components.size() == 1 ? "" : "s");
  return 0;
}

}  // namespace

Runner add_inspect(CLI::App& app) {
  auto opt = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("inspect", "List a model's components, tensors (name, dtype, shape) and parameter counts");
  cmd->add_option("dir", opt->dir, "Model directory (diffusers layout, a UNet directory, or a HF cache entry)")
      ->required();
  cmd->add_flag("!--no-tensors", opt->tensors, "Print only the per-component summary");
  return [cmd, opt](const parallel::LaunchInfo&) { return cmd->parsed() ? run(*opt) : -1; };
}

}  // namespace vi::cli
