// Tokenizer encoding throughput: MB of UTF-8 text per second, documents encoded in parallel
// over T threads (as preprocess_data's workers do). bench/tokenizer_compare.py runs this beside
// Hugging Face tokenizers' encode_batch on the same documents and prints both.
//
//   tokenizer_bench --jsonl FILE [--tokenizer-type T --tokenizer-model F | --vocab-file V
//                   --merge-file M] [--threads 1,2] [--max-mb 8] [--repeat 3]
// Prints one line per thread count: "threads=N mb_per_s=X tokens=Y".
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/tokenizers/tokenizer.h"

int main(int argc, char** argv) {
  try {
    mcore::tokenizers::TokenizerOptions opt;
    opt.tokenizer_type = "HuggingFaceTokenizer";
    std::string jsonl;
    std::vector<int> threads{1, 2};
    double max_mb = 8;
    int repeat = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string f = argv[i], v = argv[i + 1];
      if (f == "--jsonl")
        jsonl = v;
      else if (f == "--tokenizer-type")
        opt.tokenizer_type = v;
      else if (f == "--tokenizer-model")
        opt.tokenizer_model = v;
      else if (f == "--vocab-file")
        opt.vocab_file = v;
      else if (f == "--merge-file")
        opt.merge_file = v;
      else if (f == "--max-mb")
        max_mb = std::stod(v);
      else if (f == "--repeat")
        repeat = std::stoi(v);
      else if (f == "--threads") {
        threads.clear();
        std::stringstream ss(v);
        for (std::string t; std::getline(ss, t, ',');) threads.push_back(std::stoi(t));
      } else {
        MCORE_FAIL() << "tokenizer_bench: unknown argument " << f;
      }
    }
    MCORE_CHECK(!jsonl.empty()) << "tokenizer_bench: --jsonl is required";
    std::ifstream in(jsonl);
    MCORE_CHECK(in.good()) << "tokenizer_bench: cannot open " << jsonl;
    std::vector<std::string> docs;
    size_t bytes = 0;
    for (std::string line; std::getline(in, line) && bytes < max_mb * 1024 * 1024;) {
      docs.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
      bytes += docs.back().size();
    }
    auto tok = mcore::tokenizers::build_tokenizer(opt);
    for (int t : threads) {
      double best = 1e30;
      int64_t tokens = 0;
      for (int r = 0; r < repeat + 1; ++r) {  // the first run warms the per-thread caches
        int64_t count = 0;
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 16) num_threads(t) reduction(+ : count)
        for (int64_t i = 0; i < int64_t(docs.size()); ++i)
          count += int64_t(tok->encode(docs[i]).size());
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0) best = std::min(best, s);
        tokens = count;
      }
      std::printf("threads=%d mb_per_s=%.2f tokens=%lld docs=%zu mb=%.2f\n", t,
                  bytes / best / 1024 / 1024, (long long)tokens, docs.size(),
                  bytes / 1024.0 / 1024.0);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
