// `video-infinity [generate] --model DIR --prompt "..." --frames N`: the main job. The flags come
// from the settings table (pipeline/settings.h); the job is pipeline::generate.
#include <type_traits>

#include "cli/commands.h"
#include "pipeline/generate.h"
#include "pipeline/settings.h"
#include "testing/fault_injection.h"
#include "video_infinity/generation_config.h"

namespace vi::cli {

namespace {

// CLI11 parses into `flags`; after --config is applied to the defaults, each flag given on the
// command line overrides it.
struct Bindings {
  GenerationConfig flags;
  std::string config_file;
  std::vector<std::pair<const CLI::Option*, const pipeline::Setting*>> options;

  void bind(CLI::App* cmd, const pipeline::Setting& s) {
    static const GenerationConfig defaults;
    std::visit(
        [&](auto field) {
          using T = std::decay_t<decltype(field(flags))>;
          CLI::Option* option = nullptr;
          if constexpr (std::is_same_v<T, bool>) {
            option = s.inverted ? cmd->add_flag_callback(s.flags, [this, field] { field(flags) = false; }, s.help)
                                : cmd->add_flag(s.flags, field(flags), s.help);
          } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            option = cmd->add_option(s.flags, field(flags), s.help);
          } else if constexpr (std::is_arithmetic_v<T> || std::is_same_v<T, std::string>) {
            option = cmd->add_option(s.flags, field(flags), s.help)
                         ->default_val(field(const_cast<GenerationConfig&>(defaults)));
          }
          if (option != nullptr) options.emplace_back(option, &s);
        },
        s.field);
  }

  void apply(GenerationConfig& cfg) {
    for (const auto& [option, s] : options) {
      if (option->count() == 0) continue;
      std::visit([&, s = s](auto field) { field(cfg) = field(flags); }, s->field);
      if (auto* text = std::get_if<pipeline::FieldOf<std::string>>(&s->field)) {
        (*text)(cfg) = pipeline::canonical_choice(*s, (*text)(cfg));
      }
      if (s->also != nullptr) s->also(cfg);
    }
  }
};

int run(Bindings& b, const parallel::LaunchInfo& launch) {
  // Settings: defaults, then --config, then the flags given; checked before any work.
  GenerationConfig cfg;
  if (!b.config_file.empty()) apply_config_file(cfg, b.config_file);
  b.apply(cfg);
  resolve_config(cfg, launch.world_size);
  auto comm = pipeline::open_communicator(cfg, launch);
  const auto fault = testing::FaultInjection::from_environment(launch.rank);
  pipeline::GenerateHooks hooks;
  hooks.on_step = [&](int64_t i, int64_t, double) { fault.after_step(i + 1); };
  pipeline::FileSink sink(cfg);
  if (cfg.dry_run) {
    pipeline::dry_run(cfg, *comm, sink);
    return 0;
  }
  pipeline::generate(cfg, *comm, sink, hooks);
  return 0;
}

}  // namespace

Runner add_generate(CLI::App& app) {
  auto b = std::make_shared<Bindings>();
  auto* cmd = app.add_subcommand("generate", "Generate a video from a text prompt (the default subcommand)");
  // A flag given twice: the last one wins (scripts append overrides).
  cmd->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--config", b->config_file,
                  "JSON settings: the reference's examples/config.json format or our keys (flags override it)");
  for (const auto& s : pipeline::generation_settings()) {
    if (*s.flags != '\0') b->bind(cmd, s);
  }
  return [cmd, b](const parallel::LaunchInfo& launch) { return cmd->parsed() ? run(*b, launch) : -1; };
}

}  // namespace vi::cli
