// preprocess_data: JSON lines -> Megatron indexed datasets, as Megatron-LM's
// tools/preprocess_data.py. Each line is a JSON object; the values of --json-keys (strings, or
// lists of strings = sentences) are tokenized, optionally followed by eod, and written to
// {output_prefix}_{key}_{document|sentence}.bin/.idx with uint16 tokens when the vocabulary has
// fewer than 65500 entries, else int32. Lines are encoded in parallel (--workers threads) and
// written in input order, so the output does not depend on the worker count.
//
//   preprocess_data --input corpus.jsonl --output-prefix data/corpus
//     --tokenizer-type GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt
//     --append-eod --workers 2
#include <omp.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/datasets/indexed_dataset.h"
#include "mcore/datasets/sentence_splitter.h"
#include "mcore/tokenizers/tokenizer.h"
#include "mcore/tokenizers/unicode.h"

namespace {

using mcore::tokenizers::TokenId;

struct Args {
  std::string input, output_prefix;
  std::vector<std::string> json_keys{"text"};
  mcore::tokenizers::TokenizerOptions tok;
  bool append_eod = false, split_sentences = false, keep_newlines = false, skip_bad_lines = false;
  int workers = 1;
  int64_t log_interval = 1000;
};

const char* kUsage =
    "usage: preprocess_data --input FILE.jsonl --output-prefix PREFIX --tokenizer-type TYPE\n"
    "  [--json-keys KEY ...] [--vocab-file F] [--merge-file F] [--tokenizer-model F]\n"
    "  [--vocab-size N] [--vocab-extra-ids N] [--append-eod] [--split-sentences]\n"
    "  [--keep-newlines] [--workers N] [--partitions 1] [--log-interval N] [--skip-bad-lines]\n"
    "Tokenizer types: GPT2BPETokenizer, HuggingFaceTokenizer, SentencePieceTokenizer,\n"
    "  GPTSentencePieceTokenizer, Llama2Tokenizer, NullTokenizer, ByteTokenizer.\n";

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> av(argv + 1, argv + argc);
  for (size_t i = 0; i < av.size(); ++i) {
    std::string flag = av[i], inline_value;
    bool has_inline = false;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_inline = true;
    }
    auto value = [&]() -> std::string {
      if (has_inline) return inline_value;
      MCORE_CHECK(i + 1 < av.size() && av[i + 1].rfind("--", 0) != 0)
          << "preprocess_data: " << flag << " needs a value\n"
          << kUsage;
      return av[++i];
    };
    auto integer = [&]() -> int64_t {
      const std::string v = value();
      try {
        size_t used = 0;
        const int64_t n = std::stoll(v, &used);
        if (used == v.size()) return n;
      } catch (const std::exception&) {
      }
      MCORE_FAIL() << "preprocess_data: " << flag << " needs an integer, got '" << v << "'";
      return 0;
    };
    if (flag == "--input")
      a.input = value();
    else if (flag == "--output-prefix")
      a.output_prefix = value();
    else if (flag == "--json-keys") {
      a.json_keys.clear();
      if (has_inline) a.json_keys.push_back(inline_value);
      while (i + 1 < av.size() && av[i + 1].rfind("--", 0) != 0) a.json_keys.push_back(av[++i]);
      MCORE_CHECK(!a.json_keys.empty()) << "preprocess_data: --json-keys needs at least one key";
    } else if (flag == "--tokenizer-type")
      a.tok.tokenizer_type = value();
    else if (flag == "--vocab-file")
      a.tok.vocab_file = value();
    else if (flag == "--merge-file")
      a.tok.merge_file = value();
    else if (flag == "--tokenizer-model")
      a.tok.tokenizer_model = value();
    else if (flag == "--vocab-size")
      a.tok.vocab_size = integer();
    else if (flag == "--vocab-extra-ids")
      a.tok.vocab_extra_ids = integer();
    else if (flag == "--append-eod")
      a.append_eod = true;
    else if (flag == "--split-sentences")
      a.split_sentences = true;
    else if (flag == "--keep-newlines")
      a.keep_newlines = true;
    else if (flag == "--skip-bad-lines")
      a.skip_bad_lines = true;
    else if (flag == "--workers")
      a.workers = int(integer());
    else if (flag == "--log-interval")
      a.log_interval = integer();
    else if (flag == "--partitions") {
      MCORE_CHECK(integer() == 1) << "preprocess_data: --partitions > 1 is not supported; the "
                                     "threads of --workers already use every core";
    } else if (flag == "--lang") {
      MCORE_CHECK(value() == "english")
          << "preprocess_data: the sentence splitter knows only --lang english";
    } else if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else {
      MCORE_FAIL() << "preprocess_data: unknown argument '" << av[i] << "'\n" << kUsage;
    }
  }
  MCORE_CHECK(!a.input.empty()) << "preprocess_data: --input is required\n" << kUsage;
  MCORE_CHECK(!a.output_prefix.empty()) << "preprocess_data: --output-prefix is required\n"
                                        << kUsage;
  MCORE_CHECK(!a.tok.tokenizer_type.empty()) << "preprocess_data: --tokenizer-type is required\n"
                                             << kUsage;
  MCORE_CHECK(a.workers >= 1) << "preprocess_data: --workers must be at least 1";
  MCORE_CHECK(a.log_interval >= 1) << "preprocess_data: --log-interval must be at least 1";
  return a;
}

struct Encoded {
  std::vector<std::vector<TokenId>> ids;   // per key: the document's tokens
  std::vector<std::vector<int64_t>> lens;  // per key: sentence lengths
  std::string error;                       // non-empty: the line is bad
};

// Megatron's Encoder.encode for one JSON line.
void encode_line(const Args& a, const mcore::tokenizers::Tokenizer& tok, const std::string& line,
                 Encoded& e) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& ex) {
    e.error = std::string("invalid JSON: ") + ex.what();
    return;
  }
  if (!j.is_object()) {
    e.error = "the line is JSON but not an object";
    return;
  }
  e.ids.assign(a.json_keys.size(), {});
  e.lens.assign(a.json_keys.size(), {});
  for (size_t k = 0; k < a.json_keys.size(); ++k) {
    auto it = j.find(a.json_keys[k]);
    if (it == j.end()) {
      e.error = "no key '" + a.json_keys[k] + "' (set --json-keys)";
      return;
    }
    std::vector<std::string> sentences;
    if (it->is_array()) {
      for (const auto& s : *it) {
        if (!s.is_string()) {
          e.error = "key '" + a.json_keys[k] + "' holds a list with a non-string";
          return;
        }
        sentences.push_back(s.get<std::string>());
      }
    } else if (it->is_string()) {
      if (a.split_sentences) {
        sentences = mcore::datasets::split_sentences(it->get<std::string>(), a.keep_newlines);
      } else {
        sentences.push_back(it->get<std::string>());
      }
    } else {
      e.error = "key '" + a.json_keys[k] + "' is neither a string nor a list of strings";
      return;
    }
    auto& doc = e.ids[k];
    auto& lens = e.lens[k];
    for (const auto& s : sentences) {
      auto ids = tok.encode(s);
      if (ids.empty()) continue;
      doc.insert(doc.end(), ids.begin(), ids.end());
      lens.push_back(int64_t(ids.size()));
    }
    if (!doc.empty() && a.append_eod) {
      doc.push_back(tok.eod());
      lens.back() += 1;
    }
  }
}

// SIGINT/SIGTERM/SIGHUP: stop after the current batch, so the builders' destructors remove their
// .tmp files and nothing half-written stays behind. A second signal takes the default action.
volatile std::sig_atomic_t g_stop_signal = 0;

void on_stop_signal(int sig) {
  g_stop_signal = sig;
  std::signal(sig, SIG_DFL);
}

void install_stop_handlers() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a read blocked on a pipe returns, and the loop checks
    sigaction(sig, &sa, nullptr);
  }
}

void check_not_stopped() {
  MCORE_CHECK(g_stop_signal == 0)
      << "preprocess_data: interrupted by signal " << int(g_stop_signal)
      << "; no dataset was written (the partial .tmp files are removed)";
}

int run(const Args& a) {
  install_stop_handlers();
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = mcore::tokenizers::build_tokenizer(a.tok);
  const mcore::DType dtype = mcore::datasets::optimal_dtype(tok->vocab_size());
  const std::string level = a.split_sentences ? "sentence" : "document";

  std::ifstream in(a.input, std::ios::binary);
  MCORE_CHECK(in.good()) << "preprocess_data: cannot open --input '" << a.input << "'";

  std::vector<std::unique_ptr<mcore::datasets::IndexedDatasetBuilder>> builders;
  std::vector<std::string> prefixes;
  for (const auto& key : a.json_keys) {
    prefixes.push_back(a.output_prefix + "_" + key + "_" + level);
    builders.push_back(std::make_unique<mcore::datasets::IndexedDatasetBuilder>(
        mcore::datasets::get_bin_path(prefixes.back()), dtype));
  }
  std::cerr << "preprocess_data: " << tok->name() << " (vocab " << tok->vocab_size() << ", "
            << mcore::dtype_name(dtype) << " tokens), " << a.workers << " workers\n";

  const size_t batch = size_t(1024) * size_t(a.workers);
  std::vector<std::string> lines;
  std::vector<int64_t> line_numbers;
  std::vector<Encoded> results;
  int64_t line_no = 0, docs = 0, skipped = 0, bytes = 0, tokens = 0;
  const auto start = std::chrono::steady_clock::now();
  auto progress = [&](bool final) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "%s %lld documents (%.1f docs/s, %.2f MB/s).\n",
                 final ? "Done:" : "Processed", (long long)docs, docs / std::max(s, 1e-9),
                 bytes / std::max(s, 1e-9) / 1024.0 / 1024.0);
  };
  for (;;) {
    lines.clear();
    line_numbers.clear();
    std::string line;
    while (lines.size() < batch && std::getline(in, line)) {
      ++line_no;
      bytes += int64_t(line.size()) + 1;
      // Blank lines (a trailing newline, a separator) carry no document.
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      lines.push_back(std::move(line));
      line_numbers.push_back(line_no);
    }
    check_not_stopped();  // an interrupted read looks like the end of the input
    if (lines.empty()) break;
    results.assign(lines.size(), {});
#pragma omp parallel for schedule(dynamic, 16) num_threads(a.workers)
    for (int64_t i = 0; i < int64_t(lines.size()); ++i) {
      try {
        encode_line(a, *tok, lines[i], results[i]);
      } catch (const std::exception& ex) {
        results[i].error = ex.what();
      }
    }
    for (size_t i = 0; i < lines.size(); ++i) {
      const Encoded& e = results[i];
      if (!e.error.empty()) {
        MCORE_CHECK(a.skip_bad_lines) << a.input << ":" << line_numbers[i] << ": " << e.error
                                      << " (pass --skip-bad-lines to skip such lines)";
        std::fprintf(stderr, "%s:%lld: skipped: %s\n", a.input.c_str(), (long long)line_numbers[i],
                     e.error.c_str());
        ++skipped;
        continue;
      }
      for (size_t k = 0; k < builders.size(); ++k) {
        size_t off = 0;
        for (int64_t len : e.lens[k]) {
          builders[k]->add_item_raw(e.ids[k].data() + off, mcore::DType::I32, len);
          off += size_t(len);
        }
        builders[k]->end_document();
        tokens += int64_t(e.ids[k].size());
      }
      ++docs;
      if (docs % a.log_interval == 0) progress(false);
    }
  }
  check_not_stopped();
  for (size_t k = 0; k < builders.size(); ++k) {
    builders[k]->finalize(mcore::datasets::get_idx_path(prefixes[k]));
  }
  progress(true);
  std::fprintf(stderr,
               "preprocess_data: %lld documents, %lld tokens, %lld bad lines skipped, "
               "%.1f s; wrote",
               (long long)docs, (long long)tokens, (long long)skipped,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  for (const auto& p : prefixes) std::fprintf(stderr, " %s.{bin,idx}", p.c_str());
  std::fprintf(stderr, "\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const mcore::Error& e) {
    const std::string& m = e.message();
    std::fprintf(stderr, "%s%s\n",
                 m.rfind("preprocess_data:", 0) == 0 ? "" : "preprocess_data: ", m.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "preprocess_data: error: %s\n", e.what());
    return 1;
  }
}
