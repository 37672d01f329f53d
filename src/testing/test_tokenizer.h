// A small CLIP tokenizer for random test models.
#pragma once

#include <string>

namespace vi::testing {

// Writes a small, valid tokenizer in zeroscope's layout and format to `dir` (created if needed):
// the 256 byte symbols, their "</w>" forms, a handful of merges, <|startoftext|>/<|endoftext|>,
// tokenizer_config.json (pad <|endoftext|>) and special_tokens_map.json (pad "!", which wins).
// Load it and ask vocab_size() for the embedding size.
void write_test_tokenizer(const std::string& dir);

}  // namespace vi::testing
