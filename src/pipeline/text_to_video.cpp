#include "pipeline/text_to_video.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"
#include "parallel/temporal_strategy.h"
#include "pipeline/prompt_travel.h"
#include "pipeline/settings.h"
#include "schedulers/registry.h"

namespace vi::pipeline {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// t with zero frames appended along `dim` up to `frames` (a shorter clip in its slot).
at::Tensor pad_to_slot(const at::Tensor& t, int64_t dim, int64_t frames) {
  if (t.size(dim) == frames) return t;
  std::vector<int64_t> shape = t.sizes().vec();
  shape[static_cast<size_t>(dim)] = frames - t.size(dim);
  return at::cat({t, at::zeros(shape, t.options())}, dim);
}

// Rows [begin, begin + rows) of every tensor of a scheduler record: one clip's share.
schedulers::SchedulerRecord clip_rows(const schedulers::SchedulerRecord& all, int64_t begin, int64_t rows) {
  schedulers::SchedulerRecord r{all.scheduler, all.counters, {}};
  for (const auto& [name, t] : all.tensors) r.tensors[name] = t.narrow(0, begin, rows);
  return r;
}

// The local clips' records as one, rows in clip order (as the loop lays them out).
schedulers::SchedulerRecord join_clip_records(const std::vector<schedulers::SchedulerRecord>& clips,
                                              const std::string& where, c10::Device device) {
  schedulers::SchedulerRecord r{clips.at(0).scheduler, clips[0].counters, {}};
  for (const auto& [name, first] : clips[0].tensors) {
    std::vector<at::Tensor> rows;
    for (const auto& c : clips) {
      auto it = c.tensors.find(name);
      VI_CHECK(it != c.tensors.end(), "checkpoint {}: the clips' scheduler states differ ('{}')", where, name);
      rows.push_back(it->second);
    }
    r.tensors[name] = at::cat(rows, 0).to(device);
  }
  for (const auto& c : clips) {
    VI_CHECK(c.scheduler == r.scheduler && c.counters == r.counters && c.tensors.size() == r.tensors.size(),
             "checkpoint {}: the clips' scheduler states differ", where);
  }
  return r;
}

}  // namespace

nlohmann::json result_settings(const GenerationConfig& config, c10::ScalarType dtype) {
  nlohmann::json j = settings_to_json(config, Record::kResult);
  j["dtype"] = c10::toString(dtype);  // what "auto" became
  return j;
}

c10::Device resolve_device(const std::string& flag, int local_rank) {
  if (flag == "cpu") return c10::kCPU;
  const bool cuda = at::hasCUDA() && at::getNumGPUs() > 0;
  if (flag == "cuda") {
    VI_CHECK(cuda, "--device cuda: no CUDA device is visible (or this LibTorch has no CUDA)");
  }
  if (cuda) return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank % at::getNumGPUs()));
  return c10::kCPU;
}

void set_cudnn_benchmark(c10::Device device, bool on) {
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(on);
}

c10::ScalarType resolve_dtype(const std::string& flag, c10::Device device) {
  if (flag == "fp32") return at::kFloat;
  if (flag == "fp16") {
    if (device.is_cpu()) {
      // Reference configs say torch.float16 (written for GPUs); on the CPU fp16 gains nothing over
      // fp32 (no native half arithmetic on most CPUs) and costs precision, so they run in fp32.
      spdlog::warn("--dtype fp16 on the CPU: running in fp32 (fp16 is for GPUs; bf16 is available on the CPU)");
      return at::kFloat;
    }
    return at::kHalf;
  }
  if (flag == "bf16") return at::kBFloat16;
  return device.is_cuda() ? at::kHalf : at::kFloat;
}

TextToVideoPipeline::TextToVideoPipeline(const GenerationConfig& config, parallel::Communicator& comm,
                                         c10::Device device, c10::ScalarType dtype, PipelineOptions options)
    : config_(config), comm_(comm), device_(device), dtype_(dtype), options_(std::move(options)) {
  set_cudnn_benchmark(device_, true);
  layout_ = parallel::ClipLayout::make(clip_frame_counts(config_), comm_, config_.dual_scope.loop);
  context_ = parallel::make_temporal_context(config_.dual_scope, layout_, comm_);
  for (int64_t j = 0; j < layout_.local_clips; ++j) {
    generators_.push_back(at::make_generator<at::CPUGeneratorImpl>(
        static_cast<uint64_t>(config_.seed + layout_.first_clip + j)));
  }
}

// 1. Load every component.
void TextToVideoPipeline::load() {
  auto t0 = Clock::now();
  paths_ = core::resolve_model(config_.model_dir, config_.unet_dir);
  tokenizer_ = std::make_unique<ClipTokenizer>(ClipTokenizer::load(paths_.tokenizer));
  text_encoder_ = models::load_clip_text(paths_.text_encoder, dtype_, device_);
  unet_ = models::load_unet3d(paths_.unet, dtype_, device_);
  unet_->set_frame_chunk(config_.frame_chunk);
  unet_->set_channels_last(config_.channels_last);
  vae_ = models::load_vae(paths_.vae, dtype_, device_);
  // The sampler from the model's own scheduler config (the reference: DPM-Solver from its DDIM one).
  const auto& entry = schedulers::scheduler_for_flag(config_.scheduler);
  schedulers::SchedulerOverrides overrides;
  if (entry.karras) overrides.use_karras_sigmas = config_.karras;
  scheduler_ = schedulers::make_scheduler(entry.name,
                                          core::JsonConfig::load(paths_.scheduler + "/scheduler_config.json"), overrides);
  scheduler_->set_timesteps(config_.steps);
  if (!config_.checkpoint_dir.empty()) {
    checkpoints_ = std::make_unique<CheckpointDir>(config_.checkpoint_dir, result_settings(config_, dtype_));
  }
  VI_CHECK(unet_->config().cross_attention_dim == text_encoder_->config().hidden_size,
           "{}: UNet cross_attention_dim {} does not match the text encoder's hidden size {} ({})", paths_.unet,
           unet_->config().cross_attention_dim, text_encoder_->config().hidden_size, paths_.text_encoder);
  times_.load = seconds_since(t0);
}

// 2. Text states [uncond x Cl | cond per clip].
at::Tensor TextToVideoPipeline::encode_text() {
  c10::InferenceMode guard;
  auto t0 = Clock::now();
  if (config_.prompt_blend >= 0) {
    at::Tensor states = encode_frame_text();
    times_.text = seconds_since(t0);
    return states;
  }
  const auto prompts = clip_prompts(config_);
  std::vector<std::string> texts(static_cast<size_t>(layout_.local_clips), config_.negative_prompt);
  for (int64_t j = 0; j < layout_.local_clips; ++j) texts.push_back(prompts[static_cast<size_t>(layout_.first_clip + j)]);
  std::vector<at::Tensor> ids;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& text = texts[i];
    auto enc = tokenizer_->encode(text);
    // Warn once per text: the negative prompt repeats for every local clip.
    if (enc.truncated && (i == 0 || i >= static_cast<size_t>(layout_.local_clips))) {
      spdlog::warn("prompt truncated to {} tokens: '{}'", tokenizer_->max_length(), text);
    }
    ids.push_back(at::tensor(enc.ids, at::TensorOptions().dtype(at::kLong)));
  }
  at::Tensor states = text_encoder_->forward(at::stack(ids).to(device_));  // [2Cl, 77, D]
  times_.text = seconds_since(t0);
  return states;
}

// 2 with prompt travel: each distinct prompt encoded once, blended per frame slot.
at::Tensor TextToVideoPipeline::encode_frame_text() {
  const PromptTravel travel = prompt_travel(config_);
  std::vector<std::string> texts{config_.negative_prompt};
  texts.insert(texts.end(), travel.prompts.begin(), travel.prompts.end());
  std::vector<at::Tensor> ids;
  for (const std::string& text : texts) {
    auto enc = tokenizer_->encode(text);
    if (enc.truncated) spdlog::warn("prompt truncated to {} tokens: '{}'", tokenizer_->max_length(), text);
    ids.push_back(at::tensor(enc.ids, at::TensorOptions().dtype(at::kLong)));
  }
  at::Tensor states = text_encoder_->forward(at::stack(ids).to(device_));  // [1 + P, 77, D]
  return frame_text_states(slot_weights(travel, layout_), states.narrow(0, 1, states.size(0) - 1),
                           states.narrow(0, 0, 1));  // [2 Cl F, 77, D]
}

// 3. Initial noise per clip.
at::Tensor TextToVideoPipeline::initial_latents() {
  const int64_t F = layout_.frames, h = config_.height / 8, w = config_.width / 8;
  const int64_t channels = unet_->config().in_channels;
  std::vector<at::Tensor> clips;
  if (!config_.init_latents.empty()) {
    core::SafetensorsFile file(config_.init_latents);
    VI_CHECK(file.find("latents") != nullptr, "--init-latents {}: no tensor named 'latents'", config_.init_latents);
    at::Tensor all = file.tensor("latents").to(at::kFloat);
    const std::vector<int64_t> expected = {1, channels, config_.frames, h, w};
    VI_CHECK(all.sizes().vec() == expected, "--init-latents {}: 'latents' has shape {}, expected {}",
             config_.init_latents, core::shape_str(all.sizes().vec()), core::shape_str(expected));
    const auto firsts = clip_first_frames(config_);
    for (int64_t j = 0; j < layout_.local_clips; ++j) {
      const int64_t first = firsts[static_cast<size_t>(layout_.first_clip + j)];
      clips.push_back(pad_to_slot(all.narrow(2, first, layout_.local_frames(j)).clone(), 2, F));
    }
  } else {
    for (int64_t j = 0; j < layout_.local_clips; ++j) {
      // Ref: diffusers randn_tensor([1, 4, F, h, w], generator) on the CPU generator.
      at::Tensor noise = at::randn({1, channels, layout_.local_frames(j), h, w}, generators_[static_cast<size_t>(j)]);
      clips.push_back(pad_to_slot(noise, 2, F));
    }
  }
  return at::cat(clips, 0).mul_(scheduler_->init_noise_sigma());  // [Cl, 4, F, h, w]
}

// 3b. Resume: the newest checkpoint all ranks have.
int64_t TextToVideoPipeline::resume(at::Tensor& latents) {
  if (!config_.resume) return 0;
  VI_CHECK(checkpoints_ != nullptr, "--resume needs --checkpoint-dir");
  std::vector<int64_t> clips;
  for (int64_t j = 0; j < layout_.local_clips; ++j) clips.push_back(layout_.first_clip + j);
  const auto newest = agree_newest_step(checkpoints_->complete_steps(clips), config_.steps, comm_);
  if (!newest) {
    spdlog::warn("--resume: no checkpoint in {} that every clip has: starting from the first step",
                 checkpoints_->path());
    return 0;
  }
  std::vector<at::Tensor> clip_latents;
  std::vector<schedulers::SchedulerRecord> records;
  for (int64_t j = 0; j < layout_.local_clips; ++j) {
    ClipCheckpoint c = checkpoints_->read(*newest, clips[static_cast<size_t>(j)]);
    const std::string file = checkpoints_->clip_file(*newest, c.clip);
    VI_CHECK(c.latents.sizes().vec() == latents.narrow(0, j, 1).sizes().vec(),
             "checkpoint {}: latents of shape {}, this run needs {}", file, core::shape_str(c.latents.sizes().vec()),
             core::shape_str(latents.narrow(0, j, 1).sizes().vec()));
    generators_[static_cast<size_t>(j)].set_state(c.generator_state);
    clip_latents.push_back(c.latents);
    records.push_back(std::move(c.scheduler));
  }
  scheduler_->restore(join_clip_records(records, checkpoints_->step_dir(*newest), device_));
  latents = at::cat(clip_latents, 0);
  times_.resumed_from = *newest;
  spdlog::info("resumed from {} ({} of {} steps done)", checkpoints_->step_dir(*newest), *newest, config_.steps);
  return *newest;
}

// Every local clip's file after `steps_done` steps; then, once every rank has written its
// files (a barrier: until then the older step may be the newest one every clip has), every rank
// removes its own clips' older files (on node-local disks no other rank can).
void TextToVideoPipeline::write_checkpoint(int64_t steps_done, const at::Tensor& latents) {
  auto t0 = Clock::now();
  const int64_t F = layout_.frames;
  const schedulers::SchedulerRecord record = scheduler_->record();
  std::vector<int64_t> clips;
  for (int64_t j = 0; j < layout_.local_clips; ++j) {
    clips.push_back(layout_.first_clip + j);
    ClipCheckpoint c;
    c.clip = layout_.first_clip + j;
    c.steps_done = steps_done;
    c.latents = latents.narrow(0, j, 1);
    c.generator_state = generators_[static_cast<size_t>(j)].get_state();
    c.scheduler = clip_rows(record, j * F, F);
    checkpoints_->write(c);
  }
  comm_.barrier();
  checkpoints_->remove_older_than(steps_done, clips);
  times_.checkpoint += seconds_since(t0);
}

// 4. The denoising loop.
at::Tensor TextToVideoPipeline::denoise(at::Tensor latents, const at::Tensor& text_states, int64_t first_step) {
  c10::InferenceMode guard;
  const int64_t Cl = layout_.local_clips, F = layout_.frames;
  const auto& steps = scheduler_->timesteps();
  const uint64_t bytes_before = comm_.bytes_sent();
  auto t_all = Clock::now();
  // Latents, the scheduler's arithmetic and its history stay on the device in fp32 (no host
  // round trip per step); only the UNet runs in the model dtype.
  latents = latents.to(device_, at::kFloat);
  VI_CHECK(first_step >= 0 && first_step <= static_cast<int64_t>(steps.size()), "denoise: first step {} of {}",
           first_step, steps.size());
  // The scheduler steps on [Cl * F, C, h, w], as the reference pipeline reshapes.
  auto frames_first = [&](const at::Tensor& x) {
    return x.permute({0, 2, 1, 3, 4}).reshape({Cl * F, x.size(1), x.size(3), x.size(4)});
  };
  for (size_t i = static_cast<size_t>(first_step); i < steps.size(); ++i) {
    auto t0 = Clock::now();
    const int64_t t = steps[i];
    const uint64_t call_start = comm_.bytes_sent();
    at::Tensor guided = guided_prediction(latents, t, text_states);
    // Per call of the whole CFG batch: the two serial calls together send what one batched call does.
    if (i == static_cast<size_t>(first_step)) times_.bytes_per_unet_call = comm_.bytes_sent() - call_start;
    if (options_.on_x0 && config_.preview_every > 0 && (i + 1) % static_cast<size_t>(config_.preview_every) == 0) {
      options_.on_x0(static_cast<int64_t>(i), scheduler_->predicted_original_sample(guided, t, latents));
    }
    at::Tensor noise = scheduler_->is_stochastic() ? step_noise(static_cast<int64_t>(i), guided) : at::Tensor();
    at::Tensor prev = scheduler_->step(frames_first(guided), t, frames_first(latents), nullptr, noise);
    latents = prev.reshape({Cl, F, latents.size(1), latents.size(3), latents.size(4)}).permute({0, 2, 1, 3, 4}).contiguous();
    // Shorter clips' padding frames stay zero (the scheduler moved them).
    for (int64_t j = 0; j < Cl && !layout_.uniform(); ++j) {
      latents[j].narrow(1, layout_.local_frames(j), F - layout_.local_frames(j)).zero_();
    }
    if (options_.on_latents) options_.on_latents(static_cast<int64_t>(i), latents);
    comm_.step_boundary();
    const auto done = static_cast<int64_t>(i + 1);
    if (checkpoints_ && (done % config_.checkpoint_every == 0 || done == static_cast<int64_t>(steps.size()))) {
      write_checkpoint(done, latents);
    }
    if (options_.on_step) options_.on_step(static_cast<int64_t>(i), static_cast<int64_t>(steps.size()), seconds_since(t0));
  }
  times_.denoise = seconds_since(t_all);
  times_.bytes_total = comm_.bytes_sent() - bytes_before;
  return latents;
}

// uncond + guidance * (cond - uncond), fp32 [Cl, C, F, h, w].
at::Tensor TextToVideoPipeline::guided_prediction(const at::Tensor& latents, int64_t t, const at::Tensor& text_states) {
  const int64_t Cl = layout_.local_clips;
  const int64_t branch_rows = text_states.size(0) / 2;  // Cl, or Cl * F with per-frame states
  // [Cl, C, F, h, w] -> the CFG batch [uncond clips | cond clips].
  at::Tensor model_in = scheduler_->scale_model_input(latents, t).to(device_, dtype_);
  at::Tensor uncond, cond;
  if (config_.cfg_serial) {
    // Two calls of Cl clips each: half the activation memory, the same exchanges per branch.
    uncond = unet_->forward(model_in, static_cast<double>(t), text_states.narrow(0, 0, branch_rows), config_.fps,
                            *context_);
    cond = unet_->forward(model_in, static_cast<double>(t), text_states.narrow(0, branch_rows, branch_rows),
                          config_.fps, *context_);
    uncond = uncond.to(at::kFloat);
    cond = cond.to(at::kFloat);
  } else {
    at::Tensor eps = unet_->forward(at::cat({model_in, model_in}, 0), static_cast<double>(t), text_states,
                                    config_.fps, *context_)
                         .to(at::kFloat);
    uncond = eps.narrow(0, 0, Cl);
    cond = eps.narrow(0, Cl, Cl);
  }
  return uncond + config_.guidance * (cond - uncond);
}

// The stochastic sampler's noise of step i, [Cl * F, C, h, w], each clip's from its own generator.
at::Tensor TextToVideoPipeline::step_noise(int64_t i, const at::Tensor& guided) {
  std::vector<at::Tensor> parts;
  for (int64_t j = 0; j < layout_.local_clips; ++j) {
    if (options_.noise_source) {
      parts.push_back(pad_to_slot(options_.noise_source(i, layout_.first_clip + j).to(at::kFloat), 0, layout_.frames));
    } else {
      // Ref: DPMSolverMultistepScheduler.step draws randn(model_output.shape = [F, C, h, w]).
      at::Tensor noise = at::randn({layout_.local_frames(j), guided.size(1), guided.size(3), guided.size(4)},
                                   generators_[static_cast<size_t>(j)]);
      parts.push_back(pad_to_slot(noise, 0, layout_.frames));
    }
  }
  return at::cat(parts, 0).to(guided.device());
}

// 5. VAE decode of one local clip.
at::Tensor TextToVideoPipeline::decode_clip(const at::Tensor& latents, int64_t local_clip) {
  c10::InferenceMode guard;
  auto t0 = Clock::now();
  at::Tensor z = latents.narrow(0, local_clip, 1).narrow(2, 0, layout_.local_frames(local_clip)).to(device_, dtype_);  // [1, 4, F, h, w]
  at::Tensor images = vae_->decode_latents(z, config_.vae_chunk);           // [1, 3, F, H, W]
  at::Tensor frames = models::to_uint8_frames(images);                      // [F, H, W, 3]
  times_.decode += seconds_since(t0);
  return frames;
}

at::Tensor TextToVideoPipeline::decode_images(const at::Tensor& latents) {
  c10::InferenceMode guard;
  at::Tensor z = latents.to(device_, dtype_).permute({1, 0, 2, 3}).unsqueeze(0);  // [1, 4, N, h, w]
  return vae_->decode_latents(z, config_.vae_chunk).squeeze(0).permute({1, 0, 2, 3}).to(at::kFloat);
}

}  // namespace vi::pipeline
