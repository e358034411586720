// Checkpoint save/load in one process: the directory layout and metadata, loading subsets of
// keys, resharding (shards saved as if by 2 or 4 ranks, each writing its own file, loaded as
// slices of other shapes), atomic publishing, and errors for missing, partial and corrupt
// checkpoints; auto-resume never picks an incomplete one.
#include "mcore/dist_checkpointing/checkpoint.h"

#include <gtest/gtest.h>

#include "mcore/base/crc32c.h"
#include "mcore/base/file_io.h"
#include "mcore/dist_checkpointing/safetensors.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/dist_checkpointing/ckpt_test_util.h"

namespace mcore::testing {
namespace {

namespace dc = dist_checkpointing;
using dc::ShardedTensor;
using json = nlohmann::json;

// A global tensor whose values encode their flat index (exact in every float dtype used here).
Tensor global_tensor(const Shape& shape, DType dtype = DType::F32, int salt = 0) {
  Tensor t = empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<double>((i * 3 + salt) % 251) - 100;
  return t.to(dtype);
}

Tensor slice(const Tensor& g, const Shape& offset, const Shape& shape) {
  Tensor t = g;
  for (size_t d = 0; d < shape.size(); ++d) t = t.narrow(int64_t(d), offset[d], shape[d]);
  return t.contiguous();
}

ShardedTensor piece(const std::string& key, const Tensor& g, const Shape& offset,
                    const Shape& shape, int64_t replica_id = 0) {
  return {key, slice(g, offset, shape), g.shape(), offset, replica_id};
}

// An empty request for the slice [offset, offset + shape) of key's global tensor.
ShardedTensor request(const std::string& key, const Tensor& g, const Shape& offset,
                      const Shape& shape) {
  return {key, full(shape, -999.0, g.dtype()), g.shape(), offset, 0};
}

// Saves as `per_rank.size()` ranks, each writing its own file, then rank 0 publishing.
std::string save_as_ranks(const std::string& save_dir, int64_t iteration,
                          const std::vector<std::vector<ShardedTensor>>& per_rank,
                          const dc::CheckpointCommon& common = {}) {
  const std::string tmp = dc::begin_save(save_dir, iteration);
  std::vector<dc::RankShardFile> files;
  for (size_t r = 0; r < per_rank.size(); ++r) {
    files.push_back(dc::write_rank_shards(tmp, int(r), per_rank[r]));
    // What save_checkpoint sends between ranks survives the JSON round trip.
    files.back() = dc::RankShardFile::from_json(json::parse(files.back().to_json().dump()));
  }
  return dc::finish_save(save_dir, iteration, files, common);
}

TEST(Checkpoint, LayoutMetadataAndRoundTrip) {
  ScratchDir dir("ckpt_layout");
  Tensor w = global_tensor({6, 5});
  Tensor b = global_tensor({5}, DType::BF16, 7);
  Tensor step = full({}, 12.0, DType::I64);
  dc::CheckpointCommon common;
  common.parallel_layout = {{"tensor_model_parallel_size", 1}, {"data_parallel_size", 1}};
  common.sections["args"] = {{"lr", 3e-4}, {"seq_length", 128}};
  common.sections["scheduler"] = {{"num_steps", 1600}};
  common.sections["consumed_samples"] = 1600;
  const std::string ckpt =
      dc::save_checkpoint(dir.str(), 100,
                          {ShardedTensor::whole("w", w), ShardedTensor::whole("b", b),
                           ShardedTensor::whole("optimizer.step", step)},
                          common);
  EXPECT_EQ(ckpt, (dir / "iter_0000100").string());
  EXPECT_EQ(read_bytes(dir / "latest_checkpointed_iteration.txt"), "100");
  EXPECT_TRUE(fs::exists(dir / "iter_0000100" / "metadata.json"));
  EXPECT_TRUE(fs::exists(dir / "iter_0000100" / "rank_00000.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "iter_0000100.tmp"));
  EXPECT_EQ(*dc::read_latest_checkpoint_dir(dir.str()), ckpt);

  const json meta = json::parse(read_bytes(dir / "iter_0000100" / "metadata.json"));
  EXPECT_EQ(meta["iteration"], 100);
  EXPECT_EQ(meta["world_size"], 1);
  EXPECT_EQ(meta["checksum"], "crc32c");
  EXPECT_EQ(meta["tensors"]["w"]["global_shape"], json({6, 5}));
  EXPECT_EQ(meta["tensors"]["b"]["dtype"], "bfloat16");
  EXPECT_EQ(meta["tensors"]["w"]["shards"][0]["local_shape"], json({6, 5}));
  EXPECT_EQ(meta["parallel_layout"]["tensor_model_parallel_size"], 1);
  EXPECT_EQ(meta["sections"]["args"]["seq_length"], 128);
  EXPECT_EQ(meta["sections"]["consumed_samples"], 1600);
  const std::string file = (dir / "iter_0000100" / "rank_00000.safetensors").string();
  EXPECT_EQ(meta["files"]["rank_00000.safetensors"]["size"], fs::file_size(file));
  EXPECT_EQ(meta["files"]["rank_00000.safetensors"]["crc32c"],
            dc::crc32c_hex(crc32c(read_bytes(file).data(), fs::file_size(file))));
  // A one-rank shard file is an ordinary safetensors state dict.
  auto plain = dc::load_safetensors(file);
  EXPECT_TENSOR_CLOSE(plain.at("w"), w, 0, 0);

  std::vector<ShardedTensor> req{request("w", w, {0, 0}, {6, 5}), request("b", b, {0}, {5}),
                                 request("optimizer.step", step, {}, {})};
  auto res = dc::load_checkpoint(ckpt, req);
  EXPECT_TENSOR_CLOSE(req[0].data, w, 0, 0);
  EXPECT_TENSOR_CLOSE(req[1].data, b, 0, 0);
  EXPECT_EQ(req[2].data.item<int64_t>(), 12);
  EXPECT_EQ(res.metadata.sections["scheduler"]["num_steps"], 1600);
  EXPECT_TRUE(res.missing_keys.empty() && res.unexpected_keys.empty());
  EXPECT_TENSOR_CLOSE(dc::load_global_tensor(ckpt, "w"), w, 0, 0);
}

TEST(Checkpoint, LoadsASubsetOfKeysAndReportsMissingOnes) {
  ScratchDir dir("ckpt_subset");
  Tensor w = global_tensor({4, 3}), m = global_tensor({4, 3}, DType::F32, 5);
  const std::string ckpt = dc::save_checkpoint(
      dir.str(), 7, {ShardedTensor::whole("w", w), ShardedTensor::whole("optimizer.exp_avg.w", m)});
  // --no-load-optim: ask for the model only.
  std::vector<ShardedTensor> req{request("w", w, {0, 0}, {4, 3})};
  auto res = dc::load_checkpoint(ckpt, req);
  EXPECT_TENSOR_CLOSE(req[0].data, w, 0, 0);
  EXPECT_EQ(res.unexpected_keys, std::vector<std::string>{"optimizer.exp_avg.w"});
  // A key the checkpoint lacks: an error when strict, a report otherwise.
  std::vector<ShardedTensor> more{request("w", w, {0, 0}, {4, 3}),
                                  request("decoder.final_layernorm.weight", w, {0, 0}, {4, 3})};
  expect_error([&] { dc::load_checkpoint(ckpt, more); },
               {ckpt, "lacks 1 requested tensor", "\"decoder.final_layernorm.weight\""});
  dc::LoadOptions lenient;
  lenient.strict = false;
  res = dc::load_checkpoint(ckpt, more, lenient);
  EXPECT_EQ(res.missing_keys, std::vector<std::string>{"decoder.final_layernorm.weight"});
  EXPECT_TENSOR_CLOSE(more[0].data, w, 0, 0);
}

// Saved by 2 ranks (rows split) and 4 ranks (a 2 x 2 grid), loaded as column splits, odd boxes
// and whole tensors: every element lands where it belongs.
TEST(Checkpoint, ReshardsAcrossLayouts) {
  ScratchDir dir("ckpt_reshard");
  Tensor a = global_tensor({12, 10}, DType::F32, 1);
  Tensor g = global_tensor({8, 6, 3}, DType::BF16, 2);
  Tensor rep = global_tensor({5}, DType::F64, 3);
  // Rank r of 4 holds: rows [6*(r/2), +6) of a if r is even... (a in 2 row pieces on ranks 0
  // and 2, replicated by 1 and 3), g in a 2 x 2 grid over dims 0 and 1, rep everywhere.
  std::vector<std::vector<ShardedTensor>> ranks(4);
  for (int r = 0; r < 4; ++r) {
    const int row = r / 2, col = r % 2;
    ranks[r].push_back(piece("a", a, {6 * row, 0}, {6, 10}, /*replica_id=*/col));
    ranks[r].push_back(piece("g", g, {4 * row, 3 * col, 0}, {4, 3, 3}));
    ranks[r].push_back(piece("rep", rep, {0}, {5}, /*replica_id=*/r));
  }
  const std::string ckpt4 = save_as_ranks(dir.str(), 40, ranks);
  const json meta = json::parse(read_bytes(fs::path(ckpt4) / "metadata.json"));
  EXPECT_EQ(meta["world_size"], 4);
  EXPECT_EQ(meta["tensors"]["a"]["shards"].size(), 2u);  // replicas are written once
  EXPECT_EQ(meta["tensors"]["g"]["shards"].size(), 4u);
  EXPECT_EQ(meta["tensors"]["rep"]["shards"].size(), 1u);

  // Saved by 2 ranks, split along the other dimension.
  std::vector<std::vector<ShardedTensor>> two(2);
  for (int r = 0; r < 2; ++r) {
    two[r].push_back(piece("a", a, {0, 5 * r}, {12, 5}));
    two[r].push_back(piece("g", g, {0, 0, r == 0 ? 0 : 1}, {8, 6, r == 0 ? 1 : 2}));
    two[r].push_back(piece("rep", rep, {0}, {5}, r));
  }
  const std::string ckpt2 = save_as_ranks(dir.str(), 20, two);

  for (const std::string& ckpt : {ckpt4, ckpt2}) {
    SCOPED_TRACE(ckpt);
    // Three column pieces of a (a TP=3-like split), uneven row pieces of g, odd boxes.
    struct Box {
      std::string key;
      Shape offset, shape;
    };
    std::vector<Box> boxes = {{"a", {0, 0}, {12, 4}},      {"a", {0, 4}, {12, 3}},
                              {"a", {0, 7}, {12, 3}},      {"a", {3, 2}, {7, 5}},
                              {"a", {11, 9}, {1, 1}},      {"g", {0, 0, 0}, {3, 6, 3}},
                              {"g", {3, 0, 0}, {5, 6, 3}}, {"g", {1, 2, 1}, {6, 3, 2}},
                              {"rep", {1}, {3}},           {"a", {5, 0}, {0, 10}}};
    std::vector<ShardedTensor> req;
    for (const Box& b : boxes) {
      const Tensor& src = b.key == "a" ? a : b.key == "g" ? g : rep;
      req.push_back(request(b.key, src, b.offset, b.shape));
    }
    dc::load_checkpoint(ckpt, req);
    for (size_t i = 0; i < boxes.size(); ++i) {
      const Tensor& src = boxes[i].key == "a" ? a : boxes[i].key == "g" ? g : rep;
      EXPECT_TENSOR_CLOSE(req[i].data, slice(src, boxes[i].offset, boxes[i].shape), 0, 0)
          << boxes[i].key << " at " << shape_str(boxes[i].offset);
    }
    EXPECT_TENSOR_CLOSE(dc::load_global_tensor(ckpt, "g"), g, 0, 0);
  }
  // The highest iteration is the latest; both are valid.
  EXPECT_EQ(read_bytes(dir / "latest_checkpointed_iteration.txt"), "20");  // written last
  EXPECT_EQ(dc::find_latest_valid_checkpoint(dir.str())->iteration, 40);
}

TEST(Checkpoint, LoadChecksShapesAndDtypes) {
  ScratchDir dir("ckpt_mismatch");
  Tensor w = global_tensor({4, 6});
  const std::string ckpt = dc::save_checkpoint(dir.str(), 1, {ShardedTensor::whole("w", w)});
  std::vector<ShardedTensor> wrong_shape{{"w", zeros({4, 3}), {4, 3}, {0, 0}}};
  expect_error([&] { dc::load_checkpoint(ckpt, wrong_shape); }, {"\"w\"", "[4, 6]", "[4, 3]"});
  std::vector<ShardedTensor> as_bf16{{"w", zeros({2, 6}, DType::BF16), {4, 6}, {2, 0}}};
  expect_error([&] { dc::load_checkpoint(ckpt, as_bf16); }, {"\"w\"", "float32", "bfloat16"});
  dc::LoadOptions cast;
  cast.allow_dtype_cast = true;
  dc::load_checkpoint(ckpt, as_bf16, cast);
  EXPECT_TENSOR_CLOSE(as_bf16[0].data.to(DType::F32), slice(w, {2, 0}, {2, 6}), 0, 0);
  std::vector<ShardedTensor> outside{{"w", zeros({3, 6}), {4, 6}, {2, 0}}};
  expect_error([&] { dc::load_checkpoint(ckpt, outside); }, {"\"w\"", "does not fit"});
}

TEST(Checkpoint, SaveRejectsShardsThatDoNotTileTheTensor) {
  ScratchDir dir("ckpt_tiling");
  Tensor a = global_tensor({8, 4});
  // Two ranks both claim rows 2..5 as their main replica.
  expect_error(
      [&] {
        save_as_ranks(dir.str(), 5,
                      {{piece("a", a, {0, 0}, {6, 4})}, {piece("a", a, {2, 0}, {6, 4})}});
      },
      {"\"a\"", "rank 0", "rank 1", "overlaps", "replica_id"});
  // Rows 4..7 saved by nobody.
  expect_error(
      [&] {
        save_as_ranks(dir.str(), 5, {{piece("a", a, {0, 0}, {4, 4})}, {}});
      },
      {"\"a\"", "cover 16 of 32"});
  // Disagreeing dtypes across ranks.
  expect_error(
      [&] {
        save_as_ranks(
            dir.str(), 5,
            {{piece("a", a, {0, 0}, {4, 4})}, {piece("a", a.to(DType::BF16), {4, 0}, {4, 4})}});
      },
      {"\"a\"", "float32", "bfloat16", "rank 1"});
  // A shard outside its global shape.
  expect_error(
      [&] {
        dc::save_checkpoint(dir.str(), 5, {ShardedTensor{"a", zeros({4, 4}), {8, 4}, {6, 0}}});
      },
      {"\"a\"", "does not fit"});
  // save_checkpoint failing after the shards are written (they leave half the tensor unsaved):
  // the partial shards are removed, so a save that ran out of disk does not keep it full.
  expect_error(
      [&] {
        dc::save_checkpoint(dir.str(), 6, {ShardedTensor{"b", zeros({4, 4}), {8, 4}, {0, 0}}});
      },
      {"\"b\"", "cover 16 of 32"});
  EXPECT_FALSE(fs::exists(dir / "iter_0000006.tmp"));
  EXPECT_FALSE(fs::exists(dir / "iter_0000005.tmp"));
  // Nothing was published by the failed saves.
  EXPECT_FALSE(fs::exists(dir / "iter_0000006"));
  EXPECT_FALSE(fs::exists(dir / "iter_0000005"));
  EXPECT_FALSE(fs::exists(dir / "latest_checkpointed_iteration.txt"));
  EXPECT_FALSE(dc::find_latest_valid_checkpoint(dir.str()).has_value());
}

TEST(Checkpoint, ResavingAnIterationReplacesItAtomically) {
  ScratchDir dir("ckpt_resave");
  Tensor a = global_tensor({3, 3}), b = global_tensor({3, 3}, DType::F32, 9);
  dc::save_checkpoint(dir.str(), 3, {ShardedTensor::whole("x", a)});
  // A stale temporary directory from a crashed save is replaced, not reused.
  fs::create_directories(dir / "iter_0000003.tmp");
  write_bytes(dir / "iter_0000003.tmp" / "rank_00007.safetensors", "junk");
  const std::string ckpt = dc::save_checkpoint(dir.str(), 3, {ShardedTensor::whole("x", b)});
  EXPECT_TENSOR_CLOSE(dc::load_global_tensor(ckpt, "x"), b, 0, 0);
  EXPECT_FALSE(fs::exists(dir / "iter_0000003.tmp"));
  EXPECT_FALSE(fs::exists(fs::path(ckpt) / "rank_00007.safetensors"));
  for (const auto& e : fs::directory_iterator(dir.path())) {
    const std::string n = e.path().filename().string();
    EXPECT_TRUE(n == "iter_0000003" || n == "latest_checkpointed_iteration.txt") << n;
  }
}

// A checkpoint with one shard file of each rank of 2, for the corruption tests.
std::string two_rank_checkpoint(const ScratchDir& dir, int64_t iteration, const Tensor& a) {
  return save_as_ranks(dir.str(), iteration,
                       {{piece("a", a, {0, 0}, {4, 8})}, {piece("a", a, {4, 0}, {4, 8})}});
}

TEST(Checkpoint, CorruptPartialAndMissingCheckpointsAreClearErrors) {
  ScratchDir dir("ckpt_corrupt");
  Tensor a = global_tensor({8, 8});
  auto load_a = [&](const std::string& ckpt) {
    std::vector<ShardedTensor> req{request("a", a, {0, 0}, {8, 8})};
    dc::load_checkpoint(ckpt, req);
  };
  {  // a flipped byte in the data of rank 1's file
    const std::string ckpt = two_rank_checkpoint(dir, 1, a);
    const fs::path f = fs::path(ckpt) / "rank_00001.safetensors";
    flip_byte(f, fs::file_size(f) - 3);
    expect_error([&] { load_a(ckpt); }, {f.string(), "corrupt", "CRC-32C"});
    expect_error([&] { dc::verify_checkpoint(ckpt); }, {f.string(), "corrupt"});
  }
  {  // a truncated shard file
    const std::string ckpt = two_rank_checkpoint(dir, 2, a);
    const fs::path f = fs::path(ckpt) / "rank_00000.safetensors";
    truncate_file(f, fs::file_size(f) / 2);
    expect_error([&] { load_a(ckpt); }, {f.string(), "truncated"});
  }
  {  // a missing shard file
    const std::string ckpt = two_rank_checkpoint(dir, 3, a);
    const fs::path f = fs::path(ckpt) / "rank_00001.safetensors";
    fs::remove(f);
    expect_error([&] { load_a(ckpt); }, {f.string(), "missing", "incomplete"});
    // Loading only the rows rank 0 saved does not need the missing file.
    std::vector<ShardedTensor> top{request("a", a, {0, 0}, {4, 8})};
    dc::load_checkpoint(ckpt, top);
    EXPECT_TENSOR_CLOSE(top[0].data, slice(a, {0, 0}, {4, 8}), 0, 0);
  }
  {  // metadata.json missing, truncated, or not ours
    const std::string ckpt = two_rank_checkpoint(dir, 4, a);
    const fs::path m = fs::path(ckpt) / "metadata.json";
    const std::string text = read_bytes(m);
    write_bytes(m, text.substr(0, text.size() / 2));
    expect_error([&] { load_a(ckpt); }, {m.string(), "not valid JSON"});
    write_bytes(m, R"({"hello": 1})");
    expect_error([&] { load_a(ckpt); }, {m.string(), "not an mcore checkpoint"});
    json j = json::parse(text);
    j["tensors"]["a"]["shards"][0]["file"] = "rank_00009.safetensors";
    write_bytes(m, j.dump());
    expect_error([&] { load_a(ckpt); }, {"\"a\"", "rank_00009.safetensors", "not listed"});
    fs::remove(m);
    expect_error([&] { load_a(ckpt); }, {ckpt, "no metadata.json"});
  }
  expect_error([&] { dc::verify_checkpoint((dir / "iter_0000099").string()); },
               {"iter_0000099", "does not exist"});
}

TEST(Checkpoint, AutoResumeNeverPicksAnIncompleteCheckpoint) {
  ScratchDir dir("ckpt_resume");
  Tensor a = global_tensor({8, 8});
  EXPECT_FALSE(dc::find_latest_valid_checkpoint(dir.str()).has_value());
  EXPECT_FALSE(dc::find_latest_valid_checkpoint((dir / "absent").string()).has_value());
  EXPECT_FALSE(dc::read_latest_checkpoint_dir(dir.str()).has_value());
  two_rank_checkpoint(dir, 10, a);
  const std::string good = two_rank_checkpoint(dir, 20, a);
  // Newer but broken: a crash mid-save (temporary dir), a corrupt file, a missing file, a
  // directory without metadata.
  const std::string c30 = two_rank_checkpoint(dir, 30, a);
  flip_byte(fs::path(c30) / "rank_00000.safetensors", 100);
  const std::string c40 = two_rank_checkpoint(dir, 40, a);
  fs::remove(fs::path(c40) / "rank_00001.safetensors");
  fs::create_directories(dir / "iter_0000050");
  const std::string tmp = dc::begin_save(dir.str(), 60);
  dc::write_rank_shards(tmp, 0, {piece("a", a, {0, 0}, {8, 8})});
  fs::create_directories(dir / "iter_junk");
  write_bytes(dir / "latest_checkpointed_iteration.txt", "40");

  auto found = dc::find_latest_valid_checkpoint(dir.str());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->iteration, 20);
  EXPECT_EQ(found->dir, good);
  // A checkpoint whose metadata says another iteration than its directory is skipped too.
  fs::rename(good, dir / "iter_0000025");
  EXPECT_EQ(dc::find_latest_valid_checkpoint(dir.str())->iteration, 10);
}

TEST(Checkpoint, LatestFile) {
  ScratchDir dir("ckpt_latest");
  write_bytes(dir / "latest_checkpointed_iteration.txt", "release");
  EXPECT_EQ(*dc::read_latest_checkpoint_dir(dir.str()), (dir / "release").string());
  write_bytes(dir / "latest_checkpointed_iteration.txt", "1500\n");
  EXPECT_EQ(*dc::read_latest_checkpoint_dir(dir.str()), (dir / "iter_0001500").string());
  write_bytes(dir / "latest_checkpointed_iteration.txt", "12x");
  expect_error([&] { dc::read_latest_checkpoint_dir(dir.str()); },
               {"latest_checkpointed_iteration.txt", "\"12x\"", "release"});
  EXPECT_EQ(dc::checkpoint_dir_name(100), "iter_0000100");
  EXPECT_EQ(dc::checkpoint_dir_name(12345678), "iter_12345678");
}

TEST(Checkpoint, Crc32cKnownAnswers) {
  // RFC 3720 (iSCSI) test vectors and the classic "123456789" check value.
  EXPECT_EQ(crc32c("123456789", 9), 0xe3069283u);
  std::string zeros32(32, '\0'), ones32(32, '\xff');
  EXPECT_EQ(crc32c(zeros32.data(), 32), 0x8a9136aau);
  EXPECT_EQ(crc32c(ones32.data(), 32), 0x62a8ab43u);
  // Chunked equals whole, at every split point (the hardware and table paths agree).
  std::string s;
  for (int i = 0; i < 100; ++i) s.push_back(char(i * 37 + 11));
  for (size_t k = 0; k <= s.size(); ++k) {
    EXPECT_EQ(crc32c_extend(crc32c(s.data(), k), s.data() + k, s.size() - k),
              crc32c(s.data(), s.size()));
  }
}

}  // namespace
}  // namespace mcore::testing
