// The weights of a Hugging Face model as mcore's GPTModel parameters and back: names, fused
// layouts and padding.
//
//   Hugging Face                         mcore (Megatron's names)
//   q_proj, k_proj, v_proj (or GPT-2's   self_attention.linear_qkv: per query group g, the
//   c_attn = [q; k; v])                  group's query heads, then its key head, then its value
//                                        head (Megatron's fused layout; biases alike)
//   gate_proj, up_proj                   mlp.linear_fc1 = [gate; up]
//   Mixtral's block_sparse_moe.gate      mlp.router [experts, h]
//   block_sparse_moe.experts.<e>.w1, w3  mlp.experts.local_experts.<e>.linear_fc1 = [w1; w3]
//     (gate, up), w2 (down)              (as the dense SwiGLU), .linear_fc2 = w2
//   GPT-2 Conv1D weights [in, out]       nn.Linear's [out, in]: transposed both ways
//   embed_tokens / wte [V, h]            word_embeddings [Vp, h]: zero rows V..Vp added on
//                                        import, dropped on export (Vp: V padded to a multiple
//                                        of --make-vocab-size-divisible-by)
//
// HF LLaMA's q/k projections already use the rotate-half RoPE convention that mcore applies, so
// no permutation of head channels is needed (unlike Meta's original checkpoints).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mcore/hf_checkpoint/hf_config.h"
#include "mcore/hf_checkpoint/hf_files.h"
#include "mcore/tensor/tensor.h"

namespace mcore::hf_checkpoint {

// GPTModel's state dict (parameter name -> tensor, in the files' dtype) from the files. Every
// tensor the model needs must be present with the shape config.json implies, and every tensor in
// the files must be used (GPT-2's attention-mask buffers and LLaMA's rotary inv_freq, which
// older checkpoints hold, are skipped); errors name the tensor.
std::map<std::string, Tensor> import_weights(const HFModel& model, const HFWeightFiles& files);

// Warnings for values the conversion does not keep: NaN/Inf in the files' weights, and finite
// values that overflow to Inf when cast to `params_dtype` (fp16's largest is 65504). One per
// parameter, naming it.
std::vector<std::string> weight_value_warnings(const std::map<std::string, Tensor>& state,
                                               DType params_dtype);

// The Hugging Face tensors (names as save_pretrained writes them) from GPTModel's state dict.
std::vector<std::pair<std::string, Tensor>> export_weights(
    const HFModel& model, const std::map<std::string, Tensor>& state);

}  // namespace mcore::hf_checkpoint
