// Rank layouts against megatron-core: tests/reference/data/rank_groups.json holds every group
// megatron-core 0.16.1's initialize_model_parallel creates for a set of layouts (made by
// tests/reference/make_rank_groups.py), and the errors it raises for impossible ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "mcore/base/error.h"
#include "mcore/parallel_state/model_parallel_layout.h"
#include "mcore/parallel_state/rank_generator.h"

namespace mcore::parallel_state {
namespace {

using nlohmann::json;

const json& reference() {
  static const json doc = [] {
    // Beside this source file: tests/parallel_state/../reference/data/rank_groups.json.
    auto path = std::filesystem::path(__FILE__).parent_path().parent_path() / "reference" / "data" /
                "rank_groups.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    return json::parse(in);
  }();
  return doc;
}

ModelParallelOptions options_of(const json& c) {
  ModelParallelOptions o;
  o.tensor_model_parallel_size = c["tp"];
  o.pipeline_model_parallel_size = c["pp"];
  o.context_parallel_size = c["cp"];
  o.expert_model_parallel_size = c["ep"];
  if (c["expert_tp"].get<int>() > 0) o.expert_tensor_parallel_size = c["expert_tp"].get<int>();
  o.num_distributed_optimizer_instances = c["num_distributed_optimizer_instances"];
  o.order = c["order"];
  return o;
}

std::string case_str(const json& c) {
  return "world=" + std::to_string(c["world"].get<int>()) +
         " tp=" + std::to_string(c["tp"].get<int>()) + " pp=" + std::to_string(c["pp"].get<int>()) +
         " cp=" + std::to_string(c["cp"].get<int>()) + " ep=" + std::to_string(c["ep"].get<int>()) +
         " expert_tp=" + std::to_string(c["expert_tp"].get<int>()) +
         " order=" + c["order"].get<std::string>() +
         " instances=" + std::to_string(c["num_distributed_optimizer_instances"].get<int>());
}

std::string strip_spaces(std::string s) {
  s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); }),
          s.end());
  return s;
}

TEST(RankGenerator, MegatronDocstringExample) {
  // generate_masked_orthogonal_rank_groups' docstring: sizes [tp=2, dp=3, pp=4], dp mask.
  RankGroups dp = generate_masked_orthogonal_rank_groups(24, {2, 3, 4}, {false, true, false});
  ASSERT_EQ(dp.size(), 8u);
  EXPECT_EQ(dp[0], (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(dp[1], (std::vector<int>{1, 3, 5}));
  EXPECT_EQ(dp[7], (std::vector<int>{19, 21, 23}));
}

TEST(RankGenerator, SixteenRanksTp2Pp4) {
  // initialize_model_parallel's docstring: 16 ranks, tp 2, pp 4 (so dp 2).
  RankGenerator gen(/*tp=*/2, /*ep=*/1, /*dp=*/2, /*pp=*/4, /*cp=*/1, "tp-cp-ep-dp-pp");
  EXPECT_EQ(gen.get_ranks("dp"),
            (RankGroups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
  EXPECT_EQ(gen.get_ranks("tp"),
            (RankGroups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(gen.get_ranks("pp"),
            (RankGroups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  // Token order does not matter; the order string does.
  EXPECT_EQ(gen.get_ranks("dp-tp"), gen.get_ranks("tp-dp"));
  EXPECT_EQ(gen.world_size(), 16);
}

TEST(RankGenerator, OmittedSizeOneAxesAreAppended) {
  RankGenerator gen(2, 1, 4, 1, 1, "TP-DP");
  EXPECT_EQ(gen.order(), "tp-dp-pp-ep-cp");
  EXPECT_EQ(gen.get_ranks("dp"), (RankGroups{{0, 2, 4, 6}, {1, 3, 5, 7}}));
  EXPECT_EQ(gen.get_ranks("cp").size(), 8u);
}

TEST(RankGenerator, RankOffsetShiftsEveryRank) {
  RankGenerator gen(2, 1, 2, 1, 1, "tp-dp", /*rank_offset=*/8);
  EXPECT_EQ(gen.get_ranks("dp"), (RankGroups{{8, 10}, {9, 11}}));
}

TEST(RankGenerator, Errors) {
  auto message_of = [](auto fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.message();
    }
    return "no error";
  };
  std::string m = message_of([] { RankGenerator(1, 2, 1, 1, 2, "tp-cp-ep-dp-pp"); });
  EXPECT_NE(m.find("expert parallel size (2) and context parallel size (2)"), std::string::npos)
      << m;
  m = message_of([] { RankGenerator(2, 1, 2, 2, 1, "tp-dp"); });
  EXPECT_NE(m.find("The size of (pp) is (2)"), std::string::npos) << m;
  EXPECT_NE(m.find("(tp-dp)"), std::string::npos) << m;
  m = message_of([] { RankGenerator(2, 1, 2, 1, 1, "tp-xp-dp"); });
  EXPECT_NE(m.find("unknown axis 'xp'"), std::string::npos) << m;
  m = message_of([] { RankGenerator(2, 1, 2, 1, 1, "tp-dp-tp"); });
  EXPECT_NE(m.find("names axis 'tp' twice"), std::string::npos) << m;
  m = message_of([] { RankGenerator(2, 1, 2, 1, 1, "tp-dp").get_ranks("tp-zz"); });
  EXPECT_NE(m.find("axis 'zz' is not in the order"), std::string::npos) << m;
  m = message_of([] { RankGenerator(0, 1, 2, 1, 1, "tp-dp"); });
  EXPECT_NE(m.find("The size of (tp) is (0)"), std::string::npos) << m;
}

// Every group kind megatron creates, with the same rank lists in the same order.
TEST(ModelParallelLayout, MatchesMegatronCore) {
  const json& doc = reference();
  ASSERT_EQ(doc["megatron_core_version"], "0.16.1");
  ASSERT_GE(doc["cases"].size(), 20u);
  for (const json& c : doc["cases"]) {
    SCOPED_TRACE(case_str(c));
    ModelParallelLayout layout = make_model_parallel_layout(c["world"], options_of(c));
    std::map<std::string, RankGroups> ours;
    for (const auto& g : layout.groups) ours[g.megatron_desc] = g.groups;
    std::map<std::string, RankGroups> theirs;
    for (const auto& [desc, groups] : c["groups"].items()) theirs[desc] = groups.get<RankGroups>();
    for (const auto& [desc, groups] : theirs) {
      auto it = ours.find(desc);
      ASSERT_NE(it, ours.end()) << "we do not build megatron's " << desc;
      EXPECT_EQ(it->second, groups) << desc << ": ours " << rank_groups_str(it->second)
                                    << "\nmegatron " << rank_groups_str(groups);
    }
    for (const auto& [desc, groups] : ours)
      EXPECT_TRUE(theirs.count(desc)) << "we build " << desc << " which megatron does not";
  }
}

// ProcessGroup::split needs every rank in at most one group of a kind (exactly one except for
// the embedding kinds, where middle pipeline stages are in none).
TEST(ModelParallelLayout, EachKindPartitionsTheWorld) {
  for (const json& c : reference()["cases"]) {
    SCOPED_TRACE(case_str(c));
    const int world = c["world"];
    ModelParallelLayout layout = make_model_parallel_layout(world, options_of(c));
    for (const auto& g : layout.groups) {
      std::vector<int> seen(world, 0);
      for (const auto& members : g.groups)
        for (int r : members) {
          ASSERT_TRUE(r >= 0 && r < world) << g.name;
          ++seen[r];
        }
      const bool subset =
          g.kind == GroupKind::kEmbedding || g.kind == GroupKind::kPositionEmbedding;
      for (int r = 0; r < world; ++r)
        if (subset)
          EXPECT_LE(seen[r], 1) << g.name << " rank " << r;
        else
          EXPECT_EQ(seen[r], 1) << g.name << " rank " << r;
    }
  }
}

TEST(ModelParallelLayout, SizesFollowFromWorld) {
  ModelParallelOptions o;
  o.tensor_model_parallel_size = 2;
  o.pipeline_model_parallel_size = 2;
  o.context_parallel_size = 2;
  o.expert_model_parallel_size = 4;
  o.expert_tensor_parallel_size = 1;
  ModelParallelLayout L = make_model_parallel_layout(32, o);
  EXPECT_EQ(L.data_parallel_size, 4);
  EXPECT_EQ(L.expert_data_parallel_size, 4);
  EXPECT_EQ(L.expert_tensor_parallel_size, 1);
  EXPECT_EQ(L.find(GroupKind::kInterPartialExpertData), nullptr);
  ASSERT_NE(L.find(GroupKind::kTensor), nullptr);
  EXPECT_STREQ(L.find(GroupKind::kTensor)->name, "tensor");
}

// Megatron's own error text must appear in ours (whitespace aside: megatron's messages carry a
// line-continuation gap and a missing space), and ours adds the sizes involved.
TEST(ModelParallelLayout, ErrorsCarryMegatronsMessage) {
  const json& errors = reference()["errors"];
  ASSERT_GE(errors.size(), 8u);
  for (const json& c : errors) {
    SCOPED_TRACE(case_str(c));
    try {
      make_model_parallel_layout(c["world"], options_of(c));
      ADD_FAILURE() << "accepted a layout megatron rejects";
    } catch (const Error& e) {
      const std::string expected = c["message"];
      EXPECT_NE(strip_spaces(e.message()).find(strip_spaces(expected)), std::string::npos)
          << "ours: " << e.message() << "\nmegatron: " << expected;
    }
  }
}

TEST(ModelParallelLayout, ErrorsNameTheSizes) {
  ModelParallelOptions o;
  o.tensor_model_parallel_size = 3;
  try {
    make_model_parallel_layout(8, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("tensor_model_parallel_size (3)"), std::string::npos) << e.message();
  }
  o = {};
  o.virtual_pipeline_model_parallel_size = 2;
  try {
    make_model_parallel_layout(8, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("greater than 1 with interleaved schedule"), std::string::npos)
        << e.message();
    EXPECT_NE(e.message().find("virtual_pipeline_model_parallel_size=2"), std::string::npos);
  }
  o = {};
  o.expert_model_parallel_size = 3;
  try {
    make_model_parallel_layout(8, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("expert_model_parallel_size (3)"), std::string::npos) << e.message();
  }
  o = {};
  o.context_parallel_size = 0;
  EXPECT_THROW(make_model_parallel_layout(8, o), Error);
}

}  // namespace
}  // namespace mcore::parallel_state
