// Unicode Normalization Form C (UAX #15) for the tokenizers: the NFC normalizer of Hugging Face
// tokenizer.json files (Qwen2's among them) must compose decomposed text ("e" + U+0301 -> "é")
// exactly as the Rust `tokenizers` library does, or the ids differ. Full NFC: recursive
// canonical decomposition (Hangul algorithmically), canonical ordering of combining marks,
// canonical composition with the full composition exclusion. Text that passes the NFC quick
// check (nearly all text) is returned as it is without further work. The data is Python's
// unicodedata, see scripts/gen_unicode_tables.py.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mcore::tokenizers {

// Canonical_Combining_Class of a code point: 0 for starters and unassigned code points.
uint8_t canonical_combining_class(uint32_t cp);

// text in NFC. Ill-formed UTF-8 bytes, which the quick check lets through untouched, come out
// unchanged at their place: each acts as a starter that composes with nothing.
std::string nfc_normalize(std::string_view text);

// s = nfc_normalize(s), without a copy when s is already in NFC.
void nfc_normalize_in_place(std::string& s);

}  // namespace mcore::tokenizers
