#include "mcore/dist_checkpointing/metadata.h"

#include <cstdio>
#include <filesystem>

#include "mcore/base/error.h"
#include "mcore/base/file_io.h"

namespace mcore::dist_checkpointing {
namespace {

using json = nlohmann::json;

Shape shape_from(const json& j, const std::string& where, const char* field) {
  MCORE_CHECK(j.is_array()) << where << ": \"" << field << "\" must be an array of integers";
  Shape s;
  for (const json& d : j) {
    MCORE_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0)
        << where << ": \"" << field << "\" " << j.dump() << " has a bad entry";
    s.push_back(d.get<int64_t>());
  }
  return s;
}

const json& field(const json& j, const char* name, const std::string& where) {
  MCORE_CHECK(j.is_object() && j.contains(name)) << where << ": missing field \"" << name << "\"";
  return j.at(name);
}

}  // namespace

std::string crc32c_hex(uint32_t crc) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

json CheckpointMetadata::to_json() const {
  json j;
  j["format"] = kCheckpointFormat;
  j["version"] = kCheckpointFormatVersion;
  j["iteration"] = iteration;
  j["world_size"] = world_size;
  j["checksum"] = "crc32c";
  json fj = json::object();
  for (const auto& [name, f] : files) {
    fj[name] = {{"rank", f.rank}, {"size", f.size}, {"crc32c", crc32c_hex(f.crc32c)}};
  }
  j["files"] = fj;
  json tj = json::object();
  for (const auto& [key, t] : tensors) {
    json shards = json::array();
    for (const ShardRecord& s : t.shards) {
      shards.push_back({{"file", s.file},
                        {"name", s.name},
                        {"global_offset", s.global_offset},
                        {"local_shape", s.local_shape}});
    }
    tj[key] = {
        {"dtype", dtype_name(t.dtype)}, {"global_shape", t.global_shape}, {"shards", shards}};
  }
  j["tensors"] = tj;
  j["parallel_layout"] = parallel_layout;
  j["sections"] = sections;
  return j;
}

CheckpointMetadata CheckpointMetadata::from_json(const json& j, const std::string& where) {
  MCORE_CHECK(j.is_object() && j.value("format", "") == kCheckpointFormat)
      << where << " is not an mcore checkpoint metadata file (no \"format\": \""
      << kCheckpointFormat << "\")";
  const json& version = field(j, "version", where);
  MCORE_CHECK(version.is_number_integer() && version.get<int>() == kCheckpointFormatVersion)
      << where << ": checkpoint format version " << version.dump() << " is not supported (this "
      << "mcore reads version " << kCheckpointFormatVersion << ")";
  CheckpointMetadata m;
  const json& it = field(j, "iteration", where);
  MCORE_CHECK(it.is_number_integer()) << where << ": \"iteration\" is not an integer";
  m.iteration = it.get<int64_t>();
  const json& ws = field(j, "world_size", where);
  MCORE_CHECK(ws.is_number_integer() && ws.get<int>() >= 1) << where << ": bad \"world_size\"";
  m.world_size = ws.get<int>();
  if (j.contains("parallel_layout")) m.parallel_layout = j["parallel_layout"];
  if (j.contains("sections")) m.sections = j["sections"];

  const json& files = field(j, "files", where);
  MCORE_CHECK(files.is_object()) << where << ": \"files\" is not an object";
  for (auto f = files.begin(); f != files.end(); ++f) {
    const std::string w = where + ", file \"" + f.key() + "\"";
    MCORE_CHECK(f.key().find('/') == std::string::npos && f.key() != "." && f.key() != "..")
        << w << ": file names must not contain '/'";
    FileRecord r;
    const json& rank = field(f.value(), "rank", w);
    const json& size = field(f.value(), "size", w);
    const json& crc = field(f.value(), "crc32c", w);
    MCORE_CHECK(rank.is_number_integer() && size.is_number_unsigned() && crc.is_string() &&
                crc.get<std::string>().size() == 8)
        << w << ": bad entry " << f.value().dump();
    r.rank = rank.get<int>();
    r.size = size.get<uint64_t>();
    try {
      size_t pos = 0;
      r.crc32c = static_cast<uint32_t>(std::stoul(crc.get<std::string>(), &pos, 16));
      MCORE_CHECK(pos == 8) << "trailing characters";
    } catch (const std::exception&) {
      MCORE_FAIL() << w << ": crc32c \"" << crc.get<std::string>() << "\" is not 8 hex digits";
    }
    m.files[f.key()] = r;
  }

  const json& tensors = field(j, "tensors", where);
  MCORE_CHECK(tensors.is_object()) << where << ": \"tensors\" is not an object";
  for (auto t = tensors.begin(); t != tensors.end(); ++t) {
    const std::string w = where + ", tensor \"" + t.key() + "\"";
    TensorRecord r;
    const json& dt = field(t.value(), "dtype", w);
    MCORE_CHECK(dt.is_string()) << w << ": dtype is not a string";
    try {
      r.dtype = dtype_from_name(dt.get<std::string>());
    } catch (const Error& e) {
      MCORE_FAIL() << w << ": " << e.message();
    }
    r.global_shape = shape_from(field(t.value(), "global_shape", w), w, "global_shape");
    const json& shards = field(t.value(), "shards", w);
    MCORE_CHECK(shards.is_array() && !shards.empty())
        << w << ": \"shards\" must be a non-empty array";
    for (const json& s : shards) {
      ShardRecord sr;
      const json& file = field(s, "file", w);
      const json& name = field(s, "name", w);
      MCORE_CHECK(file.is_string() && name.is_string()) << w << ": bad shard " << s.dump();
      sr.file = file.get<std::string>();
      sr.name = name.get<std::string>();
      sr.global_offset = shape_from(field(s, "global_offset", w), w, "global_offset");
      sr.local_shape = shape_from(field(s, "local_shape", w), w, "local_shape");
      MCORE_CHECK(m.files.count(sr.file) != 0)
          << w << ": shard file \"" << sr.file << "\" is not listed under \"files\"";
      MCORE_CHECK(sr.global_offset.size() == r.global_shape.size() &&
                  sr.local_shape.size() == r.global_shape.size())
          << w << ": shard " << s.dump() << " does not match global shape "
          << shape_str(r.global_shape);
      for (size_t d = 0; d < r.global_shape.size(); ++d) {
        MCORE_CHECK(sr.global_offset[d] + sr.local_shape[d] <= r.global_shape[d])
            << w << ": shard " << s.dump() << " lies outside global shape "
            << shape_str(r.global_shape);
      }
      r.shards.push_back(std::move(sr));
    }
    m.tensors[t.key()] = std::move(r);
  }
  return m;
}

CheckpointMetadata CheckpointMetadata::read(const std::string& checkpoint_dir) {
  const std::string path = (std::filesystem::path(checkpoint_dir) / kMetadataFileName).string();
  MCORE_CHECK(std::filesystem::exists(path))
      << "checkpoint " << checkpoint_dir << " has no " << kMetadataFileName
      << " (not a checkpoint directory, or a save that did not finish)";
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    MCORE_FAIL() << "checkpoint metadata " << path
                 << " is not valid JSON (truncated or corrupt): " << e.what();
  }
  return from_json(j, "checkpoint metadata " + path);
}

}  // namespace mcore::dist_checkpointing
