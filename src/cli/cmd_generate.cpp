// `video-infinity [generate] --model DIR --prompt "..." --frames N`: the main job. The flags come
// from the settings table (pipeline/settings.h); the job is pipeline::generate.
#include <fmt/format.h>

#include <map>
#include <set>
#include <type_traits>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/interruption.h"
#include "core/check.h"
#include "core/run_record.h"
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
            // One value per flag, repeatable: `--prompt a cat` leaves "cat" to refuse_strays.
            option = cmd->add_option(s.flags, field(flags), s.help)
                         ->expected(1)
                         ->allow_extra_args(false)
                         ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
          } else if constexpr (std::is_arithmetic_v<T> || std::is_same_v<T, std::string>) {
            option = cmd->add_option(s.flags, field(flags), s.help)
                         ->default_val(field(const_cast<GenerationConfig&>(defaults)));
          }
          if (option != nullptr) options.emplace_back(option, &s);
        },
        s.field);
  }

  // The JSON keys of the settings given on the command line.
  std::set<std::string> given() const {
    std::set<std::string> keys;
    for (const auto& [option, s] : options) {
      if (option->count() > 0 && *s->key != '\0') keys.insert(s->key);
    }
    return keys;
  }

  // Words no option took (a hidden positional collects them): `--prompt a cat` leaves "cat". The
  // error names the option they followed and shows the quoting that was meant.
  std::vector<std::string> strays;
  const CLI::Option* stray_option = nullptr;

  void refuse_strays(const CLI::App& cmd) const {
    if (strays.empty()) return;
    std::map<const CLI::Option*, size_t> seen;  // values of each option so far
    const CLI::Option* after = nullptr;          // the option whose value came last
    std::string value;
    std::vector<std::string> words;
    size_t next = 0;
    for (const CLI::Option* o : cmd.parse_order()) {
      if (o == stray_option) {
        if (next < strays.size()) words.push_back(strays[next++]);
        continue;
      }
      if (!words.empty()) break;
      const size_t i = seen[o]++;
      const bool flag = o->get_type_size() == 0;
      after = flag ? nullptr : o;
      value = !flag && i < o->results().size() ? o->results()[i] : "";
    }
    std::string joined;
    for (const auto& w : words) joined += (joined.empty() ? "" : " ") + w;
    if (after == nullptr) {
      throw CLI::ExtrasError(fmt::format("unexpected argument{} '{}' (put a value with spaces in quotes)",
                                         words.size() == 1 ? "" : "s", joined),
                             CLI::ExitCodes::ExtrasError);
    }
    const std::string name = after->get_name();
    throw CLI::ExtrasError(fmt::format("'{}' after {} {}: {} takes one value; put a value with spaces in quotes: "
                                       "{} \"{} {}\"",
                                       joined, name, value, name, name, value, joined),
                           CLI::ExitCodes::ExtrasError);
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
  // Settings: defaults, then --config, then the flags given; checked before any work, the same
  // on every rank: an error is a usage error.
  GenerationConfig cfg;
  try {
    if (!b.config_file.empty()) {
      apply_config_file(cfg, b.config_file);
      drop_overridden(cfg, b.flags, b.given());
    }
    b.apply(cfg);
    cfg.quiet = cfg.quiet || invocation().quiet;
    resolve_config(cfg, launch.world_size);
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(e);
  }
  // -q and a config file's "quiet" mean the same: warnings and errors only.
  if (cfg.quiet && spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
  auto comm = pipeline::open_communicator(cfg, launch);
  const auto fault = testing::FaultInjection::from_environment(launch.rank);
  InterruptionReport interruption(cfg, launch, core::command_line());
  pipeline::GenerateHooks hooks;
  hooks.on_step = [&](int64_t i, int64_t n, double) {
    interruption.after_step(i, n);
    fault.after_step(i + 1);
  };
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
  b->stray_option = cmd->add_option("words", b->strays)->group("")->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->parse_complete_callback([cmd, b] { b->refuse_strays(*cmd); });
  return [cmd, b](const parallel::LaunchInfo& launch) { return cmd->parsed() ? run(*b, launch) : -1; };
}

}  // namespace vi::cli
