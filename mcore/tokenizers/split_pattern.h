// The pre-tokenization regexes of byte-level BPE tokenizers, implemented by hand. GPT-2's
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// and the cl100k-style patterns of Llama-3 (\p{N}{1,3}) and Qwen2 (\p{N}) decide every word
// boundary, so they must agree with the regex engines (Python's regex module, Oniguruma in
// Hugging Face tokenizers) exactly, backtracking included; a hand-written matcher does that in
// one forward pass and is several times faster than a general regex engine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mcore::tokenizers {

enum class SplitPattern {
  kGpt2,    // GPT-2, and Hugging Face's ByteLevel pre-tokenizer with use_regex
  kLlama3,  // Llama-3 / tiktoken cl100k: (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|...
  kQwen2,   // Qwen2: as Llama-3 with single digits, \p{N}
};

// The pattern a regex string from a tokenizer.json denotes, or nullopt when it is none of the
// patterns implemented here.
std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex);
const char* split_pattern_regex(SplitPattern p);

// Splits text into the consecutive matches of the pattern (every character is matched by some
// alternative, so the pieces cover the text). Appends byte ranges [begin, end) to out.
void split_by_pattern(std::string_view text, SplitPattern p,
                      std::vector<std::pair<uint32_t, uint32_t>>& out);

}  // namespace mcore::tokenizers
