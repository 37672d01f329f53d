#!/usr/bin/env python3
"""Generates src/pipeline/unicode_tables.cpp: the Unicode data the CLIP tokenizer needs, taken from
the Python that the reference ran (CPython 3.11, unicodedata 14.0.0), so that our text clean-up,
NFC and lower-casing agree with transformers' slow CLIPTokenizer character for character.

    python3 scripts/gen_unicode_tables.py [--output src/pipeline/unicode_tables.cpp] [--any-version]

What is derived, and from what:
  * properties per code point (bit flags, see unicode_tables.h): general category C* (Cn
    included: unassigned code points count as control characters to transformers), Zs, L*, N*,
    str.isspace(), the White_Space set of the `regex` module's \\s, Cased and Case_Ignorable
    (probed through str.lower()'s Final_Sigma rule, which is defined by them), and the one
    character that `regex`'s IGNORECASE makes unmatchable by [^\\s\\p{L}\\p{N}] (U+0345, whose
    case fold is the letter iota; checked against `regex` when it is installed);
  * str.lower() of every code point (multi-code-point results kept);
  * canonical combining classes, canonical decompositions (one level), and the primary
    composites (pairs whose composite survives NFC, i.e. not excluded).
Hangul syllables are algorithmic and handled in C++.
"""

import argparse
import os
import sys
import unicodedata

MAX_CP = 0x110000
EXPECTED_VERSION = "14.0.0"

# Bit flags; keep in sync with src/pipeline/unicode_tables.h.
CATEGORY_C = 1 << 0
CATEGORY_ZS = 1 << 1
LETTER = 1 << 2
NUMBER = 1 << 3
PYTHON_SPACE = 1 << 4
WHITE_SPACE = 1 << 5
CASED = 1 << 6
CASE_IGNORABLE = 1 << 7
REGEX_ICASE_HOLE = 1 << 8


def code_points():
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates never reach the tokenizer (UTF-8 decoding replaces them)
            continue
        yield cp


def is_cased(ch):
    return ch.islower() or ch.isupper() or unicodedata.category(ch) == "Lt"


def is_case_ignorable(ch):
    # str.lower() turns U+03A3 into final sigma when a cased letter precedes it, skipping
    # Case_Ignorable characters, and no cased letter follows (again skipping them). Probe that.
    if is_cased(ch):
        return ("A\u03a3" + ch).lower()[1] == "\u03c2"
    return ("A" + ch + "\u03a3").lower()[-1] == "\u03c2"


def regex_icase_holes():
    # `regex` with IGNORECASE: a character matches the negated set [^\s\p{L}\p{N}] only when none of
    # its case variants is in the set; [\p{L}] itself is matched without case variants. So a
    # non-letter whose case fold is a letter matches neither class and is skipped by findall.
    holes = set()
    for cp in code_points():
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat[0] in "LNC" or ch.isspace():
            continue
        variants = {ch.lower(), ch.upper(), ch.casefold(), ch.title()}
        if any(len(v) == 1 and unicodedata.category(v)[0] in "LN" for v in variants if v != ch):
            holes.add(cp)
    try:
        import regex  # optional cross-check
    except ImportError:
        return holes
    other = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    letter = regex.compile(r"[\p{L}]", regex.IGNORECASE)
    number = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    space = regex.compile(r"\s")
    found = set()
    for cp in code_points():
        ch = chr(cp)
        if unicodedata.category(ch)[0] == "C":  # removed before the regex runs
            continue
        if not (other.match(ch) or letter.match(ch) or number.match(ch) or space.match(ch)):
            found.add(cp)
    if found != holes:
        sys.exit(f"regex IGNORECASE holes differ: predicted {sorted(map(hex, holes))}, regex {sorted(map(hex, found))}")
    return holes


def properties():
    holes = regex_icase_holes()
    props = [0] * MAX_CP
    for cp in code_points():
        ch = chr(cp)
        cat = unicodedata.category(ch)
        f = 0
        if cat[0] == "C":
            f |= CATEGORY_C
        if cat == "Zs":
            f |= CATEGORY_ZS
        if cat[0] == "L":
            f |= LETTER
        if cat[0] == "N":
            f |= NUMBER
        if ch.isspace():
            f |= PYTHON_SPACE
            if not 0x1C <= cp <= 0x1F:  # str.isspace() has these separators; White_Space does not
                f |= WHITE_SPACE
        if is_cased(ch):
            f |= CASED
        if is_case_ignorable(ch):
            f |= CASE_IGNORABLE
        if cp in holes:
            f |= REGEX_ICASE_HOLE
        props[cp] = f
    for cp in range(0xD800, 0xE000):
        props[cp] = CATEGORY_C
    return props


def runs(values):
    """[(first, value)] where each run lasts until the next first."""
    out = []
    for cp, v in enumerate(values):
        if not out or out[-1][1] != v:
            out.append((cp, v))
    return out


def lower_tables():
    single = {}  # cp -> delta
    multi = []   # (cp, [cps])
    for cp in code_points():
        ch = chr(cp)
        low = ch.lower()
        if low == ch:
            continue
        if len(low) == 1:
            single[cp] = ord(low) - cp
        else:
            assert len(low) <= 3
            multi.append((cp, [ord(c) for c in low]))
    # Arithmetic runs: first, count, stride (1 or 2), delta. Greedy: extend with the same stride/delta.
    entries = []
    cps = sorted(single)
    i = 0
    while i < len(cps):
        first = cps[i]
        delta = single[first]
        best = (1, 1)
        for stride in (1, 2):
            n = 1
            while first + n * stride in single and single[first + n * stride] == delta and \
                    all((first + n * stride - k) not in single for k in range(1, stride)):
                n += 1
            if n > best[0]:
                best = (n, stride)
        count, stride = best
        entries.append((first, count, stride, delta))
        covered = {first + k * stride for k in range(count)}
        i += 1
        while i < len(cps) and cps[i] in covered:
            i += 1
    # Every mapped code point must be covered exactly once, and nothing else.
    check = {}
    for first, count, stride, delta in entries:
        for k in range(count):
            assert first + k * stride not in check
            check[first + k * stride] = delta
    assert check == single, "lower-case run compression lost a mapping"
    entries.sort()
    return entries, multi


def normalization_tables():
    ccc = [0] * MAX_CP
    decomp = []
    for cp in code_points():
        ch = chr(cp)
        ccc[cp] = unicodedata.combining(ch)
        d = unicodedata.decomposition(ch)
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, (hex(cp), d)
        decomp.append((cp, parts[0], parts[1] if len(parts) == 2 else 0))
    compose = []
    for cp, a, b in decomp:
        if b and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
            compose.append((a, b, cp))
    compose.sort()
    return ccc, decomp, compose


def fmt_rows(items, per_line):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + ",".join(items[i:i + per_line]) + ",")
    return "\n".join(lines)


def generate():
    version = unicodedata.unidata_version
    props = properties()
    prop_runs = runs(props)
    lower, lower_multi = lower_tables()
    ccc, decomp, compose = normalization_tables()
    ccc_runs = runs(ccc)
    h = lambda v: f"0x{v:X}"

    out = []
    out.append("// Generated by scripts/gen_unicode_tables.py from Python "
               f"{sys.version_info.major}.{sys.version_info.minor}'s unicodedata (Unicode {version}). Do not edit.")
    out.append("// Tables: properties and combining classes as runs (each lasts until the next start), lower-case")
    out.append("// mappings as arithmetic runs, canonical decompositions and primary composites sorted.")
    out.append('#include "pipeline/unicode_tables.h"')
    out.append("")
    out.append("#include <algorithm>")
    out.append("#include <iterator>")
    out.append("")
    out.append("namespace vi::pipeline::unicode {")
    out.append("")
    out.append("namespace {")
    out.append("")
    out.append("struct Run { char32_t first; uint16_t value; };")
    out.append("struct LowerRun { char32_t first; uint16_t count; uint8_t stride; int32_t delta; };")
    out.append("struct LowerMulti { char32_t cp; char32_t to[3]; };")
    out.append("struct Decomposition { char32_t cp, first, second; };")
    out.append("struct Composition { char32_t first, second, composite; };")
    out.append("")
    out.append(f"// {len(prop_runs)} runs")
    out.append("constexpr Run kProperties[] = {")
    out.append(fmt_rows([f"{{{h(a)},{h(v)}}}" for a, v in prop_runs], 8))
    out.append("};")
    out.append("")
    out.append(f"// {len(ccc_runs)} runs")
    out.append("constexpr Run kCombiningClass[] = {")
    out.append(fmt_rows([f"{{{h(a)},{v}}}" for a, v in ccc_runs], 8))
    out.append("};")
    out.append("")
    out.append(f"// {len(lower)} runs: first, count, stride, delta")
    out.append("constexpr LowerRun kLower[] = {")
    out.append(fmt_rows([f"{{{h(a)},{n},{s},{d}}}" for a, n, s, d in lower], 6))
    out.append("};")
    out.append("")
    out.append("constexpr LowerMulti kLowerMulti[] = {")
    out.append(fmt_rows(["{%s,{%s}}" % (h(cp), ",".join(h(c) for c in (to + [0, 0])[:3])) for cp, to in lower_multi], 4))
    out.append("};")
    out.append("")
    out.append(f"// {len(decomp)} canonical decompositions (second = 0: singleton)")
    out.append("constexpr Decomposition kDecomposition[] = {")
    out.append(fmt_rows([f"{{{h(c)},{h(a)},{h(b)}}}" for c, a, b in decomp], 6))
    out.append("};")
    out.append("")
    out.append(f"// {len(compose)} primary composites, sorted by (first, second)")
    out.append("constexpr Composition kComposition[] = {")
    out.append(fmt_rows([f"{{{h(a)},{h(b)},{h(c)}}}" for a, b, c in compose], 6))
    out.append("};")
    out.append("")
    out.append("template <typename T, size_t N>")
    out.append("uint16_t run_value(const T (&table)[N], char32_t cp) {")
    out.append("  auto it = std::upper_bound(std::begin(table), std::end(table), cp,")
    out.append("                             [](char32_t c, const T& r) { return c < r.first; });")
    out.append("  return it == std::begin(table) ? 0 : std::prev(it)->value;")
    out.append("}")
    out.append("")
    out.append("}  // namespace")
    out.append("")
    out.append(f'const char* unicode_version() {{ return "{version}"; }}')
    out.append("")
    out.append("uint16_t properties(char32_t cp) {")
    out.append("  if (cp >= 0x110000) return kCategoryC;")
    out.append("  return run_value(kProperties, cp);")
    out.append("}")
    out.append("")
    out.append("uint8_t combining_class(char32_t cp) {")
    out.append("  if (cp >= 0x110000) return 0;")
    out.append("  return static_cast<uint8_t>(run_value(kCombiningClass, cp));")
    out.append("}")
    out.append("")
    out.append("int lowercase(char32_t cp, char32_t out[3]) {")
    out.append("  for (const auto& m : kLowerMulti) {")
    out.append("    if (m.cp == cp) {")
    out.append("      int n = 0;")
    out.append("      while (n < 3 && m.to[n] != 0) { out[n] = m.to[n]; ++n; }")
    out.append("      return n;")
    out.append("    }")
    out.append("  }")
    out.append("  auto it = std::upper_bound(std::begin(kLower), std::end(kLower), cp,")
    out.append("                             [](char32_t c, const LowerRun& r) { return c < r.first; });")
    out.append("  out[0] = cp;")
    out.append("  if (it == std::begin(kLower)) return 1;")
    out.append("  const LowerRun& r = *std::prev(it);")
    out.append("  const char32_t offset = cp - r.first;")
    out.append("  if (offset % r.stride == 0 && offset / r.stride < r.count) {")
    out.append("    out[0] = static_cast<char32_t>(static_cast<int64_t>(cp) + r.delta);")
    out.append("  }")
    out.append("  return 1;")
    out.append("}")
    out.append("")
    out.append("int canonical_decomposition(char32_t cp, char32_t out[2]) {")
    out.append("  auto it = std::lower_bound(std::begin(kDecomposition), std::end(kDecomposition), cp,")
    out.append("                             [](const Decomposition& d, char32_t c) { return d.cp < c; });")
    out.append("  if (it == std::end(kDecomposition) || it->cp != cp) return 0;")
    out.append("  out[0] = it->first;")
    out.append("  out[1] = it->second;")
    out.append("  return it->second == 0 ? 1 : 2;")
    out.append("}")
    out.append("")
    out.append("char32_t canonical_composition(char32_t first, char32_t second) {")
    out.append("  auto it = std::lower_bound(std::begin(kComposition), std::end(kComposition), first,")
    out.append("                             [&](const Composition& c, char32_t f) {")
    out.append("                               return c.first < f || (c.first == f && c.second < second);")
    out.append("                             });")
    out.append("  if (it == std::end(kComposition) || it->first != first || it->second != second) return 0;")
    out.append("  return it->composite;")
    out.append("}")
    out.append("")
    out.append("}  // namespace vi::pipeline::unicode")
    out.append("")
    return "\n".join(out), version


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--output", default=os.path.normpath(os.path.join(here, "..", "src", "pipeline", "unicode_tables.cpp")))
    parser.add_argument("--any-version", action="store_true",
                        help=f"allow a unicodedata other than {EXPECTED_VERSION} (the reference's)")
    args = parser.parse_args()
    if unicodedata.unidata_version != EXPECTED_VERSION and not args.any_version:
        sys.exit(f"unicodedata is {unicodedata.unidata_version}; the reference ran {EXPECTED_VERSION} "
                 "(Python 3.11). Use that Python, or pass --any-version.")
    text, version = generate()
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output} (Unicode {version}, {len(text)} bytes)")


if __name__ == "__main__":
    main()
