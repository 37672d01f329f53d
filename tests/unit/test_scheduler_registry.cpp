// The scheduler registry: every entry can be built and says the truth about itself, and a
// scheduler's state survives the record a checkpoint stores, split by clip and joined again.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <set>

#include "common/test_util.h"
#include "core/json_config.h"
#include "schedulers/registry.h"
#include "schedulers/scheduler.h"
#include "video_infinity/generation_config.h"

namespace vi::schedulers {
namespace {

core::JsonConfig model_config() {
  return core::JsonConfig::load(test::tiny_model_dir() + "/scheduler/scheduler_config.json");
}

TEST(SchedulerRegistry, EveryEntryBuildsWhatItDescribes) {
  std::set<std::string> flags, names;
  for (const auto& e : scheduler_registry()) {
    EXPECT_TRUE(flags.insert(e.flag).second) << e.flag;
    EXPECT_TRUE(names.insert(e.name).second) << e.name;
    auto s = make_scheduler(e.name, model_config());
    EXPECT_EQ(s->name(), e.name);
    EXPECT_EQ(s->is_stochastic(), e.stochastic) << e.flag;
    EXPECT_EQ(&scheduler_for_flag(e.flag), &e);
    // The class the entry names picks a scheduler of that class from a bare config.
    auto by_class = make_scheduler("", core::JsonConfig({{"_class_name", e.class_name}, {"algorithm_type", e.name}},
                                                        "cfg.json"));
    EXPECT_EQ(by_class->name(), e.name);
    SchedulerOverrides karras;
    karras.use_karras_sigmas = true;
    if (e.karras) {
      auto k = make_scheduler(e.name, model_config(), karras);
      k->set_timesteps(10);
      auto plain = make_scheduler(e.name, model_config());
      plain->set_timesteps(10);
      EXPECT_NE(k->timesteps(), plain->timesteps()) << e.flag << ": --karras changes nothing";
    }
  }
  EXPECT_EQ(scheduler_names().size(), scheduler_registry().size());
  // The default --scheduler is the reference's sampler, listed first.
  EXPECT_STREQ(scheduler_registry().front().name, kDefaultScheduler);
  EXPECT_EQ(scheduler_for_flag(GenerationConfig{}.scheduler).name, std::string(kDefaultScheduler));
  const std::string e = test::error_of([] { scheduler_for_flag("no-such-sampler"); });
  EXPECT_NE(e.find("unknown scheduler 'no-such-sampler' (expected "), std::string::npos) << e;
}

// Two "clips" of 3 rows each run 12 steps; after 5 the record is split by clip, joined back
// (as a checkpoint and a resume on another rank count do) and restored into a fresh scheduler:
// the remaining steps give bit-identical samples.
TEST(SchedulerRegistry, RecordSplitByClipAndJoinedResumesExactly) {
  for (const auto& e : scheduler_registry()) {
    at::manual_seed(0);
    const at::Tensor x0 = at::randn({6, 4, 2, 2});
    std::vector<at::Tensor> outputs;
    for (int i = 0; i < 12; ++i) outputs.push_back(at::randn({6, 4, 2, 2}));
    const at::Tensor noise = at::randn({12, 6, 4, 2, 2});
    auto run = [&](Scheduler& s, int from, int to, at::Tensor x) {
      for (int i = from; i < to; ++i) x = s.step(outputs[i], s.timesteps()[i], x, nullptr, noise[i]);
      return x;
    };
    auto straight = make_scheduler(e.name, model_config());
    straight->set_timesteps(12);
    const at::Tensor expected = run(*straight, 0, 12, x0);

    auto first = make_scheduler(e.name, model_config());
    first->set_timesteps(12);
    const at::Tensor half = run(*first, 0, 5, x0);
    const SchedulerRecord all = first->record();
    EXPECT_EQ(all.scheduler, e.name);
    SchedulerRecord joined{all.scheduler, all.counters, {}};
    for (const auto& [name, t] : all.tensors) {
      ASSERT_EQ(t.size(0), 6) << name << ": one row per sample";
      joined.tensors[name] = at::cat({t.narrow(0, 0, 3).clone(), t.narrow(0, 3, 3).clone()}, 0);
    }
    auto resumed = make_scheduler(e.name, model_config());
    resumed->restore(joined);
    EXPECT_EQ(test::max_abs_error(run(*resumed, 5, 12, half), expected), 0.0) << e.flag;

    SchedulerRecord foreign = joined;
    foreign.scheduler = "another";
    EXPECT_NE(test::error_of([&] { resumed->restore(foreign); }).find("scheduler state of 'another'"),
              std::string::npos);
    SchedulerRecord missing = joined;
    missing.counters.erase("step_index");
    EXPECT_NE(test::error_of([&] { resumed->restore(missing); }).find("'step_index' is missing"), std::string::npos);
  }
}

}  // namespace
}  // namespace vi::schedulers
