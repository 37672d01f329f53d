// What a run's record (the sidecar JSON) says about the process besides its settings: the
// command line main() was given, the host, the date, the build, and the files it read.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace vi::core {

// main() hands its argv over once, before anything may change it; empty until then (tests that
// call the pipeline directly).
void set_command_line(int argc, const char* const* argv);
const std::vector<std::string>& command_line();

// A word as a POSIX shell reads it back: unchanged when safe, else in single quotes.
std::string shell_quote(const std::string& word);
// The words quoted and joined by spaces: a command line to paste into a shell.
std::string shell_join(const std::vector<std::string>& words);

std::string host_name();
// "2026-11-30T03:17:55Z".
std::string utc_iso8601(std::time_t t);

// `git describe --always --dirty` of the source tree at CMake configure time, "unknown" when
// it was not a git checkout (build_info.cpp, a compile definition of that file only).
const char* git_describe();

// Files under this size get a sha256 in the record; larger ones (the 5.6 GB UNet would take
// seconds to hash) only their size and modification time.
inline constexpr uintmax_t kHashedFileLimit = uintmax_t{64} << 20;

// Hex SHA-256 of bytes and of a file's contents (throws naming the file when unreadable).
std::string sha256_hex(const void* data, size_t size);
std::string sha256_file(const std::string& path);

// {"path", "bytes", "modified" (UTC ISO 8601), "sha256" when under `hash_limit`}.
nlohmann::json file_record(const std::string& path, uintmax_t hash_limit = kHashedFileLimit);

// {"method": how files are identified, "files": [file_record + "component"]} for every file the
// model's components are read from (core::model_files).
nlohmann::json model_files_record(const std::string& model_dir, const std::string& unet_dir);

}  // namespace vi::core
