// Helpers shared by the tools/convert_checkpoint tests: the transformers Python and its reference
// script (tests/tools/hf_reference.py), the tool's command line, running the script's `check`
// over a jobs file, and mcore's logits from a converted checkpoint.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "mcore/hf_checkpoint/checkpoint_model.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::convert_test {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline std::string hf_python() {
  const char* env = std::getenv("MCORE_HF_PYTHON");
  return env ? env : MCORE_HF_PYTHON_DEFAULT;
}

inline std::string script() {
  return (fs::path(__FILE__).parent_path() / "hf_reference.py").string();
}

inline std::string convert(const std::string& flags) {
  return "OMP_NUM_THREADS=2 " + training::trainer_test::tool("convert_checkpoint") + " " + flags;
}

// The checks every converter test starts with: the transformers Python exists, the suite's
// `hf_reference.py make` run (`make`, null when it could not start) succeeded, and the tool is
// built. Call from SetUp (a fatal failure there skips the test body).
inline void require_reference(const training::trainer_test::RunResult* make) {
  ASSERT_FALSE(hf_python().empty())
      << "no transformers Python: run scripts/setup (it creates .venv-hf with transformers), "
         "then re-run cmake, or set MCORE_HF_PYTHON";
  ASSERT_TRUE(fs::exists(hf_python()))
      << "MCORE_HF_PYTHON " << hf_python() << " does not exist: run scripts/setup";
  ASSERT_TRUE(make && make->rc == 0) << "hf_reference.py make failed:\n"
                                     << (make ? make->output : "");
  ASSERT_TRUE(fs::exists(training::trainer_test::tool("convert_checkpoint")))
      << "convert_checkpoint is not built";
}

// Runs hf_reference.py `check` over `jobs` (written to dir/jobs.json); fails with its report.
inline void check_in_transformers(const fs::path& dir, const json& jobs) {
  const fs::path f = dir / "jobs.json";
  std::ofstream(f) << jobs.dump(1);
  const auto r = training::trainer_test::run(hf_python() + " " + script() + " check " + f.string());
  ASSERT_EQ(r.rc, 0) << r.output;
}

// mcore's logits (fp32, TP = 1) for `ids` from the checkpoint under `load`, the first `vocab`
// columns (the rest are padding rows).
inline Tensor mcore_logits(const fs::path& load, const Tensor& ids, int64_t vocab) {
  hf_checkpoint::CheckpointModel cm = hf_checkpoint::load_checkpoint_model(load.string(), false);
  NoGradGuard no_grad;
  Tensor logits = cm.model->forward(ids);
  EXPECT_GE(logits.size(2), vocab);
  return logits.narrow(2, 0, vocab).contiguous();
}

}  // namespace mcore::convert_test
