// The files of a Hugging Face model directory: config.json and the weights, either one
// model.safetensors or shards model-0000k-of-0000n.safetensors listed by
// model.safetensors.index.json ({"weight_map": {tensor name: file name}}). Reading validates
// every file before it is trusted (the safetensors reader checks header, offsets and sizes) and
// names the file in each error. Writing builds the whole directory under a temporary name and
// renames it into place, so a failed export leaves nothing that looks like a model.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "mcore/dist_checkpointing/safetensors.h"
#include "mcore/tensor/tensor.h"

namespace mcore::hf_checkpoint {

inline constexpr const char* kConfigFileName = "config.json";
inline constexpr const char* kWeightsFileName = "model.safetensors";
inline constexpr const char* kWeightsIndexFileName = "model.safetensors.index.json";

// <dir>/config.json parsed; errors name the file.
nlohmann::json read_hf_config(const std::string& dir);

class HFWeightFiles {
 public:
  // Opens and validates every weights file of `dir` (single or sharded).
  explicit HFWeightFiles(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const dist_checkpointing::SafetensorsEntry& entry(const std::string& name) const;
  // A copy of the tensor; an error naming the tensor and the directory when absent.
  Tensor load(const std::string& name) const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<dist_checkpointing::SafetensorsReader>> readers_;
  std::map<std::string, const dist_checkpointing::SafetensorsReader*> where_;
};

// A directory flag's path in one spelling, absolute and without a trailing separator: "ckpt/"
// and "ckpt" name the same directory, but renaming onto "ckpt/" fails and the staging name
// beside it must not become "ckpt/.tmp-N".
std::string normalized_dir(const std::string& dir);

// Creates and returns a fresh staging directory <out_dir>.tmp-<pid> beside out_dir (the same file
// system, so the final rename is atomic), creating out_dir's parents. The process id keeps a
// user's own "<out_dir>.tmp" (or another conversion's staging) untouched: an existing one is an
// error, never deleted.
std::string make_staging_dir(const std::string& out_dir);

// Writes <out_dir>/model.safetensors (with {"format": "pt"} metadata, as transformers'
// save_pretrained), the JSON files (name -> content: config.json, generation_config.json, ...)
// and copies of files (source path, name in out_dir), under a staging directory first; then
// renames it to out_dir. out_dir (normalized) must not exist or be empty.
void write_hf_directory(const std::string& out_dir,
                        const std::map<std::string, nlohmann::json>& json_files,
                        const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::vector<std::pair<std::string, std::string>>& copies = {});

}  // namespace mcore::hf_checkpoint
