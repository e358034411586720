#include "mcore/training/checkpointing.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "mcore/base/error.h"
#include "mcore/base/rng_state.h"
#include "mcore/comm/distributed.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"

namespace mcore::training {
namespace {

namespace dcp = dist_checkpointing;

struct Layout {
  int tp_rank = 0, tp_size = 1, dp_rank = 0;
  int edp_rank = 0;  // expert-data-parallel rank: expert weights are replicated over that group
  // Loading only: > 1 when the checkpoint is from before kStridedShardsSection and was saved
  // under this TP size, with each rank's stride-2 tensor stored whole as its contiguous shard.
  int64_t legacy_strided_tp = 0;
};

// Marks checkpoints that save partition_stride parameters block by block (append_shards).
constexpr const char* kStridedShardsSection = "strided_shards_global";

Layout current_layout() {
  Layout l;
  if (parallel_state::model_parallel_is_initialized()) {
    l.tp_rank = parallel_state::get_tensor_model_parallel_rank();
    l.tp_size = parallel_state::get_tensor_model_parallel_world_size();
    // One writer per replica set: context-parallel ranks hold the same weights too.
    l.dp_rank = parallel_state::get_data_parallel_rank(/*with_context_parallel=*/true);
    l.edp_rank = parallel_state::get_expert_data_parallel_rank();
  }
  return l;
}

// Whether this rank writes `param` (or its optimizer state) as a whole tensor: rank 0 of the
// ranks holding the same copy. Expert weights (allreduce = false) are whole on each rank and
// replicated over the expert-data-parallel group alone; the others over TP and DP. The last
// stage's tied embedding copy duplicates the first stage's and is never written.
bool writes_whole(const Layout& l, const nn::Parameter& param) {
  if (param.shared && param.shared_embedding) return false;
  return param.allreduce ? l.tp_rank == 0 && l.dp_rank == 0 : l.edp_rank == 0;
}

// The name a parameter is saved under. The last pipeline stage's copy of a tied word
// embedding (`shared`) is the embedding itself: it is saved once, by the first stage, and loaded
// from the embedding's entry, so checkpoints do not depend on the pipeline layout.
constexpr const char* kWordEmbeddingName = "embedding.word_embeddings.weight";
std::string checkpoint_name(const std::string& name, const nn::Parameter& param) {
  return param.shared && param.shared_embedding ? kWordEmbeddingName : name;
}

// The pieces of a tensor laid out like `param`, appended to `out`: split along its partition dim
// over TP ranks, otherwise replicated over TP; replicated over DP always. Only one rank of each
// replica set writes a piece. A parameter with partition_stride s (SwiGLU's fused [gate; up]
// fc1: s = 2) holds s blocks, block j being its slice of the global tensor's j-th part, so each
// block goes to its own place: rank r of tp holds fragment j * tp + r of s * tp (Megatron's
// apply_swiglu_sharded_factory). Saved as one contiguous shard, [gate_0; up_0; gate_1; up_1]
// would pass for the global [gate; up] and load wrongly under any other TP size.
void append_shards(std::vector<dcp::ShardedTensor>& out, const std::string& key, const Tensor& data,
                   const nn::Parameter& param, const Layout& l) {
  // The tied copy on the last stage duplicates the first stage's embedding: never written.
  const int64_t copy = (param.shared && param.shared_embedding) ? 1 : 0;
  const bool legacy = l.legacy_strided_tp > 1 && param.partition_stride > 1;
  // Expert weights are whole on each rank (no expert tensor parallelism).
  if (!param.allreduce ||
      !(param.tensor_model_parallel && param.partition_dim >= 0 && (l.tp_size > 1 || legacy))) {
    out.push_back(dcp::ShardedTensor::whole(key, data, writes_whole(l, param) ? 0 : 1));
    return;
  }
  NoGradGuard no_grad;  // the pieces are views for copying in and out, not graph nodes
  const int64_t dim = param.partition_dim, stride = std::max(1, param.partition_stride);
  const int64_t block = data.size(dim) / stride;
  MCORE_CHECK(block * stride == data.size(dim))
      << "checkpoint: \"" << key << "\" has " << data.size(dim) << " rows along dim " << dim
      << ", not a multiple of its partition stride " << stride;
  for (int64_t j = 0; j < stride; ++j) {
    Tensor piece = stride == 1 ? data : data.narrow(dim, j * block, block);
    dcp::ShardedTensor st = dcp::ShardedTensor::from_rank_offsets(
        key, piece, {{dim, j * l.tp_size + l.tp_rank, stride * l.tp_size}}, l.dp_rank + copy);
    if (stride == 1 || l.legacy_strided_tp <= 1) {
      out.push_back(std::move(st));
      continue;
    }
    // A legacy checkpoint holds global row i of block j at its saving rank r = i / b (b = rows
    // per block per rank there), row r * stride * b + j * b + i % b. Request the piece in runs
    // that stay within one saving rank's block.
    const int64_t rows = st.global_shape[dim] / stride, b = rows / l.legacy_strided_tp;
    MCORE_CHECK(b * l.legacy_strided_tp == rows)
        << "checkpoint: \"" << key << "\" has " << rows << " rows per block, not divisible by "
        << "the tensor parallel size " << l.legacy_strided_tp << " it was saved under";
    const int64_t first = st.global_offset[dim] - j * rows;  // this piece's first row in block j
    for (int64_t i = first; i < first + block;) {
      const int64_t run = std::min(first + block, (i / b + 1) * b) - i;
      dcp::ShardedTensor part = st;
      part.data = piece.narrow(dim, i - first, run);
      part.global_offset[dim] = (i / b) * stride * b + j * b + i % b;
      out.push_back(std::move(part));
      i += run;
    }
  }
}

// Checkpoints from before kStridedShardsSection saved stride-2 parameters rank by rank: the TP
// size they were saved under when that matters (> 1), else 0.
int64_t legacy_strided_tp(const dcp::CheckpointMetadata& meta) {
  if (meta.sections.value(kStridedShardsSection, false)) return 0;
  const int64_t tp =
      meta.parallel_layout.value("tensor_model_parallel_size", static_cast<int64_t>(1));
  return tp > 1 ? tp : 0;
}

constexpr const char* kOptimizerStatePrefix = "optimizer.state.";
// The optimizer state that holds a bf16/fp16 parameter's fp32 main copy (the precise value of
// the weight, of which the model's bf16/fp16 tensor is a rounding).
constexpr const char* kFp32ParamState = "fp32_param";

// "optimizer.state.<state>.<param name>" -> param name.
std::string param_of_optimizer_key(const std::string& key) {
  const std::string prefix = kOptimizerStatePrefix;
  MCORE_CHECK(key.rfind(prefix, 0) == 0) << "unexpected optimizer state key '" << key << "'";
  const size_t dot = key.find('.', prefix.size());
  MCORE_CHECK(dot != std::string::npos) << "unexpected optimizer state key '" << key << "'";
  return key.substr(dot + 1);
}

std::map<std::string, nn::ParameterPtr> params_by_name(const NamedParameters& model) {
  std::map<std::string, nn::ParameterPtr> m;
  for (auto& [name, p] : model) {
    MCORE_CHECK(m.emplace(name, p).second)
        << "checkpoint: two parameters are named '" << name << "' (model chunks overlap?)";
  }
  return m;
}

std::vector<dcp::ShardedTensor> model_shards(const NamedParameters& model, const Layout& l) {
  std::vector<dcp::ShardedTensor> shards;
  for (auto& [name, p] : model)
    append_shards(shards, "model." + checkpoint_name(name, *p), *p, *p, l);
  return shards;
}

// "optimizer.state.<state>.<param name>" with the parameter's checkpoint name.
std::string optimizer_checkpoint_key(const std::string& key, const nn::Parameter& param) {
  const std::string name = param_of_optimizer_key(key);
  return key.substr(0, key.size() - name.size()) + checkpoint_name(name, param);
}

std::vector<dcp::ShardedTensor> optimizer_shards(const NamedParameters& model,
                                                 const optimizer::OptimizerStateDict& sd,
                                                 const Layout& l) {
  auto params = params_by_name(model);
  std::vector<dcp::ShardedTensor> shards;
  for (const auto& [key, t] : sd.tensors) {
    auto it = params.find(param_of_optimizer_key(key));
    MCORE_CHECK(it != params.end())
        << "optimizer state '" << key << "' belongs to no parameter of the model";
    append_shards(shards, optimizer_checkpoint_key(key, *it->second), t, *it->second, l);
  }
  return shards;
}

std::string step_key(const std::string& name, const nn::Parameter& param) {
  return "optimizer.param_step." + checkpoint_name(name, param);
}

// Each parameter's optimizer step count as a one-element tensor, written once per replica set.
std::vector<dcp::ShardedTensor> step_shards(const NamedParameters& model,
                                            const optimizer::OptimizerStateDict& sd,
                                            const Layout& l) {
  std::vector<dcp::ShardedTensor> shards;
  if (!sd.meta.contains("step")) return shards;
  for (const auto& [name, p] : model) {
    if (!sd.meta.at("step").contains(name)) continue;
    Tensor t = from_vector<int64_t>({sd.meta.at("step").at(name).get<int64_t>()});
    shards.push_back(dcp::ShardedTensor::whole(step_key(name, *p), t, writes_whole(l, *p) ? 0 : 1));
  }
  return shards;
}

std::string fp32_param_key(const std::string& checkpoint_param_name) {
  return std::string(kOptimizerStatePrefix) + kFp32ParamState + "." + checkpoint_param_name;
}

// MegatronOptimizer keeps an fp32 main copy of exactly the bf16/fp16 parameters.
bool has_fp32_main_param(const nn::Parameter& p) {
  return p.dtype() == DType::BF16 || p.dtype() == DType::F16;
}

// Which checkpoint directory to load from, or nullopt.
std::optional<std::string> checkpoint_to_load(const std::string& load_dir) {
  if (!std::filesystem::exists(load_dir)) return std::nullopt;
  if (auto latest = dcp::read_latest_checkpoint_dir(load_dir)) {
    const std::string dir = *latest;  // already save_dir/iter_XXXXXXX
    // Rank 0 checks every file once, for an early error naming the checkpoint; each rank's load
    // checks the files it reads again, so the other ranks need not read the whole checkpoint.
    const bool verify = !comm::is_initialized() || comm::get_rank() == 0;
    try {
      if (verify) dcp::verify_checkpoint(dir);
    } catch (const Error& e) {
      MCORE_CHECK(false) << "--load " << load_dir << ": the latest checkpoint (" << dir
                         << ", named by " << dcp::kLatestFileName
                         << ") is not usable: " << e.what();
    }
    return dir;
  }
  if (auto found = dcp::find_latest_valid_checkpoint(load_dir)) return found->dir;
  return std::nullopt;
}

}  // namespace

std::string save_trainer_checkpoint(const Arguments& args, const NamedParameters& model,
                                    const optimizer::MegatronOptimizer* optimizer,
                                    const optimizer::OptimizerParamScheduler* scheduler,
                                    const TrainerState& state) {
  MCORE_CHECK(args.save) << "save_trainer_checkpoint: --save is not set";
  const Layout l = current_layout();
  std::vector<dcp::ShardedTensor> shards = model_shards(model, l);
  dcp::CheckpointCommon common;
  common.parallel_layout = {{"tensor_model_parallel_size", args.tensor_model_parallel_size},
                            {"pipeline_model_parallel_size", args.pipeline_model_parallel_size},
                            {"data_parallel_size", args.data_parallel_size},
                            {"world_size", args.world_size}};
  auto& s = common.sections;
  s["iteration"] = state.iteration;
  s["consumed_train_samples"] = state.consumed_train_samples;
  s["consumed_valid_samples"] = state.consumed_valid_samples;
  s["num_skipped_iterations"] = state.num_skipped_iterations;
  s["num_nan_iterations"] = state.num_nan_iterations;
  s["checkpoint_version"] = 3.0;
  s[kStridedShardsSection] = true;
  s["args"] = format_args(args);
  if (!args.no_save_rng) {
    const RngState rng = get_rng_state();
    s["rng_state"] = {{"seed", rng.seed}, {"step", rng.step}};
  }
  if (scheduler) s["opt_param_scheduler"] = scheduler->state_dict();
  optimizer::OptimizerStateDict osd;
  if (optimizer && !args.no_save_optim) {
    osd = optimizer->state_dict();
    s["optimizer"] = osd.meta;
    auto os = optimizer_shards(model, osd, l);
    shards.insert(shards.end(), os.begin(), os.end());
    auto ss = step_shards(model, osd, l);
    shards.insert(shards.end(), ss.begin(), ss.end());
  }
  comm::ProcessGroupPtr group = comm::is_initialized() ? comm::world() : nullptr;
  return dcp::save_checkpoint(*args.save, state.iteration, shards, common, group);
}

std::optional<TrainerState> load_trainer_checkpoint(const Arguments& args,
                                                    const NamedParameters& model,
                                                    optimizer::MegatronOptimizer* optimizer,
                                                    optimizer::OptimizerParamScheduler* scheduler) {
  if (!args.load) return std::nullopt;
  std::optional<std::string> dir = checkpoint_to_load(*args.load);
  if (!dir) {
    MCORE_CHECK(!args.exit_on_missing_checkpoint)
        << "--exit-on-missing-checkpoint: no checkpoint found under --load " << *args.load;
    return std::nullopt;
  }
  const dcp::CheckpointMetadata meta = dcp::CheckpointMetadata::read(*dir);
  const nlohmann::json& s = meta.sections;
  Layout l = current_layout();
  const bool load_optim = optimizer && !args.no_load_optim && !args.finetune;
  const bool load_rng = !args.no_load_rng && !args.finetune;
  l.legacy_strided_tp = legacy_strided_tp(meta);

  // Model weights saved in another precision (a --bf16 checkpoint resumed in fp32, an fp32 one
  // in bf16, bf16 <-> fp16) are cast on load, as torch's load_state_dict copies. A bf16/fp16
  // run's optimizer state holds the fp32 master value of each weight; when that state is loaded
  // the weight is cast from it rather than from its saved rounding, so that the run continues
  // from the values the optimizer was updating.
  std::vector<dcp::ShardedTensor> requests;
  std::optional<std::pair<DType, DType>> converted;  // saved, this run's (for the log)
  bool weights_from_fp32_params = false;
  for (const auto& [name, p] : model) {
    const std::string ckpt_name = checkpoint_name(name, *p);
    std::string key = "model." + ckpt_name;
    auto rec = meta.tensors.find(key);
    if (rec != meta.tensors.end() && rec->second.dtype != p->dtype()) {
      converted = {rec->second.dtype, p->dtype()};
      if (load_optim && meta.tensors.count(fp32_param_key(ckpt_name))) {
        key = fp32_param_key(ckpt_name);
        weights_from_fp32_params = true;
      }
    }
    append_shards(requests, key, *p, *p, l);
  }
  std::vector<Tensor> steps;
  std::vector<std::string> step_names;
  optimizer::OptimizerStateDict osd;
  bool fp32_params_from_weights = false;
  if (load_optim) {
    MCORE_CHECK(s.contains("optimizer"))
        << "checkpoint " << *dir << " holds no optimizer state (saved with --no-save-optim?); "
        << "pass --no-load-optim to load only the model";
    // The optimizer allocates its state lazily, so the keys come from the checkpoint: for every
    // kind of state saved ("exp_avg", ...) and every local parameter, one receiving tensor of the
    // parameter's local shape when the checkpoint holds that state for it. load_checkpoint fills
    // the tensors in place, so osd holds the loaded values.
    std::set<std::string> states;
    const std::string prefix = kOptimizerStatePrefix;
    for (const auto& [key, rec] : meta.tensors) {
      if (key.rfind(prefix, 0) != 0) continue;
      const std::string name = param_of_optimizer_key(key);
      states.insert(key.substr(prefix.size(), key.size() - prefix.size() - name.size() - 1));
    }
    for (const auto& state_name : states) {
      for (const auto& [name, p] : model) {
        // This run keeps no main copy of an fp32 parameter: the saved one became its weight.
        if (state_name == kFp32ParamState && !has_fp32_main_param(*p)) continue;
        const std::string key = prefix + state_name + "." + name;
        auto rec = meta.tensors.find(prefix + state_name + "." + checkpoint_name(name, *p));
        if (rec == meta.tensors.end()) continue;
        osd.tensors[key] = zeros(p->shape(), rec->second.dtype);
      }
    }
    osd.meta = s.at("optimizer");
    auto os = optimizer_shards(model, osd, l);
    requests.insert(requests.end(), os.begin(), os.end());
    // A checkpoint of an fp32 run has no main copies: this bf16/fp16 run's come from the saved
    // fp32 weights themselves, not from their rounding to this run's precision.
    for (const auto& [name, p] : model) {
      const std::string key = prefix + kFp32ParamState + "." + name;
      if (!has_fp32_main_param(*p) || osd.tensors.count(key)) continue;
      Tensor main = zeros(p->shape(), DType::F32);
      osd.tensors[key] = main;
      append_shards(requests, "model." + checkpoint_name(name, *p), main, *p, l);
      fp32_params_from_weights = true;
    }
    // Per-parameter step counts: saved by whichever rank holds the parameter (the metadata's
    // copy comes from rank 0 alone, which under pipeline parallelism lacks other stages').
    for (const auto& [name, p] : model) {
      const std::string key = step_key(name, *p);
      if (!meta.tensors.count(key)) continue;
      steps.push_back(zeros({1}, DType::I64));
      requests.push_back(dcp::ShardedTensor::whole(key, steps.back()));
      step_names.push_back(name);
    }
  }
  {
    NoGradGuard no_grad;
    dcp::LoadOptions options;
    options.allow_dtype_cast = true;
    dcp::load_checkpoint(*dir, requests, options);
  }
  if (load_optim) {
    for (size_t i = 0; i < steps.size(); ++i)
      osd.meta["step"][step_names[i]] = steps[i].data<int64_t>()[0];
    optimizer->load_state_dict(osd);
  } else if (optimizer) {
    optimizer->reload_model_params();  // fp32 main params from the loaded model weights
  }
  const bool rank0 = comm::is_initialized() && comm::get_rank() == 0;
  if (converted && rank0) {
    std::printf(" checkpoint parameters are %s, this run's %s: converted on load%s%s\n",
                dtype_name(converted->first), dtype_name(converted->second),
                weights_from_fp32_params ? " from the checkpoint's fp32 main params" : "",
                fp32_params_from_weights ? "; fp32 main params from the saved fp32 weights" : "");
    std::fflush(stdout);
  }

  TrainerState st;
  if (!args.finetune) {
    st.iteration = s.value("iteration", meta.iteration);
    st.consumed_train_samples = s.value("consumed_train_samples", int64_t{0});
    st.consumed_valid_samples = s.value("consumed_valid_samples", int64_t{0});
    st.num_skipped_iterations = s.value("num_skipped_iterations", int64_t{0});
    st.num_nan_iterations = s.value("num_nan_iterations", int64_t{0});
    if (scheduler && load_optim && s.contains("opt_param_scheduler")) {
      scheduler->load_state_dict(s.at("opt_param_scheduler"));
    }
  }
  if (load_rng) {
    MCORE_CHECK(s.contains("rng_state"))
        << "checkpoint " << *dir << " holds no RNG state; pass --no-load-rng";
    RngState rng;
    rng.seed = s.at("rng_state").at("seed").get<uint64_t>();
    rng.step = s.at("rng_state").at("step").get<uint64_t>();
    set_rng_state(rng);
  }
  if (rank0) {
    std::printf(" successfully loaded checkpoint from %s [ t %d, p %d ] at iteration %lld\n",
                dir->c_str(), static_cast<int>(args.tensor_model_parallel_size),
                static_cast<int>(args.pipeline_model_parallel_size),
                static_cast<long long>(st.iteration));
    std::fflush(stdout);
  }
  return st;
}

std::optional<int64_t> checkpoint_padded_vocab_size(const Arguments& args) {
  if (!args.load || !std::filesystem::exists(*args.load)) return std::nullopt;
  // Metadata only: the load that follows verifies the files it reads; verifying every shard
  // here as well would read the whole checkpoint once more on every rank.
  std::optional<std::string> dir = dcp::read_latest_checkpoint_dir(*args.load);
  if (!dir) dir = checkpoint_to_load(*args.load);
  if (!dir || !std::filesystem::exists(std::filesystem::path(*dir) / "metadata.json"))
    return std::nullopt;
  const dcp::CheckpointMetadata meta = dcp::CheckpointMetadata::read(*dir);
  auto it = meta.tensors.find(std::string("model.") + kWordEmbeddingName);
  if (it == meta.tensors.end() || it->second.global_shape.empty()) return std::nullopt;
  return it->second.global_shape[0];
}

void lock_save_directory(const std::string& save_dir) {
  static int held_fd = -1;  // held for the life of the process; the kernel drops it at exit
  if (held_fd >= 0) return;
  std::error_code ec;
  std::filesystem::create_directories(save_dir, ec);
  const std::string path = (std::filesystem::path(save_dir) / ".mcore_save.lock").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MCORE_CHECK(fd >= 0) << "--save " << save_dir << ": cannot create " << path << ": "
                       << std::strerror(errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    MCORE_CHECK(err != EWOULDBLOCK)
        << "--save " << save_dir << " is in use by another running job (it holds " << path
        << "); two jobs saving to one directory would delete and corrupt each other's "
           "checkpoints. Give this run its own --save directory";
    MCORE_FAIL() << "--save " << save_dir << ": cannot lock " << path << ": " << std::strerror(err);
  }
  held_fd = fd;
}

std::vector<dcp::ShardedTensor> model_sharded_tensors(const NamedParameters& model) {
  return model_shards(model, current_layout());
}

std::vector<dcp::ShardedTensor> model_load_requests(const NamedParameters& model,
                                                    const dcp::CheckpointMetadata& meta) {
  Layout l = current_layout();
  l.legacy_strided_tp = legacy_strided_tp(meta);
  std::vector<dcp::ShardedTensor> requests;
  for (const auto& [name, p] : model)
    append_shards(requests, "model." + checkpoint_name(name, *p), *p, *p, l);
  return requests;
}

}  // namespace mcore::training
