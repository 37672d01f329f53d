// Schedulers against the reference's goldens (diffusers 0.29.2, fp32): timesteps exactly, sigmas,
// alphas_cumprod and every step output within 1e-5 relative (the README's bound for unit data:
// reruns with another thread count moved them by <= ~1e-6).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "common/test_util.h"
#include "core/check.h"
#include "core/json_config.h"
#include "schedulers/ddim_scheduler.h"
#include "schedulers/dpm_solver_multistep_scheduler.h"
#include "schedulers/scheduler.h"
#include "testing/test_scheduler.h"

namespace vi::schedulers {
namespace {

constexpr double kTolerance = 1e-5;

core::JsonConfig tiny_config() {
  return core::JsonConfig::load(test::tiny_model_dir() + "/scheduler/scheduler_config.json");
}

std::vector<int64_t> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

at::Tensor to_tensor(const std::vector<float>& v) {
  return at::tensor(at::ArrayRef<float>(v), at::TensorOptions().dtype(at::kFloat));
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (auto x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

// prev_samples[i] = step(model_outputs[i], timesteps[i], prev_samples[i-1] or sample0), the
// multistep state carried along; each step is fed the reference's input sample.
void check_run(const std::string& run, Scheduler& sched, int64_t steps) {
  const std::string file = "scheduler_" + run + ".safetensors";
  sched.set_timesteps(steps);
  EXPECT_EQ(sched.timesteps(), to_vector(test::golden(file, "timesteps"))) << run;
  const double ac_err = test::rel_error(to_tensor(sched.alphas_cumprod()), test::golden(file, "alphas_cumprod"));
  EXPECT_LE(ac_err, kTolerance) << run;
  double sigma_err = 0;
  if (!sched.sigmas().empty()) {
    sigma_err = test::rel_error(to_tensor(sched.sigmas()), test::golden(file, "sigmas"));
    EXPECT_LE(sigma_err, kTolerance) << run;
  }
  const at::Tensor outputs = test::golden(file, "model_outputs");  // [steps, 8, 4, 8, 8]
  const at::Tensor prevs = test::golden(file, "prev_samples");
  at::Tensor sample = test::golden(file, "sample0");
  double worst = 0;
  for (int64_t i = 0; i < steps; ++i) {
    const at::Tensor out = sched.step(outputs[i], sched.timesteps()[i], sample);
    const double err = test::rel_error(out, prevs[i]);
    worst = std::max(worst, err);
    EXPECT_LE(err, kTolerance) << run << " step " << i << " (t = " << sched.timesteps()[i] << ")";
    sample = prevs[i];
  }
  std::printf("%-16s timesteps exact, alphas_cumprod rel %.2e, sigmas rel %.2e, worst step rel %.2e (tolerance %.0e)\n",
              run.c_str(), ac_err, sigma_err, worst, kTolerance);
}

TEST(Schedulers, DDIMMatchesGolden) {
  for (int64_t steps : {10, 30}) {
    auto sched = make_scheduler("ddim", tiny_config());
    check_run("ddim_" + std::to_string(steps), *sched, steps);
  }
  auto sched = make_scheduler("ddim", tiny_config());
  sched->set_timesteps(30);
  EXPECT_EQ(sched->timesteps().front(), 958);
  EXPECT_EQ(sched->timesteps()[1], 925);
  EXPECT_EQ(sched->timesteps().back(), 1);
  EXPECT_FALSE(sched->is_stochastic());
}

TEST(Schedulers, DPMSolverPlusPlusKarrasMatchesGolden) {
  SchedulerOverrides karras;
  karras.use_karras_sigmas = true;
  for (int64_t steps : {10, 30}) {
    auto sched = make_scheduler("dpmsolver++", tiny_config(), karras);
    check_run("dpmpp_karras_" + std::to_string(steps), *sched, steps);
  }
}

TEST(Schedulers, OfficialSdeScheduleMatchesGolden) {
  for (int64_t steps : {10, 30}) {
    const std::string file = "scheduler_official_sde_" + std::to_string(steps) + ".safetensors";
    auto sched = make_scheduler(kDefaultScheduler, tiny_config());
    EXPECT_EQ(sched->name(), "sde-dpmsolver++");
    EXPECT_TRUE(sched->is_stochastic());
    EXPECT_EQ(sched->init_noise_sigma(), 1.0);
    sched->set_timesteps(steps);
    EXPECT_EQ(sched->timesteps(), to_vector(test::golden(file, "timesteps")));
    const double sigma_err = test::rel_error(to_tensor(sched->sigmas()), test::golden(file, "sigmas"));
    const double ac_err = test::rel_error(to_tensor(sched->alphas_cumprod()), test::golden(file, "alphas_cumprod"));
    EXPECT_LE(sigma_err, kTolerance);
    EXPECT_LE(ac_err, kTolerance);
    std::printf("official_sde_%-3lld timesteps exact, sigmas rel %.2e, alphas_cumprod rel %.2e (tolerance %.0e)\n",
                static_cast<long long>(steps), sigma_err, ac_err, kTolerance);
  }
  // ALGORITHM.md §5: 30 steps give 999, 966, 932, 899, 866, 832, 799, ..., 67, 33.
  auto sched = make_scheduler(kDefaultScheduler, tiny_config());
  sched->set_timesteps(30);
  const auto& ts = sched->timesteps();
  ASSERT_EQ(ts.size(), 30u);
  EXPECT_EQ(std::vector<int64_t>(ts.begin(), ts.begin() + 7), (std::vector<int64_t>{999, 966, 932, 899, 866, 832, 799}))
      << join(ts);
  EXPECT_EQ(ts[28], 67);
  EXPECT_EQ(ts[29], 33);
}

// vi_official_sde_ws2: the first step of the reference's own sampler, replayed with its stored
// noise, and with noise drawn from a generator seeded like the reference's (seed 123 + rank).
TEST(Schedulers, SdeFirstStepReplaysReference) {
  for (int rank = 0; rank < 2; ++rank) {
    const std::string file = "vi_official_sde_ws2/rank" + std::to_string(rank) + ".safetensors";
    const at::Tensor init = test::golden(file, "init_latents");  // [1, 4, F, h, w]
    const at::Tensor eps = test::golden(file, "step0.noise_pred_cfg");  // [F, 4, h, w]
    const at::Tensor noise = test::golden(file, "sde_noise_per_step");  // [steps, F, 4, h, w]
    const at::Tensor expected = test::golden(file, "latents_per_step")[0];
    const auto timesteps = to_vector(test::golden(file, "timesteps"));
    // The pipeline steps on frames folded into the batch: [B*F, C, h, w].
    const at::Tensor latents = init.permute({0, 2, 1, 3, 4}).reshape({-1, init.size(1), init.size(3), init.size(4)});

    auto sched = make_scheduler(kDefaultScheduler, tiny_config());
    sched->set_timesteps(static_cast<int64_t>(timesteps.size()));
    ASSERT_EQ(sched->timesteps(), timesteps);
    const at::Tensor out = sched->step(eps, timesteps[0], latents, nullptr, noise[0]);
    const double err = test::rel_error(out, expected);
    EXPECT_LE(err, kTolerance);

    // The same from the generator: init latents first, then the step's noise.
    at::Generator gen = at::detail::createCPUGenerator(123 + rank);
    const at::Tensor init_drawn = at::randn(init.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
    const double init_err = test::max_abs_error(init_drawn, init);
    auto sched2 = make_scheduler(kDefaultScheduler, tiny_config());
    sched2->set_timesteps(static_cast<int64_t>(timesteps.size()));
    const at::Tensor out_gen = sched2->step(eps, timesteps[0], latents, &gen);
    const double gen_err = test::rel_error(out_gen, expected);
    EXPECT_EQ(init_err, 0.0);
    EXPECT_LE(gen_err, kTolerance);
    std::printf("sde step 0 rank %d: rel %.2e with the stored noise, rel %.2e with generator noise "
                "(init latents max abs diff %.1e) (tolerance %.0e)\n", rank, err, gen_err, init_err, kTolerance);
  }
}

TEST(Schedulers, DDIMWithEtaAddsScaledNoise) {
  SchedulerOverrides o;
  o.eta = 0.7;
  auto sched = make_scheduler("ddim", tiny_config(), o);
  EXPECT_TRUE(sched->is_stochastic());
  sched->set_timesteps(10);
  const int64_t t = sched->timesteps()[2], prev_t = t - 100;
  at::Generator g1 = at::detail::createCPUGenerator(7);
  const at::Tensor x = at::randn({2, 4, 3, 3}, g1), eps = at::randn({2, 4, 3, 3}, g1);
  // Generator path == noise path with the same draw.
  at::Generator g2 = at::detail::createCPUGenerator(99), g3 = at::detail::createCPUGenerator(99);
  const at::Tensor noise = at::randn({2, 4, 3, 3}, g3);
  const at::Tensor with_gen = sched->step(eps, t, x, &g2);
  const at::Tensor with_noise = sched->step(eps, t, x, nullptr, noise);
  EXPECT_EQ(test::max_abs_error(with_gen, with_noise), 0.0);
  // Formulas (12) and (16) of the DDIM paper in double precision.
  const auto& ac = sched->alphas_cumprod();
  const double a = ac[t], a_prev = ac[prev_t];
  const double var = (1 - a_prev) / (1 - a) * (1 - a / a_prev);
  const double std_dev = 0.7 * std::sqrt(var);
  const at::Tensor xd = x.to(at::kDouble), ed = eps.to(at::kDouble);
  const at::Tensor x0 = (xd - std::sqrt(1 - a) * ed) / std::sqrt(a);
  const at::Tensor expected = std::sqrt(a_prev) * x0 + std::sqrt(1 - a_prev - std_dev * std_dev) * ed +
                              std_dev * noise.to(at::kDouble);
  const double err = test::rel_error(with_noise, expected);
  EXPECT_LE(err, kTolerance);
  EXPECT_GT(test::max_abs_error(with_noise, sched->step(eps, t, x, nullptr, at::zeros_like(noise))), 1e-3);
  std::printf("ddim eta 0.7: rel %.2e against the closed form (tolerance %.0e)\n", err, kTolerance);
}

TEST(Schedulers, SpacingsAndOffsets) {
  const auto config = tiny_config();
  auto timesteps = [&](const std::string& name, const std::string& spacing, int64_t n) {
    SchedulerOverrides o;
    o.timestep_spacing = spacing;
    auto s = make_scheduler(name, config, o);
    s->set_timesteps(n);
    return s->timesteps();
  };
  // numpy: trailing = round(arange(1000, 0, -100)) - 1; leading = arange(n+1)*(1000 // 11) + steps_offset.
  const std::vector<int64_t> trailing = {999, 899, 799, 699, 599, 499, 399, 299, 199, 99};
  EXPECT_EQ(timesteps("ddim", "trailing", 10), trailing);
  EXPECT_EQ(timesteps("dpmsolver++", "trailing", 10), trailing);
  EXPECT_EQ(timesteps("dpmsolver++", "leading", 10),
            (std::vector<int64_t>{901, 811, 721, 631, 541, 451, 361, 271, 181, 91}));
  EXPECT_EQ(timesteps("ddim", "linspace", 10),
            (std::vector<int64_t>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
  EXPECT_EQ(timesteps("ddim", "leading", 10), (std::vector<int64_t>{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
  // Order 1 and order 2 with a deterministic sampler differ after the first step only.
  SchedulerOverrides first;
  first.solver_order = 1;
  auto o1 = make_scheduler("dpmsolver++", config, first), o2 = make_scheduler("dpmsolver++", config);
  o1->set_timesteps(5);
  o2->set_timesteps(5);
  at::Generator g = at::detail::createCPUGenerator(3);
  at::Tensor x = at::randn({1, 4, 2, 2}, g);
  double diff0 = 0, diff1 = 0;
  for (int i = 0; i < 2; ++i) {
    const at::Tensor eps = at::randn({1, 4, 2, 2}, g);
    const at::Tensor a = o1->step(eps, o1->timesteps()[i], x), b = o2->step(eps, o2->timesteps()[i], x);
    (i == 0 ? diff0 : diff1) = test::max_abs_error(a, b);
    x = b;
  }
  EXPECT_EQ(diff0, 0.0);
  EXPECT_GT(diff1, 1e-4);
}

TEST(Schedulers, StateRoundTripResumesExactly) {
  SchedulerOverrides karras;
  karras.use_karras_sigmas = true;
  const std::string file = "scheduler_dpmpp_karras_30.safetensors";
  const at::Tensor outputs = test::golden(file, "model_outputs");
  auto run = [&](Scheduler& s, int64_t from, int64_t to, at::Tensor x) {
    for (int64_t i = from; i < to; ++i) x = s.step(outputs[i], s.timesteps()[i], x);
    return x;
  };
  auto full = make_scheduler("dpmsolver++", tiny_config(), karras);
  full->set_timesteps(30);
  const at::Tensor x0 = test::golden(file, "sample0");
  const at::Tensor straight = run(*full, 0, 30, x0);

  auto first = make_scheduler("dpmsolver++", tiny_config(), karras);
  first->set_timesteps(30);
  const at::Tensor half = run(*first, 0, 13, x0);
  const SchedulerState state = first->state();
  EXPECT_EQ(state.step_index, 13);
  EXPECT_EQ(state.lower_order_nums, 2);
  ASSERT_EQ(state.model_outputs.size(), 2u);
  auto resumed = make_scheduler("dpmsolver++", tiny_config(), karras);
  resumed->load_state(state);
  const at::Tensor rest = run(*resumed, 13, 30, half);
  EXPECT_EQ(test::max_abs_error(rest, straight), 0.0);
}

TEST(Schedulers, FactoryAndConfigErrors) {
  const std::string dir = test::make_temp_dir("scheduler");
  testing::write_scheduler_config(dir);
  const auto written = nlohmann::json::parse(test::read_file(dir + "/scheduler_config.json"));
  const auto tiny = nlohmann::json::parse(test::read_file(test::tiny_model_dir() + "/scheduler/scheduler_config.json"));
  EXPECT_EQ(written, tiny);
  EXPECT_EQ(make_scheduler("", tiny_config())->name(), "ddim");  // the class the file names
  EXPECT_EQ(scheduler_names().size(), 3u);

  auto expect_error = [&](const std::string& name, const std::string& json, const std::string& needle) {
    try {
      make_scheduler(name, core::JsonConfig(nlohmann::json::parse(json), "cfg.json"));
      ADD_FAILURE() << "no error for " << json;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("euler", "{}", "euler");
  expect_error("ddim", R"({"thresholding": true})", "thresholding");
  expect_error("dpmsolver++", R"({"solver_order": 3})", "solver_order");
  expect_error("dpmsolver++", R"({"solver_type": "heun"})", "solver_type");
  expect_error("ddim", R"({"beta_schedule": "cubic"})", "beta_schedule");
  expect_error("sde-dpmsolver++", R"({"timestep_spacing": "sideways"})", "timestep_spacing");
  expect_error("ddim", R"({"num_train_timesteps": "many"})", "num_train_timesteps");

  auto ddim = make_scheduler("ddim", tiny_config());
  EXPECT_THROW(ddim->step(at::zeros({1}), 1, at::zeros({1})), Error);  // before set_timesteps
  EXPECT_THROW(ddim->set_timesteps(1001), Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vi::schedulers
