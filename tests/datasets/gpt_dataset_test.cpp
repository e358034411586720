// GPTDataset / BlendedDataset / BlendedMegatronDatasetBuilder against megatron-core itself
// (tests/reference/gen_gpt_dataset.py runs megatron-core's builder on small indexed datasets
// and dumps every sample and index array). Everything must be exactly equal: sample tokens,
// labels, loss masks, position ids, attention masks, the index arrays, the cache file names
// (MD5 of the description), and Megatron's cache files must be reused as they are.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mcore/datasets/blended_megatron_dataset_builder.h"
#include "mcore/datasets/indexed_dataset.h"
#include "mcore/datasets/md5.h"
#include "mcore/datasets/mock_gpt_dataset.h"
#include "mcore/datasets/py_json.h"
#include "tests/common/test_util.h"

namespace mcore::datasets {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using mcore::testing::has_ref;
using mcore::testing::load_ref;
using mcore::testing::ref_dir;

constexpr const char* G = "gpt_dataset";
const char* kSplits[] = {"train", "valid", "test"};

PyJson to_py(const json& j) {
  if (j.is_null()) return PyJson::null();
  if (j.is_boolean()) return PyJson::boolean(j.get<bool>());
  if (j.is_number_integer()) return PyJson::integer(j.get<int64_t>());
  if (j.is_number_float()) return PyJson::real(j.get<double>());
  if (j.is_string()) return PyJson::string(j.get<std::string>());
  if (j.is_array()) {
    PyJson l = PyJson::list();
    for (const auto& x : j) l.push(to_py(x));
    return l;
  }
  PyJson o = PyJson::object();
  for (auto it = j.begin(); it != j.end(); ++it) o.set(it.key(), to_py(it.value()));
  return o;
}

json load_manifest() {
  std::ifstream f(ref_dir() + "/" + G + "/manifest.json");
  return json::parse(f);
}

std::vector<std::string> strings(const json& j) {
  std::vector<std::string> v;
  for (const auto& x : j) v.push_back(x.get<std::string>());
  return v;
}

GPTDatasetConfig config_for(const json& c, const std::optional<std::string>& cache) {
  GPTDatasetConfig cfg;
  cfg.random_seed = c["seed"].get<uint32_t>();
  cfg.sequence_length = c["seq"].get<int64_t>();
  if (!c["data_path"].is_null()) {
    cfg.blend = get_blend_from_list(strings(c["data_path"]));
    cfg.split = c["split"].get<std::string>();
  } else if (!c["per_split"].is_null()) {
    std::array<std::optional<Blend>, kNumSplits> per{};
    for (int s = 0; s < kNumSplits; ++s)
      if (!c["per_split"][s].is_null()) per[s] = get_blend_from_list(strings(c["per_split"][s]));
    cfg.blend_per_split = per;
  }
  cfg.path_to_cache = cache;
  cfg.tokenizer_identifiers = to_py(c["tokenizer"]);
  cfg.eod_token_id = c["eod"].get<int64_t>();
  if (!c["pad"].is_null()) cfg.pad_token_id = c["pad"].get<int64_t>();
  cfg.vocab_size = c["vocab"].get<int64_t>();
  cfg.reset_position_ids = c["reset_position_ids"].get<bool>();
  cfg.reset_attention_mask = c["reset_attention_mask"].get<bool>();
  cfg.eod_mask_loss = c["eod_mask_loss"].get<bool>();
  cfg.create_attention_mask = c["create_attention_mask"].get<bool>();
  cfg.add_extra_token_to_sequence = c["add_extra_token"].get<bool>();
  cfg.drop_last_partial_validation_sequence =
      c["drop_last_partial_validation_sequence"].get<bool>();
  return cfg;
}

std::array<std::optional<int64_t>, kNumSplits> sizes_for(const json& c) {
  std::array<std::optional<int64_t>, kNumSplits> sizes{};
  for (int s = 0; s < kNumSplits; ++s)
    if (!c["sizes"][s].is_null()) sizes[s] = c["sizes"][s].get<int64_t>();
  return sizes;
}

template <class T>
std::vector<T> ref_vec(const std::string& name) {
  return to_vector<T>(load_ref(G, name));
}

// Compares every dumped sample and index array of one split.
void check_split(const std::string& prefix, const json& info, const SampleDataset& ds) {
  SCOPED_TRACE(prefix);
  ASSERT_EQ(ds.size(), info["size"].get<int64_t>());
  const int64_t n = info["dumped"].get<int64_t>();
  if (n > 0) {
    std::vector<int64_t> tok, lab, pos;
    std::vector<float> lm;
    std::vector<uint8_t> am;
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < n; ++i) {
      GPTSample s = ds.get(i);
      for (auto [src, dst] :
           {std::pair{&s.tokens, &tok}, {&s.labels, &lab}, {&s.position_ids, &pos}}) {
        auto v = to_vector<int64_t>(*src);
        dst->insert(dst->end(), v.begin(), v.end());
      }
      auto v = to_vector<float>(s.loss_mask);
      lm.insert(lm.end(), v.begin(), v.end());
      if (s.attention_mask.defined()) {
        auto m = to_vector<uint8_t>(s.attention_mask.to(DType::U8));
        am.insert(am.end(), m.begin(), m.end());
      }
      ids.push_back(s.dataset_id);
    }
    EXPECT_EQ(tok, ref_vec<int64_t>(prefix + "_tokens"));
    EXPECT_EQ(lab, ref_vec<int64_t>(prefix + "_labels"));
    EXPECT_EQ(pos, ref_vec<int64_t>(prefix + "_position_ids"));
    EXPECT_EQ(lm, ref_vec<float>(prefix + "_loss_mask"));
    if (info.contains("attention_mask")) {
      EXPECT_EQ(am, ref_vec<uint8_t>(prefix + "_attention_mask"));
    } else {
      EXPECT_TRUE(am.empty());
    }
    if (has_ref(G, prefix + "_dataset_id")) {
      EXPECT_EQ(ids, ref_vec<int64_t>(prefix + "_dataset_id"));
    }
  }
  if (info["blended"].get<bool>()) {
    const auto& b = dynamic_cast<const BlendedDataset&>(ds);
    EXPECT_EQ(b.unique_description_hash(), info["hash"].get<std::string>());
    const auto di = b.dataset_index();
    EXPECT_EQ(std::vector<int64_t>(di.begin(), di.end()),
              ref_vec<int64_t>(prefix + "_dataset_index"));
    EXPECT_EQ(b.dataset_sample_index(), ref_vec<int64_t>(prefix + "_dataset_sample_index"));
  } else {
    const auto& g = dynamic_cast<const GPTDataset&>(ds);
    EXPECT_EQ(g.unique_description_hash(), info["hash"].get<std::string>());
    if (has_ref(G, prefix + "_document_index")) {
      EXPECT_EQ(g.document_index(), ref_vec<int32_t>(prefix + "_document_index"));
      EXPECT_EQ(g.sample_index(), ref_vec<int64_t>(prefix + "_sample_index"));
      EXPECT_EQ(g.shuffle_index(), ref_vec<int64_t>(prefix + "_shuffle_index"));
    }
    if (n > 0) {
      // The batch-padding sample (idx None): sample 0 with no loss.
      GPTSample p = g.get_padding();
      EXPECT_EQ(to_vector<float>(p.loss_mask), ref_vec<float>(prefix + "_padding_loss_mask"));
      EXPECT_EQ(to_vector<int64_t>(p.tokens), ref_vec<int64_t>(prefix + "_padding_tokens"));
    }
  }
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("mcore_gpt_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> v;
  if (!fs::exists(dir)) return v;
  for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

TEST(GPTDatasetReference, EveryCaseMatchesMegatronCore) {
  if (!has_ref(G, "single_a_train_tokens"))
    FAIL() << "reference data missing: the reference_data CTest fixture must run first";
  const json manifest = load_manifest();
  int cases = 0;
  for (const auto& c : manifest["cases"]) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    const bool cached = !c["cache_dir"].is_null();
    const fs::path cache = temp_dir(name);
    BlendedMegatronDatasetBuilder builder(
        sizes_for(c), config_for(c, cached ? std::optional(cache.string()) : std::nullopt));
    SplitDatasets ds = builder.build();
    for (int s = 0; s < kNumSplits; ++s) {
      if (!c["splits"].contains(kSplits[s])) {
        EXPECT_FALSE(ds[s]) << kSplits[s];
        continue;
      }
      ASSERT_TRUE(ds[s]) << kSplits[s];
      check_split(name + "_" + kSplits[s], c["splits"][kSplits[s]], *ds[s]);
    }
    if (cached) {
      // Same cache file names as Megatron: same descriptions, same MD5s.
      EXPECT_EQ(listing(cache), strings(c["cache_files"]));
      // Megatron's own cache files are taken as they are (a copy: the test must not touch them).
      const fs::path theirs = temp_dir(name + "_theirs");
      fs::copy(c["cache_dir"].get<std::string>(), theirs);
      BlendedMegatronDatasetBuilder again(sizes_for(c), config_for(c, theirs.string()));
      SplitDatasets ds2 = again.build();
      for (int s = 0; s < kNumSplits; ++s) {
        if (!ds2[s]) continue;
        if (auto g = std::dynamic_pointer_cast<const GPTDataset>(ds2[s])) {
          EXPECT_TRUE(g->loaded_from_cache());
        }
        if (auto b = std::dynamic_pointer_cast<const BlendedDataset>(ds2[s])) {
          EXPECT_TRUE(b->loaded_from_cache());
        }
        check_split(name + "_" + kSplits[s], c["splits"][kSplits[s]], *ds2[s]);
      }
      EXPECT_EQ(listing(theirs), strings(c["cache_files"]));  // nothing rebuilt or added
      fs::remove_all(theirs);
    }
    fs::remove_all(cache);
    ++cases;
  }
  EXPECT_GE(cases, 15);
}

// A valid-looking but damaged or stale cache is rebuilt, never trusted.
TEST(GPTDatasetCache, CorruptOrStaleCacheIsRebuilt) {
  if (!has_ref(G, "single_a_train_tokens"))
    FAIL() << "reference data missing: the reference_data CTest fixture must run first";
  const json manifest = load_manifest();
  const json* c = nullptr;
  for (const auto& x : manifest["cases"])
    if (x["name"] == "single_a") c = &x;
  ASSERT_NE(c, nullptr);
  const fs::path cache = temp_dir("corrupt_cache");
  auto build = [&] {
    return BlendedMegatronDatasetBuilder(sizes_for(*c), config_for(*c, cache.string())).build();
  };
  SplitDatasets first = build();
  auto train = std::dynamic_pointer_cast<const GPTDataset>(first[0]);
  EXPECT_FALSE(train->loaded_from_cache());
  const std::string base =
      (cache / (train->unique_description_hash() + "-GPTDataset-train-")).string();
  EXPECT_TRUE(std::dynamic_pointer_cast<const GPTDataset>(build()[0])->loaded_from_cache());

  auto rebuilt_ok = [&](const char* what) {
    SCOPED_TRACE(what);
    SplitDatasets again = build();
    auto g = std::dynamic_pointer_cast<const GPTDataset>(again[0]);
    EXPECT_FALSE(g->loaded_from_cache());
    check_split("single_a_train", (*c)["splits"]["train"], *g);
    EXPECT_TRUE(std::dynamic_pointer_cast<const GPTDataset>(build()[0])->loaded_from_cache());
  };
  // Truncated shuffle index.
  fs::resize_file(base + "shuffle_index.npy", fs::file_size(base + "shuffle_index.npy") - 4);
  rebuilt_ok("truncated shuffle index");
  // Garbage sample index.
  { std::ofstream(base + "sample_index.npy", std::ios::trunc) << "not numpy"; }
  rebuilt_ok("garbage sample index");
  // Stale: a document index of another length (as if the data had changed).
  { std::ofstream(base + "description.txt", std::ios::app) << " "; }
  rebuilt_ok("stale description");
  fs::remove_all(cache);
}

TEST(GPTDatasetSplits, SplitParsingAndMatrixMatchMegatron) {
  std::vector<double> v = parse_and_normalize_split("969,30,1");
  EXPECT_EQ(v, (std::vector<double>{0.969, 0.03, 0.001}));
  SplitMatrix m = convert_split_vector_to_split_matrix(v);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(split_matrix_json(m).dumps(-1), "[[0, 0.969], [0.969, 0.999], [0.999, 1.0]]");
  EXPECT_EQ(
      split_matrix_json(convert_split_vector_to_split_matrix(parse_and_normalize_split("1,0")))
          .dumps(-1),
      "[[0, 1.0], null, null]");
  EXPECT_EQ(
      split_matrix_json(convert_split_vector_to_split_matrix(parse_and_normalize_split("0,1,0")))
          .dumps(-1),
      "[null, [0.0, 1.0], null]");
  EXPECT_THROW(parse_and_normalize_split("1,2,3,4"), Error);
  EXPECT_THROW(parse_and_normalize_split("0,0,0"), Error);
  auto b = get_blend_from_list({"30", "p1", "70", " p2 "});
  ASSERT_TRUE(b && b->weights);
  EXPECT_EQ(b->prefixes, (std::vector<std::string>{"p1", "p2"}));
  EXPECT_EQ(*b->weights, (std::vector<double>{30, 70}));
  auto u = get_blend_from_list({"p1", "p2"});
  EXPECT_FALSE(u->weights.has_value());
  // numpy's pairwise sum, not a plain loop: 9+ elements use 8 accumulators.
  std::vector<double> w(13);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.1 * static_cast<double>(i + 1) / 3.0;
  double r[8];
  for (int j = 0; j < 8; ++j) r[j] = w[j];
  double want = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  for (size_t i = 8; i < w.size(); ++i) want += w[i];
  EXPECT_EQ(numpy_sum(w), want);
  // 0.5% surplus per dataset.
  auto sz = get_size_per_split_per_dataset({0.3, 0.7}, {1000, 100, 10}, 0.005);
  EXPECT_EQ(sz[0], (std::array<int64_t, 3>{302, 31, 4}));
  EXPECT_EQ(sz[1], (std::array<int64_t, 3>{704, 71, 8}));
  // Weights that cannot be normalized are errors that say so (not a blend of NaNs).
  for (const auto& [bad, says] :
       {std::pair<std::vector<double>, std::string>{{0.0, 0.0}, "sum to 0"},
        {{0.5, -0.5, 1.0}, "non-negative"}}) {
    try {
      normalize(bad);
      ADD_FAILURE() << "no error for " << says;
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(says), std::string::npos) << e.message();
    }
  }
}

TEST(GPTDatasetHash, PythonJsonAndMd5) {
  EXPECT_EQ(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_hex("The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6");
  // Multi-block inputs and the 56/64-byte padding boundaries (values from Python's hashlib).
  EXPECT_EQ(md5_hex(std::string(200, 'a')), "887f30b43b2867f4a9accceee7d16e6c");
  EXPECT_EQ(md5_hex(std::string(56, 'a')), "3b0c8ac703f828b04c6c197006d17218");
  EXPECT_EQ(md5_hex(std::string(64, 'a')), "014842d480b571495a4a0363793f7367");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(python_float_repr(1e-5), "1e-05");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(123456789012345678.0), "1.2345678901234568e+17");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  PyJson o = PyJson::object();
  o.set("b", PyJson::integer(1)).set("a", PyJson::list({PyJson::null(), PyJson::real(0.5)}));
  o.set("s", PyJson::string("h\xc3\xa9\"\n"))
      .set("e", PyJson::list())
      .set("t", PyJson::boolean(true));
  EXPECT_EQ(o.dumps(4),
            "{\n    \"b\": 1,\n    \"a\": [\n        null,\n        0.5\n    ],\n    \"s\": "
            "\"h\\u00e9\\\"\\n\",\n    \"e\": [],\n    \"t\": true\n}");
}

TEST(GPTDatasetErrors, ClearErrors) {
  GPTDatasetConfig cfg;
  cfg.sequence_length = 0;
  EXPECT_THROW(cfg.finalize(), Error);
  GPTDatasetConfig c2;
  c2.sequence_length = 8;
  c2.blend = Blend{{"/nonexistent/prefix"}, std::nullopt};
  EXPECT_THROW(c2.finalize(), Error);  // --split missing
  c2.split = "1,0,0";
  try {
    BlendedMegatronDatasetBuilder({10, 0, 0}, c2).build();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("/nonexistent/prefix"), std::string::npos) << e.message();
  }
}

// An empty split: no samples asked -> an empty dataset; samples asked -> an error naming the
// split (megatron-core loops forever there).
TEST(GPTDatasetErrors, EmptySplit) {
  const fs::path dir = temp_dir("empty_split");
  fs::create_directories(dir);
  const std::string prefix = (dir / "d").string();
  {
    IndexedDatasetBuilder b(get_bin_path(prefix), DType::U16);
    for (int i = 0; i < 10; ++i) {
      b.add_item(std::vector<int32_t>{1, 2, 3, 0});
      b.end_document();
    }
    b.finalize(get_idx_path(prefix));
  }
  GPTDatasetConfig cfg;
  cfg.sequence_length = 4;
  cfg.blend = Blend{{prefix}, std::nullopt};
  cfg.split = "969,30,1";  // 10 documents: the test split gets none
  cfg.path_to_cache = (dir / "cache").string();
  SplitDatasets ds = BlendedMegatronDatasetBuilder({20, 0, 0}, cfg).build();
  ASSERT_TRUE(ds[1] && ds[2]);  // round(0.969 * 10) = round(0.999 * 10) = 10
  EXPECT_EQ(ds[1]->size(), 0);
  EXPECT_EQ(ds[2]->size(), 0);
  EXPECT_GE(ds[0]->size(), 20);
  try {
    BlendedMegatronDatasetBuilder({20, 0, 5}, cfg).build();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("test split"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("no tokens"), std::string::npos) << e.message();
  }
  fs::remove_all(dir);
}

// The mock dataset without megatron (the reference case above compares it with megatron-core).
TEST(MockGPTDataset, DocumentsEndWithEodAndCountUp) {
  MockGPTLowLevelDataset ll(100, 7);
  ASSERT_EQ(ll.num_sequences(), 100000);
  const int32_t len = ll.sequence_lengths()[0];
  std::vector<int64_t> t(static_cast<size_t>(len));
  ll.read_tokens(0, 0, len, t.data());
  EXPECT_EQ(t.back(), 7);
  for (int32_t i = 0; i + 1 < len; ++i) EXPECT_EQ(t[i], (i + 1) % 100);
}

}  // namespace
}  // namespace mcore::datasets
