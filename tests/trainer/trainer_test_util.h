// Helpers for the tests that run tools/pretrain_gpt as a user does (alone or under mpirun) and
// read back its JSONL metrics and checkpoints: the tool's path next to the test binary, a shell
// runner that captures output and exit status, the mpirun prefix for a root container on a small
// machine, scratch directories, the per-iteration losses of a run, and a generate check.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <utility>

#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/dist_checkpointing/metadata.h"
#include "mcore/training/jsonl_logger.h"

namespace mcore::training::trainer_test {

namespace fs = std::filesystem;

// build/tools/<name>, found from this test binary's location (build/tests/...).
inline std::string tool(const std::string& name) {
  fs::path exe = fs::read_symlink("/proc/self/exe");
  return (exe.parent_path().parent_path() / "tools" / name).string();
}

struct RunResult {
  int rc = -1;
  std::string output;  // stdout and stderr together
};

inline RunResult run(const std::string& cmd) {
  RunResult r;
  std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// mpirun as root on a small machine, one OpenMP thread per rank.
inline std::string mpirun(int np) {
  return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
         "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none "
         "OMP_NUM_THREADS=1 MCORE_DISTRIBUTED_TIMEOUT_SECONDS=60 mpirun --oversubscribe "
         "--bind-to none -np " +
         std::to_string(np) + " ";
}

// An empty directory under the temp dir, unique to this process and `name`.
inline fs::path fresh_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("mcore_trainer_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// tools/generate loads the checkpoint `ckpt` with the training run's extra `flags` (a NullTokenizer
// of 200 or more tokens among them) and greedily generates `tokens` tokens after '1 2 3'.
inline void expect_generates(const std::string& ckpt, const std::string& flags, int tokens) {
  const RunResult g =
      run("OMP_NUM_THREADS=1 " + tool("generate") + " --load " + ckpt + flags +
          " --prompt '1 2 3' --max-new-tokens " + std::to_string(tokens) + " --greedy");
  ASSERT_EQ(g.rc, 0) << g.output;
  EXPECT_NE(g.output.find("generate: " + std::to_string(tokens) + " tokens"), std::string::npos)
      << g.output;
}

// iteration -> {"lm loss", "grad norm"} from <tb_dir>/metrics.jsonl.
inline std::map<int64_t, std::pair<double, double>> read_losses(const fs::path& tb_dir) {
  std::map<int64_t, std::pair<double, double>> m;
  for (const auto& r : read_jsonl((tb_dir / "metrics.jsonl").string())) {
    if (r.contains("lm loss"))
      m[r.at("iteration").get<int64_t>()] = {r.at("lm loss").get<double>(),
                                             r.at("grad norm").get<double>()};
  }
  return m;
}

// The model tensors (keys "model.*") of the checkpoint `dir`, as global float32 tensors.
inline std::map<std::string, Tensor> model_tensors(const fs::path& dir) {
  std::map<std::string, Tensor> m;
  auto meta = dist_checkpointing::CheckpointMetadata::read(dir.string());
  for (const auto& [key, rec] : meta.tensors) {
    if (key.rfind("model.", 0) != 0) continue;
    m[key] = dist_checkpointing::load_global_tensor(dir.string(), key).to(DType::F32).contiguous();
  }
  return m;
}

}  // namespace mcore::training::trainer_test
