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
#include "pipeline/unicode.h"

namespace vi::pipeline {

namespace fs = std::filesystem;
namespace uc = unicode;

namespace {

// Ref: transformers tokenization_clip.py bytes_to_unicode: printable Latin-1 bytes stand for
// themselves, the other 68 bytes map to U+0100.. in byte order.
std::vector<char32_t> byte_to_unicode() {
  std::vector<char32_t> table(256, 0);
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  int n = 0;
  for (int b = 0; b < 256; ++b) table[b] = printable(b) ? char32_t(b) : char32_t(256 + n++);
  return table;
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

bool regex_letter(char32_t c) { return uc::has(c, uc::kLetter); }
bool regex_number(char32_t c) { return uc::has(c, uc::kNumber); }
bool regex_other(char32_t c) {
  return !uc::has(c, uc::kWhiteSpace | uc::kLetter | uc::kNumber | uc::kRegexIgnoreCaseHole);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Text functions

namespace clip_text {

std::vector<char32_t> byte_symbols() { return byte_to_unicode(); }

std::u32string basic_clean(const std::u32string& text) {
  // Ref: transformers BasicTokenizer.tokenize / _clean_text / _tokenize_chinese_chars.
  std::u32string cleaned;
  cleaned.reserve(text.size());
  for (char32_t c : text) {
    if (c == 0 || c == uc::kReplacement || uc::is_control(c)) continue;
    if (uc::is_whitespace(c)) {
      cleaned.push_back(' ');
    } else if (uc::is_cjk_ideograph(c)) {
      cleaned.push_back(' ');
      cleaned.push_back(c);
      cleaned.push_back(' ');
    } else {
      cleaned.push_back(c);
    }
  }
  std::u32string out;
  for (const auto& word : uc::split_whitespace(uc::nfc(cleaned))) {
    // Lower-casing cannot create whitespace, so the second whitespace split of the reference is a no-op.
    if (!out.empty()) out.push_back(' ');
    out += uc::lower(word);
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

namespace {

std::string read_text_file(const std::string& path) {
  VI_CHECK(fs::exists(path), "{}: file not found", path);
  std::ifstream in(path, std::ios::binary);
  VI_CHECK(in.good(), "{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  VI_CHECK(!in.bad(), "{}: read error", path);
  return ss.str();
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

std::string file_in(const std::string& dir, const char* name) { return (fs::path(dir) / name).string(); }

// vocab.json: {"token": id, ...}
std::unordered_map<std::string, int64_t> read_vocab(const std::string& vocab_path) {
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(read_text_file(vocab_path));
  } catch (const nlohmann::json::exception& e) {
    VI_FAIL("{}: invalid JSON: {}", vocab_path, e.what());
  }
  VI_CHECK(vocab.is_object() && !vocab.empty(), "{}: expected a non-empty JSON object of token -> id", vocab_path);
  std::unordered_map<std::string, int64_t> ids;
  ids.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    VI_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0 &&
                 it.value().get<int64_t>() < (int64_t(1) << 31),
             "{}: token '{}' has id {}, expected a non-negative integer", vocab_path, it.key(), it.value().dump());
    ids[it.key()] = it.value().get<int64_t>();
  }
  return ids;
}

// The file's text with universal newlines (\r\n and \r become \n), stripped at both ends.
std::string read_stripped_text(const std::string& path) {
  const std::string text = read_text_file(path);
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
  return b == std::string::npos ? std::string() : normalized.substr(b, e - b + 1);
}

// merges.txt: a header line, then "first second" per line, rank = position. As the reference
// reads it: universal newlines, the whole file stripped, lines 1 .. 49152-256-2, each split on
// whitespace (a line that is not two symbols never matches a pair but keeps its rank).
std::unordered_map<std::string, int32_t> read_merges(const std::string& merges_path) {
  std::unordered_map<std::string, int32_t> ranks;
  std::istringstream lines(read_stripped_text(merges_path));
  std::string line;
  constexpr int kMaxMerges = 49152 - 256 - 2;
  for (int index = -1; index < kMaxMerges && std::getline(lines, line); ++index) {
    if (index < 0) continue;  // header
    std::istringstream parts(line);
    std::string first, second, extra;
    if (parts >> first >> second && !(parts >> extra)) ranks[first + " " + second] = index;
  }
  return ranks;
}

// Special tokens: tokenizer_config.json, overridden by special_tokens_map.json (as transformers'
// from_pretrained does), defaults as CLIPTokenizer's constructor.
struct SpecialTokens {
  std::vector<std::pair<std::string, TokenSpec>> named = {
      {"bos_token", {"<|startoftext|>"}}, {"eos_token", {"<|endoftext|>"}}, {"unk_token", {"<|endoftext|>"}},
      {"pad_token", {"<|endoftext|>"}}};
  std::vector<TokenSpec> additional;

  void set(const std::string& key, const TokenSpec& spec) {
    for (auto& [k, v] : named) {
      if (k == key) {
        v = spec;
        return;
      }
    }
    named.emplace_back(key, spec);
  }

  void read(const nlohmann::json& json, const std::string& origin) {
    for (const char* key : kSpecialKeys) {
      if (json.contains(key) && !json.at(key).is_null()) set(key, parse_token_spec(json.at(key), origin + ": " + key));
    }
    if (json.contains("additional_special_tokens") && !json.at("additional_special_tokens").is_null()) {
      const auto& list = json.at("additional_special_tokens");
      VI_CHECK(list.is_array(), "{}: additional_special_tokens must be a list", origin);
      additional.clear();
      for (const auto& v : list) additional.push_back(parse_token_spec(v, origin + ": additional_special_tokens"));
    }
  }

  const TokenSpec* find(const std::string& key) const {
    for (const auto& [k, spec] : named) {
      if (k == key) return &spec;
    }
    return nullptr;
  }
};

SpecialTokens read_special_tokens(const core::JsonConfig& config, const std::string& config_path,
                                  const std::string& map_path) {
  SpecialTokens specials;
  specials.read(config.json(), config_path);
  if (fs::exists(map_path)) specials.read(core::JsonConfig::load(map_path).json(), map_path);
  return specials;
}

size_t read_max_length(const core::JsonConfig& config, const std::string& config_path) {
  const int64_t max_length = config.get_or<int64_t>("model_max_length", 77);
  VI_CHECK(max_length >= 2 && max_length <= 1000000, "{}: model_max_length {} out of range [2, 1000000]", config_path,
           max_length);
  return static_cast<size_t>(max_length);
}

// tokenizer_config.json's added_tokens_decoder ({"id": token, ...}), in id order.
std::vector<std::pair<int64_t, TokenSpec>> read_added_tokens_decoder(const core::JsonConfig& config,
                                                                     const std::string& config_path) {
  std::vector<std::pair<int64_t, TokenSpec>> entries;
  if (!config.has("added_tokens_decoder")) return entries;
  const auto& decoder = config.json().at("added_tokens_decoder");
  VI_CHECK(decoder.is_object(), "{}: added_tokens_decoder must be an object", config_path);
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
  return entries;
}

// added_tokens.json ({"token": id, ...}, optional), in id order.
std::vector<std::pair<int64_t, std::string>> read_added_tokens_file(const std::string& added_path) {
  std::vector<std::pair<int64_t, std::string>> entries;
  if (!fs::exists(added_path)) return entries;
  const auto added = core::JsonConfig::load(added_path);
  for (auto it = added.json().begin(); it != added.json().end(); ++it) {
    VI_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0,
             "{}: token '{}' needs a non-negative integer id", added_path, it.key());
    entries.emplace_back(it.value().get<int64_t>(), it.key());
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

// The ids of added tokens as transformers assigns them: a token keeps the first id it is added
// with; without one it takes its vocabulary id, or a new id after everything so far.
class AddedTokenIds {
 public:
  explicit AddedTokenIds(const std::unordered_map<std::string, int64_t>& vocab) : known_(vocab) {}

  void add(const TokenSpec& spec, std::optional<int64_t> id) {
    if (ids_.count(spec.content)) return;
    int64_t token_id;
    if (id) {
      token_id = *id;
    } else if (auto it = known_.find(spec.content); it != known_.end()) {
      token_id = it->second;
    } else {
      token_id = static_cast<int64_t>(known_.size());
    }
    known_[spec.content] = token_id;
    ids_[spec.content] = token_id;
    tokens_.emplace_back(spec, token_id);
  }

  const std::vector<std::pair<TokenSpec, int64_t>>& tokens() const { return tokens_; }  // in the order added
  const std::unordered_map<std::string, int64_t>& ids() const { return ids_; }           // content -> id
  // The vocabulary plus the added tokens: one past the largest id.
  size_t vocab_size() const {
    int64_t max_id = 0;
    for (const auto& [t, id] : known_) max_id = std::max(max_id, id);
    return static_cast<size_t>(max_id + 1);
  }

 private:
  std::unordered_map<std::string, int64_t> known_;  // vocabulary and added tokens
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<std::pair<TokenSpec, int64_t>> tokens_;
};

}  // namespace

ClipTokenizer ClipTokenizer::load(const std::string& tokenizer_dir) {
  VI_CHECK(fs::is_directory(tokenizer_dir), "tokenizer directory '{}' not found", tokenizer_dir);
  ClipTokenizer tok;
  const std::vector<char32_t> byte_map = byte_to_unicode();
  for (int b = 0; b < 256; ++b) tok.byte_symbols_[b] = uc::encode_utf8(std::u32string(1, byte_map[b]));
  tok.vocab_ = read_vocab(file_in(tokenizer_dir, "vocab.json"));
  tok.merge_ranks_ = read_merges(file_in(tokenizer_dir, "merges.txt"));

  const std::string config_path = file_in(tokenizer_dir, "tokenizer_config.json");
  const core::JsonConfig config = core::JsonConfig::load(config_path);
  const SpecialTokens specials =
      read_special_tokens(config, config_path, file_in(tokenizer_dir, "special_tokens_map.json"));
  tok.max_length_ = read_max_length(config, config_path);

  // Added tokens, in transformers' order: those a saved tokenizer lists with their ids, then every
  // special token not yet added.
  AddedTokenIds added(tok.vocab_);
  for (const auto& [id, spec] : read_added_tokens_decoder(config, config_path)) added.add(spec, id);
  for (const auto& [id, content] : read_added_tokens_file(file_in(tokenizer_dir, "added_tokens.json"))) {
    added.add(TokenSpec{content}, id);
  }
  for (const auto& [key, spec] : specials.named) added.add(spec, std::nullopt);
  for (const auto& spec : specials.additional) added.add(spec, std::nullopt);
  for (const auto& [spec, id] : added.tokens()) {
    tok.added_tokens_.push_back({uc::decode_utf8(spec.content), id, spec.lstrip, spec.rstrip});
  }
  tok.added_ids_ = added.ids();
  tok.vocab_size_ = added.vocab_size();

  auto special_id = [&](const char* key) {
    if (const TokenSpec* spec = specials.find(key)) return tok.added_ids_.at(spec->content);
    VI_FAIL("{}: no {}", config_path, key);
  };
  tok.bos_id_ = special_id("bos_token");
  tok.eos_id_ = special_id("eos_token");
  tok.pad_id_ = special_id("pad_token");
  // Unknown symbols map to the unk token's vocabulary id (transformers looks it up in the vocabulary only).
  const std::string& unk = specials.find("unk_token")->content;
  auto unk_it = tok.vocab_.find(unk);
  tok.unk_id_ = unk_it != tok.vocab_.end() ? unk_it->second : tok.added_ids_.at(unk);
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
    bpe(uc::encode_utf8(word), out);
  }
}

std::vector<std::string> ClipTokenizer::tokenize(const std::string& text) const {
  const std::u32string s = uc::decode_utf8(text);
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
    if (parts[p].token->rstrip && p + 1 < parts.size() && !parts[p + 1].token) {
      parts[p + 1].text = uc::lstrip(parts[p + 1].text);
    }
    if (parts[p].token->lstrip && p > 0 && !parts[p - 1].token) {
      parts[p - 1].text = uc::rstrip(parts[p - 1].text);
    }
  }
  std::vector<std::string> tokens;
  for (const auto& part : parts) {
    if (part.token) {
      tokens.push_back(uc::encode_utf8(part.text));
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

}  // namespace vi::pipeline
