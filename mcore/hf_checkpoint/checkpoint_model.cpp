#include "mcore/hf_checkpoint/checkpoint_model.h"

#include <vector>

#include "mcore/base/error.h"
#include "mcore/comm/local_backend.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/training/checkpoint_args.h"
#include "mcore/training/checkpointing.h"
#include "mcore/training/training.h"

namespace mcore::hf_checkpoint {
namespace {

namespace dcp = dist_checkpointing;

// Saved values beyond the model shape that the export reads: the dropout rates and the
// load-balancing loss coefficient go into config.json, and --mock-data without a tokenizer
// means NullTokenizer. (--use-checkpoint-args restores none of them: they are training flags.)
void read_extra_saved_args(const std::map<std::string, std::string>& saved,
                           training::Arguments& a) {
  auto number = [&](const char* dest, double& field) {
    auto it = saved.find(dest);
    if (it == saved.end()) return;
    try {
      field = std::stod(it->second);
    } catch (const std::exception&) {
      MCORE_FAIL() << "saved argument " << dest << " = '" << it->second << "' is not a number";
    }
  };
  number("hidden_dropout", a.hidden_dropout);
  number("attention_dropout", a.attention_dropout);
  number("moe_aux_loss_coeff", a.moe_aux_loss_coeff);
  auto balancing = saved.find("moe_router_load_balancing_type");
  if (balancing != saved.end()) a.moe_router_load_balancing_type = balancing->second;
  auto mock = saved.find("mock_data");
  a.mock_data = mock != saved.end() && mock->second == "True";
}

}  // namespace

CheckpointModel load_checkpoint_model(const std::string& load, bool keep_dtype) {
  CheckpointModel out;
  out.dir = training::checkpoint_dir_to_load(load, /*verify=*/true);
  const dcp::CheckpointMetadata meta = dcp::CheckpointMetadata::read(out.dir);
  out.iteration = meta.iteration;
  if (meta.sections.contains(kHFImportSection) && meta.sections.at(kHFImportSection).is_object())
    out.hf_import = meta.sections.at(kHFImportSection);
  MCORE_CHECK(meta.sections.contains("args") && meta.sections.at("args").is_string())
      << "checkpoint " << out.dir << " has no saved arguments (\"args\" section): it was not "
      << "written by pretrain_gpt or convert_checkpoint, so its model shape is unknown";
  const auto saved = training::parse_saved_args(meta.sections.at("args").get<std::string>());
  std::vector<std::string> argv = {"convert_checkpoint"};
  for (auto& f : training::flags_from_saved_args(saved, training::Arguments{})) argv.push_back(f);
  out.args = training::parse_args(argv);
  read_extra_saved_args(saved, out.args);

  const std::string emb_key = "model.embedding.word_embeddings.weight";
  auto emb = meta.tensors.find(emb_key);
  MCORE_CHECK(emb != meta.tensors.end() && emb->second.global_shape.size() == 2)
      << "checkpoint " << out.dir << " has no word embedding (\"" << emb_key << "\")";
  out.padded_vocab_size = emb->second.global_shape[0];
  out.args.padded_vocab_size = out.padded_vocab_size;

  training::Arguments a = out.args;
  auto dtype = saved.find("params_dtype");
  if (keep_dtype && dtype != saved.end() && dtype->second.rfind("torch.", 0) == 0)
    a.params_dtype = dtype->second.substr(6);
  a.hidden_dropout = 0.0;
  a.attention_dropout = 0.0;
  a.tensor_model_parallel_size = 1;
  a.pipeline_model_parallel_size = 1;
  a.sequence_parallel = false;
  transformer::TransformerConfig config = training::transformer_config_from_args(a);
  config.perform_initialization = false;  // every weight comes from the checkpoint
  out.dtype = config.params_dtype;
  const int64_t max_seq = a.max_position_embeddings.value_or(a.seq_length.value_or(0));
  MCORE_CHECK(max_seq > 0) << "checkpoint " << out.dir
                           << ": the saved arguments have neither max_position_embeddings nor "
                              "seq_length";
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = !a.untie_embeddings_and_output_weights;
  o.tp_group = comm::make_local_group();
  out.model = std::make_shared<models::GPTModel>(
      config, transformer::get_gpt_layer_local_spec(a.qk_layernorm), out.padded_vocab_size, max_seq,
      o);

  std::vector<dcp::ShardedTensor> requests =
      training::model_load_requests(out.model->named_parameters(), meta);
  NoGradGuard no_grad;
  dcp::LoadOptions options;
  options.allow_dtype_cast = true;  // keep_dtype = false: bf16/fp16 weights widen exactly
  dcp::LoadResult r = dcp::load_checkpoint(out.dir, requests, options);
  MCORE_CHECK(r.missing_keys.empty())
      << "checkpoint " << out.dir << " lacks " << r.missing_keys.size()
      << " model tensors its saved arguments imply (first: " << r.missing_keys.front() << ")";
  return out;
}

}  // namespace mcore::hf_checkpoint
