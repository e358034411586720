#include "mcore/dist_checkpointing/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "mcore/base/error.h"
#include "mcore/tensor/factory.h"

namespace mcore::dist_checkpointing {
namespace {

using json = nlohmann::json;

// safetensors' own limit: a larger header is taken for a corrupt file, not parsed.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeName {
  DType dtype;
  const char* name;
  int rank;  // the Rust crate's Dtype order: the writer sorts by it, widest first
};
constexpr DTypeName kNames[] = {
    {DType::BOOL, "BOOL", 0},      {DType::U8, "U8", 1},          {DType::I8, "I8", 2},
    {DType::F8E5M2, "F8_E5M2", 3}, {DType::F8E4M3, "F8_E4M3", 4}, {DType::I16, "I16", 5},
    {DType::U16, "U16", 6},        {DType::F16, "F16", 7},        {DType::BF16, "BF16", 8},
    {DType::I32, "I32", 9},        {DType::F32, "F32", 10},       {DType::F64, "F64", 11},
    {DType::I64, "I64", 12},
};

int dtype_rank(DType d) {
  for (const auto& n : kNames) {
    if (n.dtype == d) return n.rank;
  }
  MCORE_FAIL() << "safetensors: dtype " << d << " has no safetensors name";
  return 0;
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  for (const auto& n : kNames) {
    if (n.dtype == dtype) return n.name;
  }
  MCORE_FAIL() << "safetensors: dtype " << dtype << " has no safetensors name";
  return nullptr;
}

DType dtype_from_safetensors_name(const std::string& name) {
  for (const auto& n : kNames) {
    if (name == n.name) return n.dtype;
  }
  std::string known;
  for (const auto& n : kNames) known += std::string(known.empty() ? "" : ", ") + n.name;
  MCORE_FAIL() << "unsupported safetensors dtype \"" << name << "\" (mcore reads " << known << ")";
  return DType::F32;
}

SafetensorsReader::SafetensorsReader(const std::string& path) : file_(MappedFile::open(path)) {
  parse();
}

SafetensorsReader::SafetensorsReader(std::shared_ptr<MappedFile> file) : file_(std::move(file)) {
  parse();
}

void SafetensorsReader::parse() {
  const std::string& path = file_->path();
  const uint64_t size = file_->size();
  MCORE_CHECK(size >= 8) << "safetensors file " << path << " is truncated: " << size
                         << " bytes, too short for the 8-byte header length";
  uint64_t n = 0;
  std::memcpy(&n, file_->data(), 8);
  MCORE_CHECK(n <= kMaxHeaderBytes) << "safetensors file " << path << ": header length " << n
                                    << " is implausible (corrupt file?)";
  MCORE_CHECK(8 + n <= size) << "safetensors file " << path << " is truncated: the header says "
                             << n << " header bytes but the file has only " << size - 8
                             << " after the length";
  data_start_ = 8 + n;
  const char* h = reinterpret_cast<const char*>(file_->data() + 8);
  MCORE_CHECK(n >= 2 && h[0] == '{') << "safetensors file " << path
                                     << ": the header does not start with '{' (not a safetensors "
                                        "file, or corrupt)";
  json header;
  try {
    header = json::parse(h, h + n);
  } catch (const json::exception& e) {
    MCORE_FAIL() << "safetensors file " << path << ": the header is not valid JSON: " << e.what();
  }
  MCORE_CHECK(header.is_object()) << "safetensors file " << path
                                  << ": the header is not a JSON object";
  const uint64_t data_size = size - data_start_;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      MCORE_CHECK(v.is_object()) << "safetensors file " << path
                                 << ": __metadata__ must be an object of strings";
      for (auto m = v.begin(); m != v.end(); ++m) {
        MCORE_CHECK(m.value().is_string()) << "safetensors file " << path << ": __metadata__ \""
                                           << m.key() << "\" is not a string";
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "safetensors file " + path + ", tensor \"" + name + "\"";
    MCORE_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") &&
                v.contains("data_offsets"))
        << where << ": expected {\"dtype\", \"shape\", \"data_offsets\"}, got " << v.dump();
    SafetensorsEntry e;
    e.name = name;
    MCORE_CHECK(v["dtype"].is_string()) << where << ": dtype is not a string";
    try {
      e.dtype = dtype_from_safetensors_name(v["dtype"].get<std::string>());
    } catch (const Error& err) {
      MCORE_FAIL() << where << ": " << err.message();
    }
    MCORE_CHECK(v["shape"].is_array()) << where << ": shape is not an array";
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : v["shape"]) {
      MCORE_CHECK(d.is_number_unsigned()) << where << ": shape " << v["shape"].dump()
                                          << " has an entry that is not a non-negative integer";
      const uint64_t dim = d.get<uint64_t>();
      e.shape.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && numel > UINT64_MAX / dim) overflow = true;
      numel *= dim;
    }
    const json& off = v["data_offsets"];
    MCORE_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                off[1].is_number_unsigned())
        << where << ": data_offsets must be [begin, end], got " << off.dump();
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    MCORE_CHECK(e.begin <= e.end && e.end <= data_size)
        << where << ": data_offsets [" << e.begin << ", " << e.end
        << "] out of range: the data section has " << data_size << " bytes"
        << (e.end > data_size ? " (file truncated?)" : "");
    const uint64_t item = dtype_size(e.dtype);
    MCORE_CHECK(!overflow && numel <= UINT64_MAX / item && e.end - e.begin == numel * item)
        << where << ": " << e.end - e.begin << " data bytes do not match shape "
        << shape_str(e.shape) << " of " << v["dtype"].get<std::string>() << " ("
        << (overflow ? std::string("overflow") : std::to_string(numel * item)) << " bytes)";
    entries_.push_back(std::move(e));
  }
  // As the safetensors crate: tensors tile the data section exactly, no overlap, no gap.
  std::sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const auto& e : entries_) {
    MCORE_CHECK(e.begin >= pos) << "safetensors file " << path << ": tensor \"" << e.name
                                << "\" data [" << e.begin << ", " << e.end
                                << ") overlaps the previous tensor's (which ends at " << pos << ")";
    MCORE_CHECK(e.begin == pos) << "safetensors file " << path << ": a gap of " << e.begin - pos
                                << " bytes before tensor \"" << e.name << "\"";
    pos = e.end;
  }
  MCORE_CHECK(pos == data_size) << "safetensors file " << path << ": the tensors cover " << pos
                                << " bytes but the data section has " << data_size
                                << " (trailing garbage or a wrong header)";
  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  auto it = index_.find(name);
  MCORE_CHECK(it != index_.end()) << "safetensors file " << path() << " has no tensor \"" << name
                                  << "\" (it has " << entries_.size() << " tensors)";
  return entries_[it->second];
}

Tensor SafetensorsReader::view(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  const uint8_t* p = file_->data() + data_start_ + e.begin;
  const size_t item = dtype_size(e.dtype);
  if (reinterpret_cast<uintptr_t>(p) % item != 0) return load(name);
  // The storage holds a reference to the mapping, so the view outlives this reader safely.
  auto* keep = new std::shared_ptr<MappedFile>(file_);
  auto storage = std::make_shared<StorageImpl>(
      const_cast<uint8_t*>(p), e.end - e.begin, Device::cpu(),
      [](void*, void* ctx) { delete static_cast<std::shared_ptr<MappedFile>*>(ctx); }, keep);
  return Tensor(std::move(storage), e.shape, contiguous_strides(e.shape), 0, e.dtype);
}

Tensor SafetensorsReader::load(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  Tensor t = empty(e.shape, e.dtype);
  if (e.end > e.begin)
    std::memcpy(t.data_ptr(), file_->data() + data_start_ + e.begin, e.end - e.begin);
  return t;
}

std::map<std::string, Tensor> SafetensorsReader::load_all() const {
  std::map<std::string, Tensor> out;
  for (const auto& e : entries_) out[e.name] = load(e.name);
  return out;
}

SafetensorsWriteResult save_safetensors(const std::string& path,
                                        const std::vector<std::pair<std::string, Tensor>>& tensors,
                                        const std::map<std::string, std::string>& metadata,
                                        bool sync) {
  struct Item {
    const std::string* name;
    Tensor t;  // contiguous, on the CPU
  };
  std::vector<Item> items;
  items.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    MCORE_CHECK(!name.empty() && name != "__metadata__")
        << "save_safetensors(" << path << "): invalid tensor name \"" << name << "\"";
    MCORE_CHECK(t.defined()) << "save_safetensors(" << path << "): tensor \"" << name
                             << "\" is undefined";
    (void)dtype_rank(t.dtype());
    Tensor c = t.device().is_cpu() ? t : t.to(Device::cpu());
    items.push_back({&name, c.is_contiguous() ? c : c.contiguous()});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    const int ra = dtype_rank(a.t.dtype()), rb = dtype_rank(b.t.dtype());
    return ra != rb ? ra > rb : *a.name < *b.name;
  });
  for (size_t i = 1; i < items.size(); ++i) {
    MCORE_CHECK(*items[i].name != *items[i - 1].name)
        << "save_safetensors(" << path << "): tensor name \"" << *items[i].name
        << "\" appears twice";
  }
  // The header by hand: the key order (metadata, then tensors in data order) is part of the
  // byte-for-byte match with the safetensors package.
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) h += ',';
      first = false;
      h += json(k).dump() + ":" + json(v).dump();
    }
    h += "}";
  }
  uint64_t offset = 0;
  for (const Item& it : items) {
    if (h.size() > 1) h += ',';
    h += json(*it.name).dump() + ":{\"dtype\":\"" + safetensors_dtype_name(it.t.dtype()) +
         "\",\"shape\":[";
    for (size_t d = 0; d < it.t.shape().size(); ++d) {
      if (d) h += ',';
      h += std::to_string(it.t.shape()[d]);
    }
    const uint64_t n = it.t.nbytes();
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
    offset += n;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  const uint64_t header_len = h.size();

  FileWriter w(path);
  w.write(&header_len, 8);
  w.write(h);
  for (const Item& it : items) {
    if (it.t.numel() > 0) w.write(it.t.data_ptr(), it.t.nbytes());
  }
  SafetensorsWriteResult r{w.bytes_written(), w.crc32c()};
  w.close(sync);
  return r;
}

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  return SafetensorsReader(path).load_all();
}

}  // namespace mcore::dist_checkpointing
