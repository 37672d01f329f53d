// The run's record in the sidecar: SHA-256 against the FIPS 180-4 examples, shell quoting that a
// shell reads back, file records (hashed only under the limit), the model's files.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "common/test_util.h"
#include "core/model_dir.h"
#include "core/run_record.h"

namespace vi::core {
namespace {

TEST(RunRecord, Sha256KnownAnswers) {
  auto hex = [](const std::string& s) { return sha256_hex(s.data(), s.size()); };
  EXPECT_EQ(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // 56 bytes: the padding spills into a second block.
  EXPECT_EQ(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string dir = test::make_temp_dir("sha");
  test::write_file(dir + "/million-a", std::string(1000000, 'a'));  // read in chunks
  EXPECT_EQ(sha256_file(dir + "/million-a"), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  std::filesystem::remove_all(dir);
}

TEST(RunRecord, ShellQuotingReadsBackInAShell) {
  EXPECT_EQ(shell_quote("--frames"), "--frames");
  EXPECT_EQ(shell_quote("out/a.mp4"), "out/a.mp4");
  EXPECT_EQ(shell_quote("a cat"), "'a cat'");
  EXPECT_EQ(shell_quote(""), "''");
  const std::vector<std::string> words = {"video-infinity", "-p", "it's a \"cat\" $HOME `x`", "--frames", "16", ""};
  const std::string line = shell_join(words);
  // printf prints each word the shell parsed on its own line.
  auto r = test::run_command("printf '%s\\n' " + line.substr(line.find(' ') + 1));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "-p\nit's a \"cat\" $HOME `x`\n--frames\n16\n\n");
}

TEST(RunRecord, DatesAndFileRecords) {
  EXPECT_EQ(utc_iso8601(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(utc_iso8601(1798601875), "2026-12-30T03:37:55Z");
  const std::string dir = test::make_temp_dir("record");
  test::write_file(dir + "/f", "abc");
  const auto small = file_record(dir + "/f");
  EXPECT_EQ(small["bytes"], 3);
  EXPECT_EQ(small["sha256"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(small["modified"].get<std::string>().size(), 20u);
  const auto large = file_record(dir + "/f", 3);  // not under the limit: size and time only
  EXPECT_FALSE(large.contains("sha256"));
  EXPECT_EQ(large["bytes"], 3);
  std::filesystem::remove_all(dir);
}

TEST(RunRecord, ModelFilesAreEveryFileTheComponentsRead) {
  const auto files = model_files(resolve_model(test::tiny_model_dir()));
  std::set<std::string> names;
  for (const auto& [component, path] : files) {
    EXPECT_TRUE(std::filesystem::is_regular_file(path)) << path;
    names.insert(component + "/" + std::filesystem::path(path).filename().string());
  }
  for (const char* expected : {"unet/config.json", "text_encoder/config.json", "vae/config.json", "tokenizer/vocab.json",
                               "tokenizer/merges.txt", "scheduler/scheduler_config.json"}) {
    EXPECT_TRUE(names.count(expected)) << expected;
  }
  int weights = 0;
  for (const auto& n : names) weights += n.find(".safetensors") != std::string::npos;
  EXPECT_EQ(weights, 3);
  const auto record = model_files_record(test::tiny_model_dir(), "");
  EXPECT_NE(record["method"].get<std::string>().find("sha256 of each file under 64 MiB"), std::string::npos);
  EXPECT_EQ(record["files"].size(), files.size());
  for (const auto& f : record["files"]) EXPECT_TRUE(f.contains("sha256")) << f.dump();  // the tiny model is small
}

}  // namespace
}  // namespace vi::core
