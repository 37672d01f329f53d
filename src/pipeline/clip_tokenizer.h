// CLIP byte-level BPE tokenizer, identical in its ids to transformers' slow CLIPTokenizer as a
// plain install runs it (no ftfy: BasicTokenizer clean-up), loaded from a diffusers tokenizer/
// folder (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json).
// Plain C++ (no LibTorch), so that it is cheap to build and can be fuzzed.
//
// Text -> ids (Ref: transformers tokenization_utils.py PreTrainedTokenizer.tokenize,
// models/clip/tokenization_clip.py CLIPTokenizer._tokenize / bpe):
//  1. UTF-8 is decoded; invalid bytes become U+FFFD, which step 3 removes, so malformed input
//     simply loses its invalid bytes (as Python's errors="replace" decoding would have it).
//  2. Added tokens (every special token, e.g. bos/eos and the pad token "!") are cut out of the raw
//     text first, leftmost-longest, and become their ids; they are never merged.
//  3. Each remaining piece: drop U+0000, U+FFFD and category C* except \t\n\r; whitespace -> space;
//     spaces around CJK ideographs; NFC; split on whitespace; Python's str.lower() per word
//     (full mappings, final sigma); re-join with single spaces.
//  4. CLIP's regex, case-insensitive, with the `regex` module's quirks:
//     <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//  5. Each piece's UTF-8 bytes -> byte-to-unicode symbols, "</w>" glued to the last one, merges
//     applied lowest rank first; symbols missing from the vocabulary map to the unk id.
//  6. bos + tokens + eos, truncated to max_length (eos kept), padded with the pad id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "pipeline/unicode.h"

namespace vi::pipeline {

class ClipTokenizer {
 public:
  struct Encoding {
    std::vector<int64_t> ids;          // exactly max_length(): bos, tokens, eos, pad...
    std::vector<int64_t> untruncated;  // bos, every token, eos (any length, no padding)
    bool truncated = false;            // untruncated.size() > max_length()
  };

  // Reads vocab.json, merges.txt and tokenizer_config.json (required) and special_tokens_map.json,
  // added_tokens.json (optional) from `tokenizer_dir`; errors name the file at fault.
  static ClipTokenizer load(const std::string& tokenizer_dir);

  Encoding encode(const std::string& text) const;
  // The token strings (added tokens and BPE symbols such as "cat</w>"), without bos/eos.
  std::vector<std::string> tokenize(const std::string& text) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  size_t max_length() const { return max_length_; }
  // Vocabulary plus added tokens that are not in it (the embedding table must be this large).
  size_t vocab_size() const { return vocab_size_; }

 private:
  struct AddedToken {
    std::u32string content;
    int64_t id = 0;
    bool lstrip = false;
    bool rstrip = false;
  };

  void tokenize_piece(const std::u32string& piece, std::vector<std::string>& out) const;
  void bpe(const std::string& byte_symbols_word, std::vector<std::string>& out) const;
  int64_t token_id(const std::string& token) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, int32_t> merge_ranks_;  // "first second" -> rank
  std::vector<AddedToken> added_tokens_;
  std::unordered_map<std::string, int64_t> added_ids_;    // UTF-8 content -> id
  std::string byte_symbols_[256];                         // UTF-8 of each byte's symbol
  int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;
  size_t max_length_ = 77;
  size_t vocab_size_ = 0;
};

// The text functions of the pipeline above, exposed for tests.
namespace clip_text {
using unicode::decode_utf8;  // invalid sequences -> U+FFFD
using unicode::encode_utf8;
using unicode::lower;        // str.lower()
using unicode::nfc;          // unicodedata.normalize("NFC", text)
// BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text), joined by spaces.
std::u32string basic_clean(const std::u32string& text);
// re.findall of CLIP's pattern (IGNORECASE) over already cleaned text.
std::vector<std::u32string> pre_tokenize(const std::u32string& text);
// GPT-2's byte-level alphabet: the code point standing for each byte 0..255, in byte order.
std::vector<char32_t> byte_symbols();
}  // namespace clip_text

}  // namespace vi::pipeline
