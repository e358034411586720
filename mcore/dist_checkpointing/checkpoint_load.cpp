// Loading: checksum-verified shard files, assembly of each requested slice from the saved shards
// that overlap it (resharding), checkpoint verification and auto-resume discovery.
#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>

#include "mcore/base/crc32c.h"
#include "mcore/base/error.h"
#include "mcore/base/file_io.h"
#include "mcore/base/logging.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/dist_checkpointing/safetensors.h"
#include "mcore/tensor/factory.h"

namespace mcore::dist_checkpointing {
namespace {

namespace fs = std::filesystem;

// Opens each shard file once, after checking its size and CRC-32C against metadata.json.
class ShardFiles {
 public:
  ShardFiles(std::string dir, const CheckpointMetadata& meta) : dir_(std::move(dir)), meta_(meta) {}

  const SafetensorsReader& get(const std::string& file) {
    auto it = open_.find(file);
    if (it != open_.end()) return *it->second;
    auto rec = meta_.files.find(file);
    MCORE_CHECK(rec != meta_.files.end())
        << "checkpoint " << dir_ << ": shard file \"" << file << "\" is not in metadata.json";
    const std::string path = (fs::path(dir_) / file).string();
    MCORE_CHECK(fs::exists(path)) << "checkpoint " << dir_ << " is incomplete: shard file " << path
                                  << " (rank " << rec->second.rank << ") is missing";
    std::shared_ptr<MappedFile> m = MappedFile::open(path);
    MCORE_CHECK(m->size() == rec->second.size)
        << "checkpoint shard file " << path << " has " << m->size() << " bytes but metadata.json "
        << "records " << rec->second.size << (m->size() < rec->second.size ? " (truncated)" : "");
    const uint32_t crc = crc32c(m->data(), m->size());
    MCORE_CHECK(crc == rec->second.crc32c)
        << "checkpoint shard file " << path << " is corrupt: CRC-32C " << crc32c_hex(crc)
        << " but metadata.json records " << crc32c_hex(rec->second.crc32c);
    auto reader = std::make_unique<SafetensorsReader>(std::move(m));
    return *open_.emplace(file, std::move(reader)).first->second;
  }

 private:
  std::string dir_;
  const CheckpointMetadata& meta_;
  std::map<std::string, std::unique_ptr<SafetensorsReader>> open_;
};

// The saved shard as a tensor, checked against what metadata.json says it is.
Tensor shard_tensor(ShardFiles& files, const std::string& dir, const std::string& key,
                    const TensorRecord& t, const ShardRecord& s) {
  const SafetensorsReader& r = files.get(s.file);
  MCORE_CHECK(r.contains(s.name)) << "checkpoint " << dir << ": shard file " << r.path()
                                  << " lacks tensor \"" << s.name << "\" of key \"" << key << "\"";
  const SafetensorsEntry& e = r.entry(s.name);
  MCORE_CHECK(e.dtype == t.dtype && e.shape == s.local_shape)
      << "checkpoint " << dir << ": tensor \"" << s.name << "\" in " << r.path() << " is "
      << dtype_name(e.dtype) << " " << shape_str(e.shape) << " but metadata.json says "
      << dtype_name(t.dtype) << " " << shape_str(s.local_shape);
  return r.view(s.name);
}

// Copies the overlap of saved shard `src` (at src_off) into `dst` (at dst_off); returns the
// number of elements copied.
int64_t copy_overlap(Tensor& dst, const Shape& dst_off, const Tensor& src, const Shape& src_off) {
  Tensor d = dst, s = src;
  for (size_t k = 0; k < dst_off.size(); ++k) {
    const int64_t lo = std::max(dst_off[k], src_off[k]);
    const int64_t hi = std::min(dst_off[k] + dst.shape()[k], src_off[k] + src.shape()[k]);
    if (hi <= lo) return 0;
    d = d.narrow(static_cast<int64_t>(k), lo - dst_off[k], hi - lo);
    s = s.narrow(static_cast<int64_t>(k), lo - src_off[k], hi - lo);
  }
  d.copy_(s);
  return d.numel();
}

bool overlaps(const Shape& ao, const Shape& as, const Shape& bo, const Shape& bs) {
  for (size_t k = 0; k < ao.size(); ++k) {
    if (std::max(ao[k], bo[k]) >= std::min(ao[k] + as[k], bo[k] + bs[k])) return false;
  }
  return true;
}

}  // namespace

LoadResult load_checkpoint(const std::string& checkpoint_dir, std::vector<ShardedTensor>& requests,
                           const LoadOptions& options) {
  NoGradGuard no_grad;
  LoadResult result;
  result.metadata = CheckpointMetadata::read(checkpoint_dir);
  const CheckpointMetadata& meta = result.metadata;
  ShardFiles files(checkpoint_dir, meta);
  std::map<std::string, bool> requested;
  for (ShardedTensor& req : requests) {
    req.validate();
    requested[req.key] = true;
    auto it = meta.tensors.find(req.key);
    if (it == meta.tensors.end()) {
      result.missing_keys.push_back(req.key);
      continue;
    }
    const TensorRecord& t = it->second;
    MCORE_CHECK(t.global_shape == req.global_shape)
        << "checkpoint " << checkpoint_dir << ": tensor \"" << req.key << "\" was saved with "
        << "global shape " << shape_str(t.global_shape) << " but the model asks for "
        << shape_str(req.global_shape) << " (a different model configuration?)";
    MCORE_CHECK(t.dtype == req.data.dtype() || options.allow_dtype_cast)
        << "checkpoint " << checkpoint_dir << ": tensor \"" << req.key << "\" was saved as "
        << dtype_name(t.dtype) << " but is requested as " << dtype_name(req.data.dtype())
        << " (request the saved dtype, or load with LoadOptions::allow_dtype_cast to convert)";
    // Assemble on the CPU, then move in one copy if the destination lives elsewhere.
    Tensor dst = req.data.device().is_cpu() ? req.data : empty(req.data.shape(), req.data.dtype());
    int64_t copied = 0;
    for (const ShardRecord& s : t.shards) {
      if (!overlaps(req.global_offset, req.data.shape(), s.global_offset, s.local_shape)) continue;
      Tensor src = shard_tensor(files, checkpoint_dir, req.key, t, s);
      copied += copy_overlap(dst, req.global_offset, src, s.global_offset);
    }
    MCORE_CHECK(copied == req.data.numel())
        << "checkpoint " << checkpoint_dir << ": the saved shards of \"" << req.key << "\" cover "
        << copied << " of the " << req.data.numel() << " elements requested at offset "
        << shape_str(req.global_offset) << " (metadata.json is inconsistent)";
    if (!dst.is_same(req.data)) req.data.copy_(dst);
  }
  for (const auto& [key, t] : meta.tensors) {
    if (!requested.count(key)) result.unexpected_keys.push_back(key);
  }
  if (options.strict && !result.missing_keys.empty()) {
    std::string list;
    for (size_t i = 0; i < result.missing_keys.size() && i < 10; ++i) {
      list += (i ? ", " : "") + std::string("\"") + result.missing_keys[i] + "\"";
    }
    if (result.missing_keys.size() > 10) list += ", ...";
    MCORE_FAIL() << "checkpoint " << checkpoint_dir << " lacks " << result.missing_keys.size()
                 << " requested tensor(s): " << list
                 << " (saved with a different model or without optimizer state?)";
  }
  return result;
}

Tensor load_global_tensor(const std::string& checkpoint_dir, const std::string& key) {
  CheckpointMetadata meta = CheckpointMetadata::read(checkpoint_dir);
  auto it = meta.tensors.find(key);
  MCORE_CHECK(it != meta.tensors.end())
      << "checkpoint " << checkpoint_dir << " has no tensor \"" << key << "\"";
  std::vector<ShardedTensor> req{
      ShardedTensor::whole(key, empty(it->second.global_shape, it->second.dtype))};
  load_checkpoint(checkpoint_dir, req);
  return req[0].data;
}

void verify_checkpoint(const std::string& checkpoint_dir) {
  MCORE_CHECK(fs::is_directory(checkpoint_dir))
      << "checkpoint directory " << checkpoint_dir << " does not exist";
  CheckpointMetadata meta = CheckpointMetadata::read(checkpoint_dir);
  ShardFiles files(checkpoint_dir, meta);
  for (const auto& [name, f] : meta.files) files.get(name);
  for (const auto& [key, t] : meta.tensors) {
    for (const ShardRecord& s : t.shards) shard_tensor(files, checkpoint_dir, key, t, s);
  }
}

std::optional<std::string> read_latest_checkpoint_dir(const std::string& save_dir) {
  const fs::path p = fs::path(save_dir) / kLatestFileName;
  if (!fs::exists(p)) return std::nullopt;
  std::string text = read_file(p.string());
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text == "release") return (fs::path(save_dir) / "release").string();
  MCORE_CHECK(!text.empty() && text.size() <= 18 &&
              std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
      << p.string() << " holds \"" << text.substr(0, 40)
      << "\", expected an iteration number or \"release\"";
  return get_checkpoint_dir(save_dir, std::stoll(text));
}

std::optional<FoundCheckpoint> find_latest_valid_checkpoint(const std::string& save_dir) {
  if (!fs::is_directory(save_dir)) return std::nullopt;
  static const std::regex kIterDir("iter_([0-9]{7,18})");
  std::vector<FoundCheckpoint> found;
  for (const auto& entry : fs::directory_iterator(save_dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && std::regex_match(name, m, kIterDir)) {
      found.push_back({entry.path().string(), std::stoll(m[1].str())});
    }
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.iteration > b.iteration; });
  for (const FoundCheckpoint& f : found) {
    try {
      verify_checkpoint(f.dir);
      CheckpointMetadata meta = CheckpointMetadata::read(f.dir);
      MCORE_CHECK(meta.iteration == f.iteration)
          << "metadata.json of " << f.dir << " says iteration " << meta.iteration;
      return f;
    } catch (const Error& e) {
      MCORE_LOG(WARNING) << "auto-resume: skipping checkpoint " << f.dir
                         << " (incomplete or corrupt): " << e.message();
    }
  }
  return std::nullopt;
}

}  // namespace mcore::dist_checkpointing
