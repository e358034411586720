// generate: samples text from a GPT checkpoint saved by pretrain_gpt (or from a freshly
// initialized model when no --load is given), with a KV cache, on one process.
//
//   generate --load CKPT_DIR --tokenizer-type ByteTokenizer --prompt "Once upon a time"
//            [--max-new-tokens 200] [--greedy | --temperature 0.8 --top-k 40 --top-p 0.9]
//            [--seed 1234] [--num-samples 1] [--no-kv-cache]
//
// Every other flag is pretrain_gpt's (Megatron-LM's): the model shape and tokenizer flags
// (--num-layers, --hidden-size, --model PRESET, --tokenizer-type, ...). With --load they are
// optional: the checkpoint's saved arguments fill every shape and tokenizer flag not given on
// the command line. The checkpoint may have been saved under any tensor-parallel layout; the
// loader stitches the shards back into whole tensors (TP = 1 here). The model runs in fp32: the
// weights of a --bf16/--fp16 checkpoint are cast on load (exactly).
//
// Output: the prompt followed by the generated text, streamed as it is produced; with
// --num-samples N, N samples separated by a rule (sample i uses seed + i).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/comm/local_backend.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/inference/text_generation.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/tokenizers/tokenizer.h"
#include "mcore/training/arguments.h"
#include "mcore/training/checkpoint_args.h"
#include "mcore/training/checkpointing.h"
#include "mcore/training/training.h"
#include "mcore/training/validate_args.h"

namespace {

using namespace mcore;
namespace dcp = dist_checkpointing;

struct GenerateFlags {
  std::string prompt;
  int64_t max_new_tokens = 128;
  inference::SamplingParams sampling;
  bool use_kv_cache = true;
  int64_t num_samples = 1;
  bool stop_on_eod = true;
};

const char* kUsage =
    "usage: generate [--load DIR] [model and tokenizer flags of pretrain_gpt] --prompt TEXT\n"
    "                [--max-new-tokens N] [--greedy] [--temperature T] [--top-k K] [--top-p P]\n"
    "                [--seed S] [--num-samples N] [--no-kv-cache] [--ignore-eod]\n";

// Takes generate's own flags out of argv; the rest are pretrain_gpt's.
std::vector<std::string> take_generate_flags(int argc, char** argv, GenerateFlags& g) {
  std::vector<std::string> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      MCORE_CHECK(i + 1 < argc) << a << " needs a value\n" << kUsage;
      return argv[++i];
    };
    auto number = [&](auto parse) {
      const std::string v = value();
      try {
        return parse(v);
      } catch (const std::exception&) {
        MCORE_CHECK(false) << a << ": '" << v << "' is not a number";
      }
      return parse("0");
    };
    auto to_i = [](const std::string& s) { return static_cast<int64_t>(std::stoll(s)); };
    auto to_d = [](const std::string& s) { return std::stod(s); };
    if (a == "--prompt") {
      g.prompt = value();
    } else if (a == "--max-new-tokens") {
      g.max_new_tokens = number(to_i);
    } else if (a == "--temperature") {
      g.sampling.temperature = number(to_d);
      if (g.sampling.temperature == 0.0) g.sampling.greedy = true;  // the T -> 0 limit
    } else if (a == "--top-k") {
      g.sampling.top_k = number(to_i);
    } else if (a == "--top-p") {
      g.sampling.top_p = number(to_d);
    } else if (a == "--greedy") {
      g.sampling.greedy = true;
    } else if (a == "--seed") {
      g.sampling.seed = static_cast<uint64_t>(number(to_i));
    } else if (a == "--num-samples") {
      g.num_samples = number(to_i);
    } else if (a == "--no-kv-cache") {
      g.use_kv_cache = false;
    } else if (a == "--ignore-eod") {
      g.stop_on_eod = false;
    } else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else {
      rest.push_back(a);
    }
  }
  MCORE_CHECK(g.num_samples >= 1) << "--num-samples must be >= 1, got " << g.num_samples;
  return rest;
}

// The model's TransformerConfig from the (unvalidated) arguments, with Megatron's derived
// defaults, for TP = 1 inference.
// pretrain_gpt's mapping from flags to the model config, made single-process fp32 inference:
// no dropout, no recompute, TP = PP = CP = EP = 1 (the checkpoint's TP shards are stitched on
// load; experts are saved under their global names).
transformer::TransformerConfig config_from_args(const training::Arguments& a) {
  training::Arguments args = a;
  if (!args.ffn_hidden_size && args.hidden_size) {
    // validate_args' default, for arguments that did not go through it.
    const int64_t h = *args.hidden_size;
    args.ffn_hidden_size = args.swiglu ? static_cast<int64_t>((4.0 * h * 2 / 3) / 64) * 64 : 4 * h;
  }
  args.hidden_dropout = 0.0;
  args.attention_dropout = 0.0;
  args.params_dtype = "float32";  // CPU inference in fp32; bf16/fp16 weights are cast on load
  args.tensor_model_parallel_size = 1;
  args.pipeline_model_parallel_size = 1;
  args.context_parallel_size = 1;       // a CP run's weights are whole on every rank
  args.expert_model_parallel_size = 1;  // its checkpoint names every expert globally
  args.sequence_parallel = false;
  args.recompute_granularity.reset();
  args.recompute_method.reset();
  args.recompute_num_layers.reset();
  return training::transformer_config_from_args(args);
}

int run(int argc, char** argv) {
  GenerateFlags g;
  std::vector<std::string> rest = take_generate_flags(argc, argv, g);
  training::Arguments args = training::parse_args(rest);

  std::optional<std::string> dir;
  std::optional<dcp::CheckpointMetadata> meta;
  if (args.load) {
    dir = training::checkpoint_dir_to_load(*args.load);
    meta = dcp::CheckpointMetadata::read(*dir);
    args = training::parse_args(training::argv_with_checkpoint_args(rest, args, *dir));
  }

  MCORE_CHECK(args.tokenizer_type)
      << "--tokenizer-type is required (e.g. ByteTokenizer), unless the checkpoint names it";
  tokenizers::TokenizerOptions to;
  to.tokenizer_type = *args.tokenizer_type;
  to.vocab_file = args.vocab_file.value_or("");
  to.merge_file = args.merge_file.value_or("");
  to.tokenizer_model = args.tokenizer_model.value_or("");
  if (to.tokenizer_type == "NullTokenizer") to.vocab_size = args.vocab_size.value_or(-1);
  to.vocab_extra_ids = args.vocab_extra_ids;
  auto tokenizer = tokenizers::build_tokenizer(to);

  // The padded vocabulary: what the checkpoint's embedding holds, else Megatron's padding.
  int64_t padded_vocab = 0;
  const std::string emb_key = "model.embedding.word_embeddings.weight";
  if (meta && meta->tensors.count(emb_key)) {
    padded_vocab = meta->tensors.at(emb_key).global_shape[0];
  } else {
    args.tensor_model_parallel_size = 1;
    padded_vocab = training::set_padded_vocab_size(args, tokenizer->vocab_size());
  }
  MCORE_CHECK(padded_vocab >= tokenizer->vocab_size())
      << "the model's vocabulary (" << padded_vocab << ") is smaller than the tokenizer's ("
      << tokenizer->vocab_size() << "): wrong --tokenizer-type for this checkpoint?";

  const transformer::TransformerConfig config = config_from_args(args);
  const int64_t max_seq =
      args.max_position_embeddings.value_or(args.seq_length.value_or(g.max_new_tokens + 1024));
  models::GPTModelOptions mo;
  mo.share_embeddings_and_output_weights = !args.untie_embeddings_and_output_weights;
  mo.tp_group = comm::make_local_group();
  models::GPTModel model(config, transformer::get_gpt_layer_local_spec(args.qk_layernorm),
                         padded_vocab, max_seq, mo);

  if (dir) {
    std::vector<dcp::ShardedTensor> requests =
        training::model_load_requests(model.named_parameters(), *meta);
    NoGradGuard no_grad;
    // A --bf16/--fp16 run's checkpoint: its weights widen to fp32 exactly, so the model
    // generates from the weights the training run's forward passes used.
    dcp::LoadOptions options;
    options.allow_dtype_cast = true;
    dcp::LoadResult r = dcp::load_checkpoint(*dir, requests, options);
    MCORE_CHECK(r.missing_keys.empty())
        << "checkpoint " << *dir << " lacks " << r.missing_keys.size()
        << " model tensors (first: " << r.missing_keys.front()
        << "): do the model flags match the training run?";
    std::fprintf(stderr, "generate: loaded %s (iteration %lld)\n", dir->c_str(),
                 static_cast<long long>(meta->iteration));
  } else {
    std::fprintf(stderr, "generate: no --load given; sampling from a randomly initialized model\n");
  }

  const std::vector<tokenizers::TokenId> prompt_tokens = tokenizer->encode(g.prompt);
  std::vector<int64_t> prompt(prompt_tokens.begin(), prompt_tokens.end());
  if (prompt.empty()) prompt.push_back(tokenizer->eod());  // start a fresh document
  // Learned positions end at the table; a RoPE model given --max-position-embeddings (or saved
  // with it) is held to it as well, as Megatron refuses prompt + new tokens beyond it. The KV
  // cache is sized from this bound too.
  if (config.position_embedding_type == "learned_absolute" || args.max_position_embeddings) {
    const int64_t room = max_seq - static_cast<int64_t>(prompt.size());
    MCORE_CHECK(room > 0) << "the prompt (" << prompt.size() << " tokens) fills the model's "
                          << max_seq << " positions";
    if (g.max_new_tokens > room) {
      std::fprintf(stderr, "generate: --max-new-tokens %lld capped at %lld (max positions %lld)\n",
                   static_cast<long long>(g.max_new_tokens), static_cast<long long>(room),
                   static_cast<long long>(max_seq));
      g.max_new_tokens = room;
    }
  }

  for (int64_t sample = 0; sample < g.num_samples; ++sample) {
    if (sample > 0) std::printf("\n----------------------------------------\n");
    inference::GenerationOptions o;
    o.max_new_tokens = g.max_new_tokens;
    o.sampling = g.sampling;
    o.sampling.seed = g.sampling.seed + static_cast<uint64_t>(sample);
    o.use_kv_cache = g.use_kv_cache;
    o.eod = g.stop_on_eod ? tokenizer->eod() : -1;
    o.vocab_size = tokenizer->vocab_size();
    // Stream the text; bytes of a multi-byte character are held back until it is complete by
    // decoding the whole continuation and printing what is new.
    std::vector<tokenizers::TokenId> generated;
    std::string printed;
    // The continuation is decoded after the prompt's tokens, not alone: decoding is not
    // concatenative for every tokenizer (SentencePiece drops a leading space of the first piece;
    // NullTokenizer separates ids by spaces), so the text printed after the prompt is what
    // decoding prompt + continuation adds to decoding the prompt.
    const std::vector<tokenizers::TokenId>& context = prompt_tokens;
    const std::string context_text = tokenizer->decode(context);
    auto continuation_text = [&] {
      std::vector<tokenizers::TokenId> all = context;
      all.insert(all.end(), generated.begin(), generated.end());
      std::string full = tokenizer->decode(all);
      if (full.compare(0, context_text.size(), context_text) == 0)
        return full.substr(context_text.size());
      return tokenizer->decode(generated);
    };
    // The prompt is echoed once the first token exists, after the prefill's log lines.
    bool echoed = false;
    auto echo_prompt = [&] {
      if (!echoed) std::printf("%s", g.prompt.c_str());
      echoed = true;
    };
    o.on_token = [&](int64_t t) {
      echo_prompt();
      if (t == tokenizer->eod() && g.stop_on_eod) return;
      const auto id = static_cast<tokenizers::TokenId>(t);
      try {
        tokenizer->decode({id});
      } catch (const Error&) {
        return;  // an id the tokenizer cannot print (e.g. ByteTokenizer's unused ids >= 256)
      }
      generated.push_back(id);
      std::string text = continuation_text();
      if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
        std::string fresh = text.substr(printed.size());
        // Hold back a trailing replacement character (an incomplete UTF-8 sequence).
        if (fresh.size() >= 3 && fresh.compare(fresh.size() - 3, 3, "\xEF\xBF\xBD") == 0) return;
        std::fwrite(fresh.data(), 1, fresh.size(), stdout);
        std::fflush(stdout);
        printed = text;
      }
    };
    inference::GenerationResult r = inference::generate(model, prompt, o, max_seq);
    echo_prompt();
    const std::string text = continuation_text();
    if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0)
      std::printf("%s", text.substr(printed.size()).c_str());
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "generate: %zu tokens%s\n", r.tokens.size(),
                 r.stopped_on_eod ? " (stopped at end of document)" : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const mcore::Error& e) {
    std::fprintf(stderr, "generate: error: %s\n", e.what());
    return 1;
  }
}
