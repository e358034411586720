#include "mcore/hf_checkpoint/hf_tokenizer.h"

#include <filesystem>
#include <tuple>

#include "mcore/base/error.h"
#include "mcore/hf_checkpoint/hf_config.h"
#include "mcore/training/setup.h"

namespace mcore::hf_checkpoint {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using tokenizers::kNoToken;

std::string tokenizer_type(const training::Arguments& a) {
  if (a.tokenizer_type) return *a.tokenizer_type;
  return a.mock_data && a.vocab_size ? "NullTokenizer" : "";
}

// Sets `out.copies` to `files` (source, name) when every source exists; else a warning naming
// the first missing one and the flag that named it.
void copy_all(TokenizerExport& out, const std::string& type,
              const std::vector<std::tuple<std::string, std::string, const char*>>& files) {
  for (const auto& [path, name, flag] : files) {
    if (!fs::is_regular_file(path)) {
      out.warnings.push_back("no tokenizer is exported: the checkpoint's " + type + " " + flag +
                             " " + path +
                             " does not exist (moved?); copy its files into the "
                             "output yourself");
      return;
    }
  }
  for (const auto& [path, name, flag] : files) out.copies.emplace_back(path, name);
}

void export_hf_tokenizer(const training::Arguments& a, TokenizerExport& out) {
  const std::string model = a.tokenizer_model.value_or("");
  const bool is_dir = fs::is_directory(model);
  const fs::path file = is_dir ? fs::path(model) / "tokenizer.json" : fs::path(model);
  copy_all(out, "HuggingFaceTokenizer", {{file.string(), "tokenizer.json", "--tokenizer-model"}});
  if (out.copies.empty()) return;
  // A tokenizer.json in its Hugging Face directory: the configuration beside it is its own.
  if (file.filename() == "tokenizer.json") {
    bool has_config = false;
    for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
      const fs::path p = file.parent_path() / name;
      if (!fs::is_regular_file(p)) continue;
      out.copies.emplace_back(p.string(), name);
      has_config |= p.filename() == "tokenizer_config.json";
    }
    if (has_config) return;
  }
  // Without its configuration AutoTokenizer would pick the model type's tokenizer class, whose
  // special-token handling may differ from the tokenizer.json mcore trained with.
  json config = {{"tokenizer_class", "PreTrainedTokenizerFast"}};
  if (out.tokenizer) {
    const tokenizers::Tokenizer& t = *out.tokenizer;
    for (auto [key, id] : {std::pair<const char*, tokenizers::TokenId>{"bos_token", t.bos()},
                           {"eos_token", t.eos()},
                           {"pad_token", t.pad()}}) {
      if (id != kNoToken) config[key] = t.decode({id});
    }
  }
  out.json_files["tokenizer_config.json"] = config;
}

}  // namespace

TokenizerExport export_tokenizer(const training::Arguments& a) {
  TokenizerExport out;
  try {
    out.tokenizer = training::build_tokenizer_from_args(a);
  } catch (const Error& e) {
    out.build_error = e.what();
  }
  const std::string type = tokenizer_type(a);
  if (type == "GPT2BPETokenizer") {
    copy_all(out, type,
             {{a.vocab_file.value_or(""), "vocab.json", "--vocab-file"},
              {a.merge_file.value_or(""), "merges.txt", "--merge-file"}});
    // AutoTokenizer would otherwise choose by the model type (LlamaTokenizer for a LLaMA model,
    // which reads tokenizer.model): Megatron's GPT2BPETokenizer is GPT-2's.
    if (!out.copies.empty()) {
      out.json_files["tokenizer_config.json"] = {{"tokenizer_class", "GPT2Tokenizer"},
                                                 {"add_prefix_space", false}};
    }
  } else if (type == "HuggingFaceTokenizer") {
    export_hf_tokenizer(a, out);
  } else if (type == "SentencePieceTokenizer" || type == "GPTSentencePieceTokenizer" ||
             type == "Llama2Tokenizer") {
    copy_all(out, type, {{a.tokenizer_model.value_or(""), "tokenizer.model", "--tokenizer-model"}});
  } else {
    out.warnings.push_back("no tokenizer is exported: the checkpoint's tokenizer (" +
                           (type.empty() ? std::string("none saved") : type) +
                           ") has no files transformers can read; add the tokenizer files to "
                           "the output yourself");
  }
  return out;
}

int64_t export_vocab_size(const CheckpointModel& cm, const TokenizerExport& tok,
                          std::optional<int64_t> requested, std::vector<std::string>& warnings) {
  const int64_t rows = cm.padded_vocab_size;
  const int64_t ids = tok.tokenizer ? tok.tokenizer->vocab_size() : 0;
  if (requested) {
    MCORE_CHECK(*requested > 0 && *requested <= rows)
        << "--vocab-size " << *requested << " does not fit the checkpoint's " << rows
        << " embedding rows";
    if (*requested < ids) {
      warnings.push_back("--vocab-size " + std::to_string(*requested) + " is smaller than the " +
                         std::to_string(ids) +
                         " ids of the checkpoint's tokenizer: transformers "
                         "fails on the larger ids");
    }
    return *requested;
  }
  if (cm.hf_import.contains("vocab_size") && cm.hf_import.at("vocab_size").is_number_integer()) {
    const int64_t v = cm.hf_import.at("vocab_size").get<int64_t>();
    MCORE_CHECK(v > 0 && v <= rows)
        << "checkpoint " << cm.dir << ": its " << kHFImportSection << " vocab_size " << v
        << " does not fit its " << rows << " embedding rows; pass --vocab-size";
    return v;
  }
  MCORE_CHECK(tok.tokenizer) << "cannot tell the vocabulary size of checkpoint " << cm.dir
                             << ": its tokenizer cannot be built from the saved arguments ("
                             << tok.build_error << "); pass --vocab-size (at most " << rows
                             << ", the embedding rows)";
  MCORE_CHECK(ids <= rows) << "the checkpoint's tokenizer (" << tok.tokenizer->name() << ") has "
                           << ids << " ids but the model only " << rows
                           << " embedding rows: it is not the tokenizer the model was trained "
                              "with; pass --vocab-size";
  const std::string type = tokenizer_type(cm.args);
  const bool sized_by_flag = type == "NullTokenizer" || type == "ByteTokenizer";
  if (!sized_by_flag && cm.args.vocab_size && *cm.args.vocab_size > ids &&
      *cm.args.vocab_size <= rows) {
    return *cm.args.vocab_size;
  }
  return ids;
}

json export_special_tokens(const CheckpointModel& cm, const TokenizerExport& tok,
                           int64_t vocab_size) {
  json out = json::object();
  bool imported = false;
  for (const char* key : kSpecialTokenKeys) {
    if (!cm.hf_import.contains(key)) continue;
    out[key] = cm.hf_import.at(key);
    imported = true;
  }
  if (imported || !tok.tokenizer) return out;
  const tokenizers::Tokenizer& t = *tok.tokenizer;
  for (auto [key, id] : {std::pair<const char*, tokenizers::TokenId>{"bos_token_id", t.bos()},
                         {"eos_token_id", t.eos()},
                         {"pad_token_id", t.pad()}}) {
    if (id != kNoToken && id < vocab_size) out[key] = id;
  }
  return out;
}

}  // namespace mcore::hf_checkpoint
