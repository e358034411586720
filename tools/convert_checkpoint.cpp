// convert_checkpoint: Hugging Face model directories to mcore checkpoints and back (Megatron-LM's
// tools/checkpoint/convert.py with its HF loader and saver, built in).
//
//   convert_checkpoint --direction hf-to-mcore --hf-dir HF_DIR --save CKPT_DIR [--bf16|--fp16]
//                      [--make-vocab-size-divisible-by 128]
//   convert_checkpoint --direction mcore-to-hf --load CKPT_DIR --save-hf HF_DIR
//                      [--hf-architecture NAME] [--vocab-size V]
//
// hf-to-mcore writes CKPT_DIR/release/ (latest_checkpointed_iteration.txt = release) and prints
// the pretrain_gpt flags for the model and its tokenizer. mcore-to-hf reads a checkpoint saved
// under any TP/PP layout. See mcore/hf_checkpoint/convert.h.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/hf_checkpoint/convert.h"

namespace {

using namespace mcore;
using namespace mcore::hf_checkpoint;

const char* kUsage =
    "usage: convert_checkpoint --direction hf-to-mcore --hf-dir DIR --save DIR [--bf16|--fp16]\n"
    "                          [--make-vocab-size-divisible-by N]\n"
    "       convert_checkpoint --direction mcore-to-hf --load DIR --save-hf DIR\n"
    "                          [--hf-architecture NAME] [--vocab-size V]\n"
    "Architectures: GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,\n"
    "               MixtralForCausalLM.\n";

struct Flags {
  std::string direction, hf_dir, save, load, save_hf, hf_architecture;
  std::string params_dtype = "float32";
  int64_t divisible_by = 128;
  std::optional<int64_t> vocab_size;
};

int64_t parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  MCORE_CHECK(!v.empty() && *end == '\0' && x > 0)
      << flag << ": '" << v << "' is not a positive integer";
  return x;
}

Flags parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      MCORE_CHECK(i + 1 < argc) << a << " needs a value\n" << kUsage;
      return argv[++i];
    };
    if (a == "--direction") {
      f.direction = value();
    } else if (a == "--hf-dir") {
      f.hf_dir = value();
    } else if (a == "--save") {
      f.save = value();
    } else if (a == "--load") {
      f.load = value();
    } else if (a == "--save-hf") {
      f.save_hf = value();
    } else if (a == "--hf-architecture") {
      f.hf_architecture = value();
    } else if (a == "--vocab-size") {
      f.vocab_size = parse_int(a, value());
    } else if (a == "--make-vocab-size-divisible-by") {
      f.divisible_by = parse_int(a, value());
    } else if (a == "--bf16") {
      f.params_dtype = "bfloat16";
    } else if (a == "--fp16") {
      f.params_dtype = "float16";
    } else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else {
      MCORE_FAIL() << "unknown flag " << a << "\n" << kUsage;
    }
  }
  MCORE_CHECK(f.direction == "hf-to-mcore" || f.direction == "mcore-to-hf")
      << "--direction must be hf-to-mcore or mcore-to-hf" << (f.direction.empty() ? "" : ", got ")
      << f.direction << "\n"
      << kUsage;
  const bool to_mcore = f.direction == "hf-to-mcore";
  auto refuse = [&](bool given, const char* flag) {
    MCORE_CHECK(!given) << flag << " does not apply to --direction " << f.direction << "\n"
                        << kUsage;
  };
  refuse(to_mcore ? !f.load.empty() : !f.hf_dir.empty(), to_mcore ? "--load" : "--hf-dir");
  refuse(to_mcore ? !f.save_hf.empty() : !f.save.empty(), to_mcore ? "--save-hf" : "--save");
  if (to_mcore) {
    refuse(!f.hf_architecture.empty(), "--hf-architecture");
    refuse(f.vocab_size.has_value(), "--vocab-size");
  } else {
    refuse(f.params_dtype != "float32", "--bf16/--fp16");
  }
  return f;
}

// `x` as one POSIX shell word, so printed commands can be pasted: single-quoted when it holds
// anything but plain characters, with each ' written as '\''.
std::string shell_quote(const std::string& x) {
  const bool plain = !x.empty() && x.find_first_not_of(
                                       "abcdefghijklmnopqrstuvwxyz"
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789_-+=.,/:@%") == std::string::npos;
  if (plain) return x;
  std::string q = "'";
  for (char c : x) {
    if (c == '\'') {
      q.append("'\\''");
    } else {
      q.push_back(c);
    }
  }
  q.push_back('\'');
  return q;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) {
    if (!s.empty()) s.push_back(' ');
    s.append(shell_quote(x));
  }
  return s;
}

void print_warnings(const std::vector<std::string>& warnings) {
  for (const auto& w : warnings)
    std::fprintf(stderr, "convert_checkpoint: warning: %s\n", w.c_str());
}

int run(int argc, char** argv) {
  const Flags f = parse(argc, argv);
  if (f.direction == "hf-to-mcore") {
    HFToMcoreOptions o;
    o.hf_dir = f.hf_dir;
    o.save_dir = f.save;
    o.params_dtype = f.params_dtype;
    o.make_vocab_size_divisible_by = f.divisible_by;
    const HFToMcoreResult r = convert_hf_to_mcore(o);
    print_warnings(r.warnings);
    std::printf("converted %s (%s, vocabulary %lld padded to %lld) to %s\n", f.hf_dir.c_str(),
                architecture_name(r.architecture), static_cast<long long>(r.vocab_size),
                static_cast<long long>(r.padded_vocab_size), r.checkpoint_dir.c_str());
    std::vector<std::string> flags = r.model_flags;
    flags.insert(flags.end(), r.tokenizer_flags.begin(), r.tokenizer_flags.end());
    if (f.params_dtype == "bfloat16") flags.push_back("--bf16");
    if (f.params_dtype == "float16") flags.push_back("--fp16");
    std::printf("\nmodel and tokenizer flags:\n  %s\n", join(flags).c_str());
    const std::string load = shell_quote(f.save);
    std::printf(
        "\nfine-tune:  pretrain_gpt --load %s --use-checkpoint-args --finetune [data and training "
        "flags]\n            (--use-checkpoint-args reads the flags above from the checkpoint; "
        "they train on sequences of --seq-length %lld, max_position_embeddings capped at 4096: "
        "pass --seq-length to change it)\n",
        load.c_str(), static_cast<long long>(r.seq_length));
    // The load-balancing coefficient is a training setting a fine-tune may want to change.
    for (size_t i = 0; i + 1 < r.model_flags.size(); ++i) {
      if (r.model_flags[i] == "--moe-aux-loss-coeff") {
        std::printf(
            "            (the checkpoint keeps config.json's router_aux_loss_coef, which "
            "--use-checkpoint-args restores; without it, pass --moe-aux-loss-coeff %s)\n",
            r.model_flags[i + 1].c_str());
      }
    }
    std::printf("generate:   generate --load %s --prompt \"...\"\n", load.c_str());
    return 0;
  }
  McoreToHFOptions o;
  o.load_dir = f.load;
  o.save_hf_dir = f.save_hf;
  o.architecture = f.hf_architecture;
  o.vocab_size = f.vocab_size;
  const McoreToHFResult r = convert_mcore_to_hf(o);
  print_warnings(r.warnings);
  std::printf("converted %s to %s (%s, vocabulary %lld of %lld rows)%s\n", r.checkpoint_dir.c_str(),
              f.save_hf.c_str(), architecture_name(r.architecture),
              static_cast<long long>(r.vocab_size), static_cast<long long>(r.padded_vocab_size),
              r.copied_files.empty() ? "" : " with the tokenizer files");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const mcore::Error& e) {
    std::fprintf(stderr, "convert_checkpoint: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convert_checkpoint: error: %s\n", e.what());
    return 1;
  }
}
