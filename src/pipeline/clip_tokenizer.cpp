#include "pipeline/clip_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/check.h"
#include "core/json_config.h"
#include "pipeline/unicode_tables.h"

namespace vi::pipeline {

namespace fs = std::filesystem;
namespace uc = unicode;

namespace {

constexpr char32_t kReplacement = 0xFFFD;

// Ref: transformers tokenization_clip.py bytes_to_unicode: printable Latin-1 bytes stand for
// themselves, the other 68 bytes map to U+0100.. in byte order.
std::vector<char32_t> byte_to_unicode() {
  std::vector<char32_t> table(256, 0);
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  int n = 0;
  for (int b = 0; b < 256; ++b) table[b] = printable(b) ? char32_t(b) : char32_t(256 + n++);
  return table;
}

bool has(char32_t cp, uint16_t property) { return (uc::properties(cp) & property) != 0; }

// Ref: transformers tokenization_utils.py _is_control / _is_whitespace.
bool is_control(char32_t cp) { return cp != '\t' && cp != '\n' && cp != '\r' && has(cp, uc::kCategoryC); }
bool is_whitespace(char32_t cp) {
  return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || has(cp, uc::kCategoryZs);
}
bool is_python_space(char32_t cp) { return has(cp, uc::kPythonSpace); }

// Ref: BasicTokenizer._is_chinese_char (the CJK ideograph blocks, not all CJK scripts).
bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// Hangul syllable algorithm constants (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose(char32_t cp, std::u32string& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  char32_t parts[2];
  const int n = uc::canonical_decomposition(cp, parts);
  if (n == 0) {
    out.push_back(cp);
    return;
  }
  decompose(parts[0], out);
  if (n == 2) decompose(parts[1], out);
}

char32_t compose_pair(char32_t first, char32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  return uc::canonical_composition(first, second);
}

// Python's Final_Sigma rule for U+03A3 at `i`: a cased letter before it and none after it, both
// looked for across Case_Ignorable characters. Ref: CPython unicodeobject.c handle_capital_sigma.
bool final_sigma(const std::u32string& s, size_t i) {
  size_t j = i;
  bool found = false;
  while (j > 0) {
    --j;
    if (!has(s[j], uc::kCaseIgnorable)) {
      found = true;
      break;
    }
  }
  if (!found || !has(s[j], uc::kCased)) return false;
  for (size_t k = i + 1; k < s.size(); ++k) {
    if (!has(s[k], uc::kCaseIgnorable)) return !has(s[k], uc::kCased);
  }
  return true;
}

// str.split() (no argument): runs of whitespace separate, none at the ends.
std::vector<std::u32string> split_whitespace(const std::u32string& s) {
  std::vector<std::u32string> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_python_space(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_python_space(s[i])) ++i;
    if (i > start) words.emplace_back(s, start, i - start);
  }
  return words;
}

std::u32string lstrip(const std::u32string& s) {
  size_t i = 0;
  while (i < s.size() && is_python_space(s[i])) ++i;
  return s.substr(i);
}

std::u32string rstrip(const std::u32string& s) {
  size_t n = s.size();
  while (n > 0 && is_python_space(s[n - 1])) --n;
  return s.substr(0, n);
}

// One character of the regex under IGNORECASE against a lower-case ASCII literal: its upper-case
// form and, for 's', U+017F LATIN SMALL LETTER LONG S (whose simple case fold is 's') match too.
bool literal_matches(char32_t c, char lit) {
  if (c == char32_t(lit)) return true;
  if (lit >= 'a' && lit <= 'z' && c == char32_t(lit - 'a' + 'A')) return true;
  return lit == 's' && c == 0x17F;
}

size_t match_literal(const std::u32string& s, size_t i, const char* lit) {
  size_t n = 0;
  for (; lit[n] != '\0'; ++n) {
    if (i + n >= s.size() || !literal_matches(s[i + n], lit[n])) return 0;
  }
  return n;
}

bool regex_letter(char32_t c) { return has(c, uc::kLetter); }
bool regex_number(char32_t c) { return has(c, uc::kNumber); }
bool regex_other(char32_t c) {
  return !has(c, uc::kWhiteSpace | uc::kLetter | uc::kNumber | uc::kRegexIgnoreCaseHole);
}

std::string read_text_file(const std::string& path) {
  VI_CHECK(fs::exists(path), "{}: file not found", path);
  std::ifstream in(path, std::ios::binary);
  VI_CHECK(in.good(), "{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  VI_CHECK(!in.bad(), "{}: read error", path);
  return ss.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  VI_CHECK(out.good(), "{}: cannot write", path);
}

// A special-token entry of tokenizer_config.json / special_tokens_map.json: "text" or
// {"content": "text", "lstrip": ..., "rstrip": ..., "single_word": ...}.
struct TokenSpec {
  std::string content;
  bool lstrip = false;
  bool rstrip = false;
};

TokenSpec parse_token_spec(const nlohmann::json& value, const std::string& where) {
  TokenSpec spec;
  if (value.is_string()) {
    spec.content = value.get<std::string>();
  } else if (value.is_object()) {
    VI_CHECK(value.contains("content") && value.at("content").is_string(), "{}: token object without a string 'content'",
             where);
    spec.content = value.at("content").get<std::string>();
    auto flag = [&](const char* key) {
      if (!value.contains(key) || value.at(key).is_null()) return false;
      VI_CHECK(value.at(key).is_boolean(), "{}: '{}' must be true or false", where, key);
      return value.at(key).get<bool>();
    };
    spec.lstrip = flag("lstrip");
    spec.rstrip = flag("rstrip");
    VI_CHECK(!flag("single_word"), "{}: single_word added tokens are not supported", where);
  } else {
    VI_FAIL("{}: expected a token string or object, got {}", where, value.type_name());
  }
  VI_CHECK(!spec.content.empty(), "{}: empty token", where);
  return spec;
}

constexpr const char* kSpecialKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                        "pad_token", "cls_token", "mask_token"};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Text functions

namespace clip_text {

std::u32string decode_utf8(const std::string& bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = s[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    // Lead byte: sequence length and the valid range of the second byte (no overlongs, no
    // surrogates, nothing past U+10FFFF). A bad sequence yields one U+FFFD per maximal subpart.
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    char32_t cp = 0;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2, cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3, cp = b & 0x0F;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4, cp = b & 0x07;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      out.push_back(kReplacement);
      ++i;
      continue;
    }
    size_t j = 1;
    bool ok = true;
    for (; j < static_cast<size_t>(len); ++j) {
      if (i + j >= n) {
        ok = false;
        break;
      }
      const unsigned char c = s[i + j];
      const unsigned char min = j == 1 ? lo : 0x80, max = j == 1 ? hi : 0xBF;
      if (c < min || c > max) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (c & 0x3F);
    }
    if (ok) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(kReplacement);
      i += j;
    }
  }
  return out;
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) c = kReplacement;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::u32string nfc(const std::u32string& text) {
  // 1. Full canonical decomposition.
  std::u32string d;
  d.reserve(text.size());
  for (char32_t c : text) decompose(c, d);
  // 2. Canonical ordering: every run of non-starters stably sorted by combining class.
  for (size_t i = 0; i < d.size();) {
    if (uc::combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && uc::combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return uc::combining_class(a) < uc::combining_class(b); });
    i = j;
  }
  // 3. Canonical composition: each character joins the last starter unless blocked by a character
  //    in between of class 0 or of a class >= its own.
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  for (char32_t c : d) {
    const uint8_t ccc = uc::combining_class(c);
    if (starter != std::u32string::npos) {
      const bool adjacent = starter + 1 == out.size();
      const uint8_t last = adjacent ? 0 : uc::combining_class(out.back());
      if (adjacent || (last != 0 && last < ccc)) {
        if (char32_t composite = compose_pair(out[starter], c)) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (ccc == 0) starter = out.size();
    out.push_back(c);
  }
  return out;
}

std::u32string lower(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == 0x3A3) {
      out.push_back(final_sigma(text, i) ? 0x3C2 : 0x3C3);
      continue;
    }
    char32_t mapped[3];
    const int n = uc::lowercase(text[i], mapped);
    out.append(mapped, mapped + n);
  }
  return out;
}

std::u32string basic_clean(const std::u32string& text) {
  // Ref: transformers BasicTokenizer.tokenize / _clean_text / _tokenize_chinese_chars.
  std::u32string cleaned;
  cleaned.reserve(text.size());
  for (char32_t c : text) {
    if (c == 0 || c == kReplacement || is_control(c)) continue;
    if (is_whitespace(c)) {
      cleaned.push_back(' ');
    } else if (is_cjk_ideograph(c)) {
      cleaned.push_back(' ');
      cleaned.push_back(c);
      cleaned.push_back(' ');
    } else {
      cleaned.push_back(c);
    }
  }
  std::u32string out;
  for (const auto& word : split_whitespace(nfc(cleaned))) {
    // Lower-casing cannot create whitespace, so the second whitespace split of the reference is a no-op.
    if (!out.empty()) out.push_back(' ');
    out += lower(word);
  }
  return out;
}

std::vector<std::u32string> pre_tokenize(const std::u32string& s) {
  static const char* const kLiterals[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  std::vector<std::u32string> pieces;
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    for (const char* lit : kLiterals) {  // alternation order: the first alternative that matches wins
      if ((len = match_literal(s, i, lit)) > 0) break;
    }
    if (len == 0) {
      if (regex_letter(s[i])) {
        while (i + len < s.size() && regex_letter(s[i + len])) ++len;
      } else if (regex_number(s[i])) {
        len = 1;
      } else if (regex_other(s[i])) {
        while (i + len < s.size() && regex_other(s[i + len])) ++len;
      }
    }
    if (len == 0) {  // no alternative matches here (whitespace, U+0345): findall moves on
      ++i;
      continue;
    }
    pieces.emplace_back(s, i, len);
    i += len;
  }
  return pieces;
}

}  // namespace clip_text

// ---------------------------------------------------------------------------------------------
// Loading

ClipTokenizer ClipTokenizer::load(const std::string& tokenizer_dir) {
  VI_CHECK(fs::is_directory(tokenizer_dir), "tokenizer directory '{}' not found", tokenizer_dir);
  ClipTokenizer tok;
  const std::vector<char32_t> byte_map = byte_to_unicode();
  for (int b = 0; b < 256; ++b) tok.byte_symbols_[b] = clip_text::encode_utf8(std::u32string(1, byte_map[b]));

  // vocab.json: {"token": id, ...}
  const std::string vocab_path = (fs::path(tokenizer_dir) / "vocab.json").string();
  {
    nlohmann::json vocab;
    try {
      vocab = nlohmann::json::parse(read_text_file(vocab_path));
    } catch (const nlohmann::json::exception& e) {
      VI_FAIL("{}: invalid JSON: {}", vocab_path, e.what());
    }
    VI_CHECK(vocab.is_object() && !vocab.empty(), "{}: expected a non-empty JSON object of token -> id", vocab_path);
    tok.vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      VI_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0 &&
                   it.value().get<int64_t>() < (int64_t(1) << 31),
               "{}: token '{}' has id {}, expected a non-negative integer", vocab_path, it.key(), it.value().dump());
      tok.vocab_[it.key()] = it.value().get<int64_t>();
    }
  }

  // merges.txt: a header line, then "first second" per line, rank = position. As the reference
  // reads it: universal newlines, the whole file stripped, lines 1 .. 49152-256-2, each split on
  // whitespace (a line that is not two symbols never matches a pair but keeps its rank).
  const std::string merges_path = (fs::path(tokenizer_dir) / "merges.txt").string();
  {
    std::string text = read_text_file(merges_path);
    std::string normalized;
    normalized.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\r') {
        normalized.push_back('\n');
        if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      } else {
        normalized.push_back(text[i]);
      }
    }
    const char* ws = " \t\n\v\f";
    const size_t b = normalized.find_first_not_of(ws), e = normalized.find_last_not_of(ws);
    normalized = b == std::string::npos ? std::string() : normalized.substr(b, e - b + 1);
    std::istringstream lines(normalized);
    std::string line;
    constexpr int kMaxMerges = 49152 - 256 - 2;
    for (int index = -1; index < kMaxMerges && std::getline(lines, line); ++index) {
      if (index < 0) continue;  // header
      std::istringstream parts(line);
      std::string first, second, extra;
      if (parts >> first >> second && !(parts >> extra)) tok.merge_ranks_[first + " " + second] = index;
    }
  }

  // Special tokens: tokenizer_config.json, overridden by special_tokens_map.json (as transformers'
  // from_pretrained does), defaults as CLIPTokenizer's constructor.
  const std::string config_path = (fs::path(tokenizer_dir) / "tokenizer_config.json").string();
  const core::JsonConfig config = core::JsonConfig::load(config_path);
  std::vector<std::pair<std::string, TokenSpec>> specials = {
      {"bos_token", {"<|startoftext|>"}}, {"eos_token", {"<|endoftext|>"}}, {"unk_token", {"<|endoftext|>"}},
      {"pad_token", {"<|endoftext|>"}}};
  auto set_special = [&](const std::string& key, const TokenSpec& spec) {
    for (auto& [k, v] : specials) {
      if (k == key) {
        v = spec;
        return;
      }
    }
    specials.emplace_back(key, spec);
  };
  std::vector<TokenSpec> additional;
  auto read_specials = [&](const nlohmann::json& json, const std::string& origin) {
    for (const char* key : kSpecialKeys) {
      if (json.contains(key) && !json.at(key).is_null())
        set_special(key, parse_token_spec(json.at(key), origin + ": " + key));
    }
    if (json.contains("additional_special_tokens") && !json.at("additional_special_tokens").is_null()) {
      const auto& list = json.at("additional_special_tokens");
      VI_CHECK(list.is_array(), "{}: additional_special_tokens must be a list", origin);
      additional.clear();
      for (const auto& v : list) additional.push_back(parse_token_spec(v, origin + ": additional_special_tokens"));
    }
  };
  read_specials(config.json(), config_path);
  const std::string map_path = (fs::path(tokenizer_dir) / "special_tokens_map.json").string();
  if (fs::exists(map_path)) read_specials(core::JsonConfig::load(map_path).json(), map_path);

  const int64_t max_length = config.get_or<int64_t>("model_max_length", 77);
  VI_CHECK(max_length >= 2 && max_length <= 1000000, "{}: model_max_length {} out of range [2, 1000000]", config_path,
           max_length);
  tok.max_length_ = static_cast<size_t>(max_length);

  // Added tokens, in transformers' order: those a saved tokenizer lists with their ids, then every
  // special token not yet added (its vocabulary id, or a new id after everything so far).
  std::unordered_map<std::string, int64_t> known = tok.vocab_;
  auto add = [&](const TokenSpec& spec, std::optional<int64_t> id) {
    if (tok.added_ids_.count(spec.content)) return;
    int64_t token_id;
    if (id) {
      token_id = *id;
    } else if (auto it = known.find(spec.content); it != known.end()) {
      token_id = it->second;
    } else {
      token_id = static_cast<int64_t>(known.size());
    }
    known[spec.content] = token_id;
    tok.added_ids_[spec.content] = token_id;
    tok.added_tokens_.push_back({clip_text::decode_utf8(spec.content), token_id, spec.lstrip, spec.rstrip});
  };
  if (config.has("added_tokens_decoder")) {
    const auto& decoder = config.json().at("added_tokens_decoder");
    VI_CHECK(decoder.is_object(), "{}: added_tokens_decoder must be an object", config_path);
    std::vector<std::pair<int64_t, TokenSpec>> entries;
    for (auto it = decoder.begin(); it != decoder.end(); ++it) {
      int64_t id = -1;
      try {
        id = std::stoll(it.key());
      } catch (const std::exception&) {
      }
      VI_CHECK(id >= 0, "{}: added_tokens_decoder key '{}' is not an id", config_path, it.key());
      entries.emplace_back(id, parse_token_spec(it.value(), config_path + ": added_tokens_decoder"));
    }
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [id, spec] : entries) add(spec, id);
  }
  const std::string added_path = (fs::path(tokenizer_dir) / "added_tokens.json").string();
  if (fs::exists(added_path)) {
    const auto added = core::JsonConfig::load(added_path);
    std::vector<std::pair<int64_t, std::string>> entries;
    for (auto it = added.json().begin(); it != added.json().end(); ++it) {
      VI_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0,
               "{}: token '{}' needs a non-negative integer id", added_path, it.key());
      entries.emplace_back(it.value().get<int64_t>(), it.key());
    }
    std::sort(entries.begin(), entries.end());
    for (const auto& [id, content] : entries) add(TokenSpec{content}, id);
  }
  for (const auto& [key, spec] : specials) add(spec, std::nullopt);
  for (const auto& spec : additional) add(spec, std::nullopt);

  auto special_id = [&](const char* key) {
    for (const auto& [k, spec] : specials)
      if (k == key) return tok.added_ids_.at(spec.content);
    VI_FAIL("{}: no {}", config_path, key);
  };
  tok.bos_id_ = special_id("bos_token");
  tok.eos_id_ = special_id("eos_token");
  tok.pad_id_ = special_id("pad_token");
  // Unknown symbols map to the unk token's vocabulary id (transformers looks it up in the vocabulary only).
  const std::string& unk = std::find_if(specials.begin(), specials.end(), [](const auto& s) {
                             return s.first == "unk_token";
                           })->second.content;
  auto unk_it = tok.vocab_.find(unk);
  tok.unk_id_ = unk_it != tok.vocab_.end() ? unk_it->second : tok.added_ids_.at(unk);

  int64_t max_id = 0;
  for (const auto& [t, id] : known) max_id = std::max(max_id, id);
  tok.vocab_size_ = static_cast<size_t>(max_id + 1);
  return tok;
}

// ---------------------------------------------------------------------------------------------
// Encoding

int64_t ClipTokenizer::token_id(const std::string& token) const {
  if (auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
  if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return unk_id_;
}

void ClipTokenizer::bpe(const std::string& piece, std::vector<std::string>& out) const {
  // Ref: CLIPTokenizer.bpe. Its cache starts with the two literal special tokens, which therefore
  // come back whole (no "</w>").
  if (piece == "<|startoftext|>" || piece == "<|endoftext|>") {
    out.push_back(piece);
    return;
  }
  std::vector<std::string> word;
  word.reserve(piece.size());
  for (unsigned char b : piece) word.push_back(byte_symbols_[b]);
  if (word.empty()) return;
  word.back() += "</w>";
  std::string key;
  while (word.size() > 1) {
    int32_t best = INT32_MAX;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      key.assign(word[i]).append(" ").append(word[i + 1]);
      auto it = merge_ranks_.find(key);
      if (it != merge_ranks_.end() && it->second < best) {
        best = it->second;
        best_at = i;
      }
    }
    if (best == INT32_MAX) break;
    const std::string first = word[best_at], second = word[best_at + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {  // every occurrence, left to right, non-overlapping
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(word[i]));
        i += 1;
      }
    }
    word = std::move(merged);
  }
  for (auto& symbol : word) out.push_back(std::move(symbol));
}

void ClipTokenizer::tokenize_piece(const std::u32string& piece, std::vector<std::string>& out) const {
  for (const auto& word : clip_text::pre_tokenize(clip_text::basic_clean(piece))) {
    bpe(clip_text::encode_utf8(word), out);
  }
}

std::vector<std::string> ClipTokenizer::tokenize(const std::string& text) const {
  const std::u32string s = clip_text::decode_utf8(text);
  // Cut out added tokens, leftmost-longest (transformers' Trie.split), keeping the text between.
  struct Part {
    std::u32string text;
    const AddedToken* token = nullptr;
  };
  std::vector<Part> parts;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    const AddedToken* match = nullptr;
    for (const auto& t : added_tokens_) {
      if (t.content.size() <= s.size() - i && (!match || t.content.size() > match->content.size()) &&
          s.compare(i, t.content.size(), t.content) == 0) {
        match = &t;
      }
    }
    if (!match) {
      ++i;
      continue;
    }
    if (i > start) parts.push_back({s.substr(start, i - start), nullptr});
    parts.push_back({match->content, match});
    i += match->content.size();
    start = i;
  }
  if (start < s.size()) parts.push_back({s.substr(start), nullptr});
  // An added token with rstrip/lstrip eats the whitespace on that side.
  for (size_t p = 0; p < parts.size(); ++p) {
    if (!parts[p].token) continue;
    if (parts[p].token->rstrip && p + 1 < parts.size() && !parts[p + 1].token) parts[p + 1].text = lstrip(parts[p + 1].text);
    if (parts[p].token->lstrip && p > 0 && !parts[p - 1].token) parts[p - 1].text = rstrip(parts[p - 1].text);
  }
  std::vector<std::string> tokens;
  for (const auto& part : parts) {
    if (part.token) {
      tokens.push_back(clip_text::encode_utf8(part.text));
    } else if (!part.text.empty()) {
      tokenize_piece(part.text, tokens);
    }
  }
  return tokens;
}

ClipTokenizer::Encoding ClipTokenizer::encode(const std::string& text) const {
  const std::vector<std::string> tokens = tokenize(text);
  Encoding enc;
  enc.untruncated.reserve(tokens.size() + 2);
  enc.untruncated.push_back(bos_id_);
  for (const auto& t : tokens) enc.untruncated.push_back(token_id(t));
  enc.untruncated.push_back(eos_id_);
  enc.truncated = enc.untruncated.size() > max_length_;
  if (enc.truncated) {
    // Ref: transformers truncate_sequences (longest_first, right side): keep bos + the first
    // max_length - 2 tokens, then eos.
    enc.ids.assign(enc.untruncated.begin(), enc.untruncated.begin() + static_cast<std::ptrdiff_t>(max_length_ - 1));
    enc.ids.push_back(eos_id_);
  } else {
    enc.ids = enc.untruncated;
    enc.ids.resize(max_length_, pad_id_);
  }
  return enc;
}

// ---------------------------------------------------------------------------------------------
// A small tokenizer for random test models

void write_test_tokenizer(const std::string& dir) {
  fs::create_directories(dir);
  // The 256 byte symbols in code point order (as CLIP's vocabulary lists them), then their
  // "</w>" forms, then one entry per merge, then bos and eos.
  std::vector<char32_t> symbols = byte_to_unicode();
  std::sort(symbols.begin(), symbols.end());
  nlohmann::ordered_json vocab;
  int64_t id = 0;
  for (char32_t c : symbols) vocab[clip_text::encode_utf8(std::u32string(1, c))] = id++;
  for (char32_t c : symbols) vocab[clip_text::encode_utf8(std::u32string(1, c)) + "</w>"] = id++;
  const std::pair<const char*, const char*> merges[] = {
      {"t", "h"},    {"th", "e</w>"}, {"a", "n"},     {"an", "d</w>"}, {"i", "n"},     {"in", "g</w>"},
      {"o", "f</w>"}, {"c", "a"},     {"ca", "t</w>"}, {"d", "o"},     {"do", "g</w>"}, {"e", "r</w>"},
      {"o", "n</w>"}, {"a", "t</w>"}, {"i", "s</w>"}, {"o", "r"},      {"e", "n</w>"}, {"r", "e"}};
  std::string merges_text = "#version: 0.2\n";
  for (const auto& [a, b] : merges) {
    merges_text += std::string(a) + " " + b + "\n";
    const std::string joined = std::string(a) + b;
    if (!vocab.contains(joined)) vocab[joined] = id++;
  }
  vocab["<|startoftext|>"] = id++;
  vocab["<|endoftext|>"] = id++;
  write_text_file((fs::path(dir) / "vocab.json").string(), vocab.dump());
  write_text_file((fs::path(dir) / "merges.txt").string(), merges_text);

  auto added = [](const char* content, bool with_type) {
    nlohmann::ordered_json t;
    if (with_type) t["__type"] = "AddedToken";
    t["content"] = content;
    t["lstrip"] = false;
    t["normalized"] = true;
    t["rstrip"] = false;
    t["single_word"] = false;
    return t;
  };
  // zeroscope_v2_576w's tokenizer_config.json and special_tokens_map.json.
  nlohmann::ordered_json config;
  config["add_prefix_space"] = false;
  config["bos_token"] = added("<|startoftext|>", true);
  config["clean_up_tokenization_spaces"] = true;
  config["do_lower_case"] = true;
  config["eos_token"] = added("<|endoftext|>", true);
  config["errors"] = "replace";
  config["model_max_length"] = 77;
  config["pad_token"] = "<|endoftext|>";
  config["tokenizer_class"] = "CLIPTokenizer";
  config["unk_token"] = added("<|endoftext|>", true);
  write_text_file((fs::path(dir) / "tokenizer_config.json").string(), config.dump(2) + "\n");
  nlohmann::ordered_json map;
  map["bos_token"] = added("<|startoftext|>", false);
  map["eos_token"] = added("<|endoftext|>", false);
  map["pad_token"] = "!";
  map["unk_token"] = added("<|endoftext|>", false);
  write_text_file((fs::path(dir) / "special_tokens_map.json").string(), map.dump(2) + "\n");
}

}  // namespace vi::pipeline
