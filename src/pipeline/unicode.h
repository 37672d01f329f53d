// The Unicode text functions the CLIP tokenizer's clean-up is built from, each as the Python
// function the reference calls behaves (CPython 3.11, Unicode 14.0.0: see unicode_tables.h), so
// that our text agrees with transformers' slow CLIPTokenizer character for character. No ICU.
// Torch-free, like the tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/unicode_tables.h"

namespace vi::pipeline::unicode {

constexpr char32_t kReplacement = 0xFFFD;  // what invalid UTF-8 decodes to

// bytes.decode("utf-8", errors="replace"): one U+FFFD per maximal invalid subpart.
std::u32string decode_utf8(const std::string& bytes);
// Surrogates and values past U+10FFFF, which UTF-8 cannot carry, are written as U+FFFD.
std::string encode_utf8(const std::u32string& text);

std::u32string nfc(const std::u32string& text);    // unicodedata.normalize("NFC", text)
std::u32string lower(const std::u32string& text);  // str.lower(): full mappings, final sigma

inline bool has(char32_t cp, uint16_t property) { return (properties(cp) & property) != 0; }

// The character classes of transformers' BasicTokenizer clean-up.
bool is_control(char32_t cp);
bool is_whitespace(char32_t cp);
bool is_cjk_ideograph(char32_t cp);

// str.isspace(), and the str methods that cut on it: split() without argument, lstrip(), rstrip().
bool is_python_space(char32_t cp);
std::vector<std::u32string> split_whitespace(const std::u32string& s);
std::u32string lstrip(const std::u32string& s);
std::u32string rstrip(const std::u32string& s);

}  // namespace vi::pipeline::unicode
