// Saving: the per-rank shard files, the validation that the shards tile each global tensor,
// the atomic publish (metadata, rename, latest file) and the collective wrapper.
#include "mcore/dist_checkpointing/checkpoint.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "mcore/base/error.h"
#include "mcore/base/file_io.h"
#include "mcore/dist_checkpointing/safetensors.h"
#include "mcore/tensor/factory.h"

namespace mcore::dist_checkpointing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string tmp_dir_for(const std::string& save_dir, int64_t iteration) {
  return get_checkpoint_dir(save_dir, iteration) + ".tmp";
}

bool boxes_overlap(const Shape& oa, const Shape& la, const Shape& ob, const Shape& lb) {
  for (size_t d = 0; d < oa.size(); ++d) {
    if (oa[d] >= ob[d] + lb[d] || ob[d] >= oa[d] + la[d]) return false;
  }
  return true;
}

// The shards of one key must not overlap and must cover every element. Sorted by the first
// offset, only shards whose first-dimension ranges meet need a full box test.
void check_tiling(const std::string& key, const TensorRecord& t,
                  const std::vector<int>& shard_ranks) {
  std::vector<size_t> order(t.shards.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const bool scalar = t.global_shape.empty();
  if (!scalar) {
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return t.shards[a].global_offset[0] < t.shards[b].global_offset[0];
    });
  }
  int64_t covered = 0;
  for (size_t ii = 0; ii < order.size(); ++ii) {
    const ShardRecord& a = t.shards[order[ii]];
    covered += shape_numel(a.local_shape);
    for (size_t jj = ii + 1; jj < order.size(); ++jj) {
      const ShardRecord& b = t.shards[order[jj]];
      if (!scalar && b.global_offset[0] >= a.global_offset[0] + a.local_shape[0]) break;
      if (shape_numel(a.local_shape) == 0 || shape_numel(b.local_shape) == 0) continue;
      MCORE_CHECK(!boxes_overlap(a.global_offset, a.local_shape, b.global_offset, b.local_shape))
          << "checkpoint save: tensor \"" << key << "\": the shard of rank "
          << shard_ranks[order[ii]] << " (offset " << shape_str(a.global_offset) << ", shape "
          << shape_str(a.local_shape) << ") overlaps the shard of rank " << shard_ranks[order[jj]]
          << " (offset " << shape_str(b.global_offset) << ", shape " << shape_str(b.local_shape)
          << "); replicas of one shard must have replica_id != 0 on all ranks but one";
    }
  }
  MCORE_CHECK(covered == shape_numel(t.global_shape))
      << "checkpoint save: tensor \"" << key << "\" of global shape " << shape_str(t.global_shape)
      << ": the saved shards cover " << covered << " of " << shape_numel(t.global_shape)
      << " elements (a rank did not pass its shard, or every copy of a piece has replica_id != 0)";
}

// Replaces `to` (a directory that may exist) by `from`. With renameat2(RENAME_EXCHANGE) the
// swap is atomic; elsewhere the old directory is moved aside first.
void publish_directory(const std::string& from, const std::string& to) {
  if (!fs::exists(to)) {
    MCORE_CHECK(std::rename(from.c_str(), to.c_str()) == 0)
        << "checkpoint save: cannot rename " << from << " to " << to << ": "
        << std::strerror(errno);
    return;
  }
#if defined(SYS_renameat2)
  constexpr unsigned kRenameExchange = 2;  // RENAME_EXCHANGE
  if (::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), kRenameExchange) ==
      0) {
    fs::remove_all(from);  // now holds the old checkpoint
    return;
  }
#endif
  const std::string old = to + ".old";
  fs::remove_all(old);
  MCORE_CHECK(std::rename(to.c_str(), old.c_str()) == 0)
      << "checkpoint save: cannot move the existing " << to << " aside: " << std::strerror(errno);
  MCORE_CHECK(std::rename(from.c_str(), to.c_str()) == 0)
      << "checkpoint save: cannot rename " << from << " to " << to << ": " << std::strerror(errno);
  fs::remove_all(old);
}

// Every rank's string, on every rank (lengths first, then the padded bytes).
// Built on the host and moved to the group's device (a GPU under nccl), read back on the host.
std::vector<std::string> all_gather_strings(comm::ProcessGroup& group, const std::string& s) {
  const Device dev = comm::group_device(group);
  Tensor len = from_vector<int64_t>({static_cast<int64_t>(s.size())}).to(dev);
  std::vector<Tensor> lens;
  group.all_gather(lens, len);
  int64_t max_len = 1;
  for (const Tensor& l : lens) max_len = std::max(max_len, l.item<int64_t>());
  Tensor buf = zeros({max_len}, DType::U8);
  std::memcpy(buf.data_ptr(), s.data(), s.size());
  buf = buf.to(dev);
  std::vector<Tensor> bufs;
  group.all_gather(bufs, buf);
  std::vector<std::string> out;
  for (size_t r = 0; r < bufs.size(); ++r) {
    const Tensor host = bufs[r].to(Device::cpu());
    out.emplace_back(static_cast<const char*>(host.data_ptr()),
                     static_cast<size_t>(lens[r].item<int64_t>()));
  }
  return out;
}

// Runs `step` on this rank and makes its outcome collective: if it threw on any rank, every
// rank throws one error listing the failing ranks and their messages.
template <class F>
void collective_step(comm::ProcessGroup* group, const std::string& what, F&& step) {
  std::string error;
  try {
    step();
  } catch (const Error& e) {
    error = e.message();
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (group == nullptr || group->size() == 1) {
    MCORE_CHECK(error.empty()) << what << " failed: " << error;
    return;
  }
  std::vector<std::string> errors = all_gather_strings(*group, error);
  std::string msg;
  for (size_t r = 0; r < errors.size(); ++r) {
    if (!errors[r].empty()) msg += "\n  [rank " + std::to_string(r) + "] " + errors[r];
  }
  MCORE_CHECK(msg.empty()) << what << " failed:" << msg;
}

}  // namespace

std::string checkpoint_dir_name(int64_t iteration) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "iter_%07lld", static_cast<long long>(iteration));
  return buf;
}

std::string get_checkpoint_dir(const std::string& save_dir, int64_t iteration) {
  return (fs::path(save_dir) / checkpoint_dir_name(iteration)).string();
}

std::string shard_file_name(int rank) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "rank_%05d.safetensors", rank);
  return buf;
}

json RankShardFile::to_json() const {
  json entries_json = json::array();
  for (const Entry& e : entries) {
    entries_json.push_back({{"key", e.key},
                            {"dtype", dtype_name(e.dtype)},
                            {"global_shape", e.global_shape},
                            {"name", e.shard.name},
                            {"global_offset", e.shard.global_offset},
                            {"local_shape", e.shard.local_shape}});
  }
  return {{"rank", rank},
          {"file", file},
          {"size", size},
          {"crc32c", crc32c},
          {"entries", entries_json}};
}

RankShardFile RankShardFile::from_json(const json& j) {
  RankShardFile r;
  r.rank = j.at("rank").get<int>();
  r.file = j.at("file").get<std::string>();
  r.size = j.at("size").get<uint64_t>();
  r.crc32c = j.at("crc32c").get<uint32_t>();
  for (const json& e : j.at("entries")) {
    Entry en;
    en.key = e.at("key").get<std::string>();
    en.dtype = dtype_from_name(e.at("dtype").get<std::string>());
    en.global_shape = e.at("global_shape").get<Shape>();
    en.shard = {r.file, e.at("name").get<std::string>(), e.at("global_offset").get<Shape>(),
                e.at("local_shape").get<Shape>()};
    r.entries.push_back(std::move(en));
  }
  return r;
}

std::string begin_save(const std::string& save_dir, int64_t iteration) {
  MCORE_CHECK(iteration >= 0) << "checkpoint save: negative iteration " << iteration;
  std::error_code ec;
  fs::create_directories(save_dir, ec);
  MCORE_CHECK(!ec) << "checkpoint save: cannot create " << save_dir << ": " << ec.message();
  const std::string tmp = tmp_dir_for(save_dir, iteration);
  fs::remove_all(tmp, ec);  // left by a save that crashed
  MCORE_CHECK(!ec) << "checkpoint save: cannot remove the stale " << tmp << ": " << ec.message();
  fs::create_directory(tmp, ec);
  MCORE_CHECK(!ec) << "checkpoint save: cannot create " << tmp << ": " << ec.message();
  return tmp;
}

RankShardFile write_rank_shards(const std::string& tmp_dir, int rank,
                                const std::vector<ShardedTensor>& shards) {
  NoGradGuard no_grad;
  RankShardFile out;
  out.rank = rank;
  out.file = shard_file_name(rank);
  std::map<std::string, int> count;
  for (const ShardedTensor& s : shards) {
    s.validate();
    if (s.is_main_replica()) ++count[s.key];
  }
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const ShardedTensor& s : shards) {
    if (!s.is_main_replica()) continue;
    // The plain key when this rank has one piece of the tensor (a one-rank checkpoint's file
    // is then an ordinary state dict); key@offsets when it has several.
    std::string name = s.key;
    if (count[s.key] > 1) {
      name += "@";
      for (size_t d = 0; d < s.global_offset.size(); ++d) {
        if (d) name += ',';
        name += std::to_string(s.global_offset[d]);
      }
    }
    tensors.emplace_back(name, s.data);
    out.entries.push_back({s.key, s.data.dtype(), s.global_shape,
                           ShardRecord{out.file, name, s.global_offset, s.data.shape()}});
  }
  const std::string path = (fs::path(tmp_dir) / out.file).string();
  SafetensorsWriteResult w = save_safetensors(path, tensors, {{"format", "pt"}}, /*sync=*/true);
  out.size = w.bytes;
  out.crc32c = w.crc32c;
  fsync_directory(tmp_dir);  // each rank: its entry is durable even on a shared file system
  return out;
}

std::string finish_save(const std::string& save_dir, int64_t iteration,
                        const std::vector<RankShardFile>& ranks, const CheckpointCommon& common) {
  const std::string tmp = tmp_dir_for(save_dir, iteration);
  CheckpointMetadata meta;
  meta.iteration = iteration;
  meta.world_size = static_cast<int>(ranks.size());
  meta.parallel_layout = common.parallel_layout;
  meta.sections = common.sections;
  std::map<std::string, std::vector<int>> shard_ranks;
  std::map<std::string, int> first_rank;
  for (const RankShardFile& r : ranks) {
    MCORE_CHECK(meta.files.count(r.file) == 0)
        << "checkpoint save: two ranks wrote the same file " << r.file;
    meta.files[r.file] = {r.rank, r.size, r.crc32c};
    for (const RankShardFile::Entry& e : r.entries) {
      auto [it, fresh] = meta.tensors.try_emplace(e.key);
      TensorRecord& t = it->second;
      if (fresh) {
        t.dtype = e.dtype;
        t.global_shape = e.global_shape;
        first_rank[e.key] = r.rank;
      }
      MCORE_CHECK(t.dtype == e.dtype && t.global_shape == e.global_shape)
          << "checkpoint save: tensor \"" << e.key << "\" is " << dtype_name(t.dtype) << " "
          << shape_str(t.global_shape) << " on rank " << first_rank[e.key] << " but "
          << dtype_name(e.dtype) << " " << shape_str(e.global_shape) << " on rank " << r.rank;
      t.shards.push_back(e.shard);
      shard_ranks[e.key].push_back(r.rank);
    }
  }
  for (const auto& [key, t] : meta.tensors) check_tiling(key, t, shard_ranks[key]);
  for (const auto& [file, f] : meta.files) {
    const fs::path p = fs::path(tmp) / file;
    MCORE_CHECK(fs::exists(p) && fs::file_size(p) == f.size)
        << "checkpoint save: rank " << f.rank << "'s shard file " << p.string()
        << (fs::exists(p) ? " has the wrong size" : " is missing") << " (is " << save_dir
        << " on a file system every rank shares?)";
  }

  {
    FileWriter w((fs::path(tmp) / kMetadataFileName).string());
    w.write(meta.to_json().dump(1) + "\n");
    w.close(/*sync=*/true);
  }
  fsync_directory(tmp);
  const std::string final_dir = get_checkpoint_dir(save_dir, iteration);
  publish_directory(tmp, final_dir);
  fsync_directory(save_dir);
  // Last: the latest file names only checkpoints already complete on disk.
  write_file_atomic((fs::path(save_dir) / kLatestFileName).string(), std::to_string(iteration));
  return final_dir;
}

std::string save_checkpoint(const std::string& save_dir, int64_t iteration,
                            const std::vector<ShardedTensor>& shards,
                            const CheckpointCommon& common, const comm::ProcessGroupPtr& group) {
  comm::ProcessGroup* g = group.get();
  const int rank = g ? g->rank() : 0;
  const std::string what =
      "saving checkpoint iteration " + std::to_string(iteration) + " to " + save_dir;
  std::string tmp = tmp_dir_for(save_dir, iteration);
  collective_step(g, what, [&] {
    if (rank == 0) begin_save(save_dir, iteration);
  });
  try {
    RankShardFile mine;
    collective_step(g, what, [&] { mine = write_rank_shards(tmp, rank, shards); });
    std::vector<RankShardFile> all;
    if (g != nullptr && g->size() > 1) {
      for (const std::string& s : all_gather_strings(*g, mine.to_json().dump())) {
        all.push_back(RankShardFile::from_json(json::parse(s)));
      }
    } else {
      all.push_back(mine);
    }
    collective_step(g, what, [&] {
      if (rank == 0) finish_save(save_dir, iteration, all, common);
    });
  } catch (const Error&) {
    // Every rank throws together (collective_step); rank 0 removes the partial shards so that a
    // save that ran out of disk does not keep the disk full. The previous checkpoint stays.
    if (rank == 0) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
    }
    throw;
  }
  return get_checkpoint_dir(save_dir, iteration);
}

}  // namespace mcore::dist_checkpointing
