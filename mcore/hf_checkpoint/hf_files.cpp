#include "mcore/hf_checkpoint/hf_files.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include <unistd.h>

#include "mcore/base/error.h"
#include "mcore/base/file_io.h"

namespace mcore::hf_checkpoint {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
namespace dcp = dist_checkpointing;

json parse_json_file(const fs::path& p, const std::string& what) {
  MCORE_CHECK(fs::is_regular_file(p)) << what << " " << p.string() << " does not exist";
  try {
    return json::parse(read_file(p.string()));
  } catch (const json::exception& e) {
    MCORE_FAIL() << what << " " << p.string() << " is not valid JSON: " << e.what();
  }
  return json();  // not reached: MCORE_FAIL throws
}

}  // namespace

json read_hf_config(const std::string& dir) {
  MCORE_CHECK(fs::is_directory(dir)) << "Hugging Face model directory " << dir << " does not exist";
  return parse_json_file(fs::path(dir) / kConfigFileName, "Hugging Face config");
}

HFWeightFiles::HFWeightFiles(const std::string& dir) : dir_(dir) {
  const fs::path single = fs::path(dir) / kWeightsFileName;
  const fs::path index = fs::path(dir) / kWeightsIndexFileName;
  std::vector<std::string> files;
  std::map<std::string, std::string> weight_map;  // from the index: name -> file
  if (fs::exists(index)) {
    const json j = parse_json_file(index, "weights index");
    MCORE_CHECK(j.contains("weight_map") && j.at("weight_map").is_object())
        << "weights index " << index.string() << " has no \"weight_map\" object";
    std::set<std::string> unique;
    for (const auto& [name, file] : j.at("weight_map").items()) {
      MCORE_CHECK(file.is_string() && file.get<std::string>().find('/') == std::string::npos)
          << "weights index " << index.string() << ": tensor \"" << name
          << "\" maps to a bad file name " << file.dump();
      weight_map[name] = file.get<std::string>();
      if (unique.insert(file.get<std::string>()).second) files.push_back(file);
    }
  } else if (fs::exists(single)) {
    files.push_back(kWeightsFileName);
  } else {
    bool has_bin = fs::exists(fs::path(dir) / "pytorch_model.bin") ||
                   fs::exists(fs::path(dir) / "pytorch_model.bin.index.json");
    MCORE_FAIL() << "Hugging Face model directory " << dir << " has neither " << kWeightsFileName
                 << " nor " << kWeightsIndexFileName
                 << (has_bin ? " (it holds PyTorch .bin weights: re-save the model with "
                               "save_pretrained(dir, safe_serialization=True))"
                             : "");
  }
  for (const std::string& f : files) {
    const fs::path p = fs::path(dir) / f;
    MCORE_CHECK(fs::is_regular_file(p)) << "weights file " << p.string() << " does not exist"
                                        << (weight_map.empty() ? "" : " (listed by the index)");
    readers_.push_back(std::make_unique<dcp::SafetensorsReader>(p.string()));
    const dcp::SafetensorsReader* r = readers_.back().get();
    for (const dcp::SafetensorsEntry& e : r->entries()) {
      auto [it, fresh] = where_.emplace(e.name, r);
      MCORE_CHECK(fresh) << "tensor \"" << e.name << "\" is in both " << it->second->path()
                         << " and " << r->path();
    }
  }
  // The index and the shards must agree, or a tensor could be silently taken from nowhere.
  for (const auto& [name, file] : weight_map) {
    auto it = where_.find(name);
    MCORE_CHECK(it != where_.end() && fs::path(it->second->path()).filename() == file)
        << "weights index " << index.string() << " lists tensor \"" << name << "\" in " << file
        << ", which does not hold it";
  }
}

std::vector<std::string> HFWeightFiles::names() const {
  std::vector<std::string> v;
  for (const auto& [name, r] : where_) v.push_back(name);
  return v;
}

const dcp::SafetensorsEntry& HFWeightFiles::entry(const std::string& name) const {
  auto it = where_.find(name);
  MCORE_CHECK(it != where_.end()) << "Hugging Face model " << dir_ << " has no tensor \"" << name
                                  << "\"";
  return it->second->entry(name);
}

Tensor HFWeightFiles::load(const std::string& name) const {
  entry(name);  // the error naming the tensor
  return where_.at(name)->load(name);
}

std::string normalized_dir(const std::string& dir) {
  fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  while (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p.string();
}

std::string make_staging_dir(const std::string& out_dir) {
  const fs::path out(out_dir);
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  MCORE_CHECK(!ec) << "cannot create " << out.parent_path().string() << ": " << ec.message();
  const std::string staging = out_dir + ".tmp-" + std::to_string(::getpid());
  const bool created = fs::create_directory(staging, ec);
  MCORE_CHECK(created && !ec) << "cannot create the staging directory " << staging << ": "
                              << (ec ? ec.message()
                                     : "it exists (remove it if no conversion "
                                       "is running)");
  return staging;
}

void write_hf_directory(const std::string& out_dir, const std::map<std::string, json>& json_files,
                        const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::vector<std::pair<std::string, std::string>>& copies) {
  MCORE_CHECK(!fs::exists(out_dir) || (fs::is_directory(out_dir) && fs::is_empty(out_dir)))
      << "--save-hf " << out_dir << " exists and is not an empty directory; choose a new one";
  const std::string tmp = make_staging_dir(out_dir);
  std::error_code ec;
  try {
    dcp::save_safetensors((fs::path(tmp) / kWeightsFileName).string(), tensors, {{"format", "pt"}});
    for (const auto& [name, j] : json_files) {
      FileWriter w((fs::path(tmp) / name).string());
      w.write(j.dump(2) + "\n");
      w.close();
    }
    for (const auto& [from, name] : copies) {
      fs::copy_file(from, fs::path(tmp) / name, ec);
      MCORE_CHECK(!ec) << "cannot copy " << from << " into " << tmp << ": " << ec.message();
    }
    fsync_directory(tmp);
    if (fs::exists(out_dir)) fs::remove(out_dir);  // empty, checked above
    MCORE_CHECK(std::rename(tmp.c_str(), out_dir.c_str()) == 0)
        << "cannot rename " << tmp << " to " << out_dir << ": " << std::strerror(errno);
    const fs::path parent = fs::absolute(out_dir).parent_path();
    fsync_directory(parent.string());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace mcore::hf_checkpoint
