// Unicode data for the CLIP tokenizer, without ICU: generated from the unicodedata of the Python
// the reference ran (CPython 3.11, Unicode 14.0.0) by scripts/gen_unicode_tables.py, so that text
// clean-up, NFC and lower-casing match transformers' slow CLIPTokenizer exactly.
// Torch-free; the algorithms using these tables live in unicode.cpp.
#pragma once

#include <cstdint>

namespace vi::pipeline::unicode {

// Property bits of one code point (properties()).
enum Property : uint16_t {
  kCategoryC = 1 << 0,        // general category C* (Cc, Cf, Cs, Co and unassigned Cn)
  kCategoryZs = 1 << 1,       // space separator
  kLetter = 1 << 2,           // L*  (regex \p{L})
  kNumber = 1 << 3,           // N*  (regex \p{N})
  kPythonSpace = 1 << 4,      // str.isspace(): what str.split() / str.strip() cut on
  kWhiteSpace = 1 << 5,       // White_Space (regex \s)
  kCased = 1 << 6,            // Cased (Final_Sigma context)
  kCaseIgnorable = 1 << 7,    // Case_Ignorable (Final_Sigma context)
  kRegexIgnoreCaseHole = 1 << 8,  // matched by neither [\p{L}] nor [^\s\p{L}\p{N}] under IGNORECASE (U+0345)
};

const char* unicode_version();  // "14.0.0"

// Property bits; code points past U+10FFFF read as kCategoryC.
uint16_t properties(char32_t cp);

// Canonical combining class (0 for starters).
uint8_t combining_class(char32_t cp);

// str.lower() of the lone code point: writes 1..3 code points to `out`, returns how many.
// U+03A3 maps to U+03C3 here; the final-sigma context is the caller's.
int lowercase(char32_t cp, char32_t out[3]);

// One level of canonical decomposition (Hangul syllables excluded: algorithmic): writes 0, 1 or 2
// code points to `out`, returns how many.
int canonical_decomposition(char32_t cp, char32_t out[2]);

// The primary composite of `first` + `second` (composition exclusions applied, Hangul excluded),
// or 0 when the pair does not compose.
char32_t canonical_composition(char32_t first, char32_t second);

}  // namespace vi::pipeline::unicode
