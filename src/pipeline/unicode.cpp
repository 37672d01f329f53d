#include "pipeline/unicode.h"

#include <algorithm>

namespace vi::pipeline::unicode {

namespace {

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
  const int n = canonical_decomposition(cp, parts);
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
  return canonical_composition(first, second);
}

// Python's Final_Sigma rule for U+03A3 at `i`: a cased letter before it and none after it, both
// looked for across Case_Ignorable characters. Ref: CPython unicodeobject.c handle_capital_sigma.
bool final_sigma(const std::u32string& s, size_t i) {
  size_t j = i;
  bool found = false;
  while (j > 0) {
    --j;
    if (!has(s[j], kCaseIgnorable)) {
      found = true;
      break;
    }
  }
  if (!found || !has(s[j], kCased)) return false;
  for (size_t k = i + 1; k < s.size(); ++k) {
    if (!has(s[k], kCaseIgnorable)) return !has(s[k], kCased);
  }
  return true;
}

}  // namespace

// Ref: transformers tokenization_utils.py _is_control / _is_whitespace.
bool is_control(char32_t cp) { return cp != '\t' && cp != '\n' && cp != '\r' && has(cp, kCategoryC); }
bool is_whitespace(char32_t cp) {
  return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || has(cp, kCategoryZs);
}
bool is_python_space(char32_t cp) { return has(cp, kPythonSpace); }

// Ref: BasicTokenizer._is_chinese_char (the CJK ideograph blocks, not all CJK scripts).
bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
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
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // 3. Canonical composition: each character joins the last starter unless blocked by a character
  //    in between of class 0 or of a class >= its own.
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  for (char32_t c : d) {
    const uint8_t ccc = combining_class(c);
    if (starter != std::u32string::npos) {
      const bool adjacent = starter + 1 == out.size();
      const uint8_t last = adjacent ? 0 : combining_class(out.back());
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
    const int n = lowercase(text[i], mapped);
    out.append(mapped, mapped + n);
  }
  return out;
}

}  // namespace vi::pipeline::unicode
