// GPT-2's bytes_to_unicode: the printable stand-in character for each byte that byte-level BPE
// vocabularies are written in (printable ASCII and Latin-1 map to themselves, the rest to
// U+0100 and up).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mcore::tokenizers {

// The stand-in code point of byte b.
uint32_t byte_to_unicode(uint8_t b);
// The byte a stand-in code point denotes, or -1.
int unicode_to_byte(uint32_t cp);
// Maps a vocabulary string back to raw bytes; nullopt when a character is no stand-in.
std::optional<std::string> byte_level_decode(std::string_view text);

}  // namespace mcore::tokenizers
