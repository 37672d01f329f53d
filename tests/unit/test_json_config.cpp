// Config values are read with their types checked; errors name the file, the key, the
// expected type and what was found; keys nobody read are reported.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "common/test_util.h"
#include "core/json_config.h"

using vi::core::JsonConfig;

namespace {

using vi::test::error_of;

TEST(JsonConfig, TypedAccess) {
  JsonConfig c(nlohmann::json::parse(R"({"a": 3, "b": 2.0, "c": "x", "d": [1, 2], "e": null, "f": true,
                                        "g": 0.5, "_class_name": "X", "unused": 1})"),
               "config.json");
  EXPECT_EQ(c.get<int>("a"), 3);
  EXPECT_EQ(c.get<int64_t>("b"), 2);  // 2.0 is an integer value
  EXPECT_DOUBLE_EQ(c.get<double>("a"), 3.0);
  EXPECT_EQ(c.get<std::string>("c"), "x");
  EXPECT_EQ(c.get<std::vector<int>>("d"), (std::vector<int>{1, 2}));
  EXPECT_EQ(c.get_or<int>("e", 7), 7);  // null means default
  EXPECT_EQ(c.get_or<int>("missing", 9), 9);
  EXPECT_TRUE(c.get<bool>("f"));
  EXPECT_FALSE(c.get_optional<double>("nope").has_value());
  EXPECT_EQ(c.unread_keys(), (std::vector<std::string>{"g", "unused"}));
  c.ignore({"g"});
  EXPECT_EQ(c.unread_keys(), (std::vector<std::string>{"unused"}));
}

TEST(JsonConfig, ErrorsNameFileKeyAndTypes) {
  JsonConfig c(nlohmann::json::parse(R"({"a": "three", "b": 2.5, "d": [1, "x"]})"), "unet/config.json");
  EXPECT_NE(error_of([&] { c.get<int>("a"); })
                .find("unet/config.json: key 'a': expected an integer, got string (\"three\")"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.get<int>("b"); }).find("key 'b': expected an integer, got number (2.5)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.get<std::vector<int>>("d"); }).find("key 'd[1]': expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.get<int>("zzz"); }).find("missing required key 'zzz'"), std::string::npos);
}

TEST(JsonConfig, LoadErrorsNameTheFile) {
  std::string dir = vi::test::make_temp_dir("json");
  vi::test::write_file(dir + "/bad.json", "{\"a\": 1,,}");
  vi::test::write_file(dir + "/list.json", "[1]");
  vi::test::write_file(dir + "/huge.json", "{\"a\": 3e333}");  // found by the fuzzer: out_of_range, not parse_error
  std::string e1 = error_of([&] { JsonConfig::load(dir + "/bad.json"); });
  EXPECT_NE(e1.find(dir + "/bad.json: invalid JSON"), std::string::npos) << e1;
  std::string e2 = error_of([&] { JsonConfig::load(dir + "/list.json"); });
  EXPECT_NE(e2.find("expected a JSON object"), std::string::npos) << e2;
  std::string e4 = error_of([&] { JsonConfig::load(dir + "/huge.json"); });
  EXPECT_NE(e4.find(dir + "/huge.json: invalid JSON"), std::string::npos) << e4;
  std::string e3 = error_of([&] { JsonConfig::load(dir + "/none.json"); });
  EXPECT_NE(e3.find("file not found"), std::string::npos) << e3;
  std::filesystem::remove_all(dir);
}

TEST(JsonConfig, PythonNonFiniteNumbers) {
  // Python's json writes NaN / Infinity / -Infinity bare; diffusers saves DPM-Solver configs
  // with "lambda_min_clipped": -Infinity.
  nlohmann::json j = vi::core::parse_python_json(
      R"({"a": -Infinity, "b": [NaN, Infinity,-Infinity], "c": "NaN", "d": "say \"Infinity\" -Infinity", "e": 1.5})");
  EXPECT_TRUE(std::isinf(j["a"].get<double>()) && j["a"].get<double>() < 0);
  EXPECT_TRUE(std::isnan(j["b"][0].get<double>()));
  EXPECT_TRUE(std::isinf(j["b"][1].get<double>()) && j["b"][1].get<double>() > 0);
  EXPECT_TRUE(std::isinf(j["b"][2].get<double>()) && j["b"][2].get<double>() < 0);
  EXPECT_EQ(j["c"], "NaN");  // strings stay strings
  EXPECT_EQ(j["d"], "say \"Infinity\" -Infinity");
  EXPECT_EQ(j["e"], 1.5);
  // Only whole tokens: these stay invalid JSON.
  for (const char* bad : {R"({"x": NaNa})", R"({"x": 1Infinity})", R"({"x": --Infinity})", R"({"x": infinity})"}) {
    EXPECT_THROW(vi::core::parse_python_json(bad), nlohmann::json::parse_error) << bad;
  }

  std::string dir = vi::test::make_temp_dir("json_inf");
  vi::test::write_file(dir + "/scheduler_config.json", R"({"lambda_min_clipped": -Infinity, "beta_end": 0.012})");
  JsonConfig c = JsonConfig::load(dir + "/scheduler_config.json");
  EXPECT_EQ(c.get<double>("lambda_min_clipped"), -std::numeric_limits<double>::infinity());
  EXPECT_DOUBLE_EQ(c.get<double>("beta_end"), 0.012);
  std::filesystem::remove_all(dir);
}

}  // namespace
