// The pieces of a Hugging Face tokenizer.json pipeline that mcore implements: normalizers
// (Sequence, Prepend, Replace, Strip, NFC), pre-tokenizers (ByteLevel, Split with the GPT-2 /
// Llama-3 / Qwen2 regexes, Metaspace, Sequence) and decoders (ByteLevel, Metaspace, Replace,
// ByteFallback, Fuse, Strip, Sequence), each with the semantics of the Rust `tokenizers` crate.
// A component this file does not know is an error at load time naming its type, never a silent
// difference.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mcore::tokenizers::hf {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

// A piece of text between pre-tokenization steps. at_origin: it starts at offset 0 of the
// original input (Metaspace's prepend_scheme "first" asks this).
struct Piece {
  std::string_view text;
  bool at_origin;
};

// Owns the strings that pre-tokenizers create (stable addresses for the views in Piece).
using PieceStorage = std::deque<std::string>;

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces pieces by their splits; empty pieces are dropped, as Hugging Face does.
  virtual void pre_tokenize(std::vector<Piece>& pieces, PieceStorage& storage) const = 0;
  // True when the pipeline maps bytes to GPT-2's stand-in characters (the BPE model then works
  // on bytes).
  virtual bool byte_level() const { return false; }
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Parsers: a null JSON value gives nullptr (no component).
std::unique_ptr<Normalizer> parse_normalizer(const nlohmann::json& j);
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const nlohmann::json& j);
std::unique_ptr<Decoder> parse_decoder(const nlohmann::json& j);

}  // namespace mcore::tokenizers::hf
