// Layer assignment to pipeline stages and the interleaved schedule's table, against the
// layouts Megatron Core documents (get_transformer_layer_offset, get_schedule_table).
#include <gtest/gtest.h>

#include "mcore/pipeline_parallel/schedules.h"
#include "mcore/pipeline_parallel/stage_layers.h"
#include "tests/common/test_util.h"

namespace mcore::pipeline_parallel {
namespace {

std::vector<int64_t> layers_of(const PipelineLayout& l, int rank) {
  std::vector<int64_t> v;
  for (int c = 0; c < l.virtual_pipeline_model_parallel_size; ++c) {
    LayerRange r = get_layer_range(l, rank, c);
    for (int64_t i = 0; i < r.num_layers; ++i) v.push_back(r.offset + i);
  }
  return v;
}

// Runs `f`, which must throw an Error whose message contains `needle`.
template <class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(StageLayers, EvenSplit) {
  PipelineLayout l{8, 4, 1, {}, {}};
  EXPECT_EQ(layers_of(l, 0), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(layers_of(l, 3), (std::vector<int64_t>{6, 7}));
  validate_pipeline_layout(l);
}

TEST(StageLayers, VirtualStagesInterleaveChunks) {
  // Megatron's example: 8 layers, 2 stages, 2 virtual stages per rank:
  // rank 0 holds layers {0,1} and {4,5}, rank 1 {2,3} and {6,7}.
  PipelineLayout l{8, 2, 2, {}, {}};
  EXPECT_EQ(layers_of(l, 0), (std::vector<int64_t>{0, 1, 4, 5}));
  EXPECT_EQ(layers_of(l, 1), (std::vector<int64_t>{2, 3, 6, 7}));
  validate_pipeline_layout(l);
}

TEST(StageLayers, UnevenFirstAndLast) {
  PipelineLayout l{10, 4, 1, 1, 3};  // 1 | 3 | 3 | 3
  EXPECT_EQ(layers_of(l, 0), (std::vector<int64_t>{0}));
  EXPECT_EQ(layers_of(l, 1), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(layers_of(l, 3), (std::vector<int64_t>{7, 8, 9}));
  validate_pipeline_layout(l);
  // With virtual stages each rank's layers split evenly over its chunks, in virtual order.
  PipelineLayout v{12, 2, 2, 2, 10};  // rank 0: 2 layers, rank 1: 10
  EXPECT_EQ(layers_of(v, 0), (std::vector<int64_t>{0, 6}));
  EXPECT_EQ(layers_of(v, 1), (std::vector<int64_t>{1, 2, 3, 4, 5, 7, 8, 9, 10, 11}));
  validate_pipeline_layout(v);
}

TEST(StageLayers, ImpossibleLayoutsNameTheFlags) {
  expect_error(
      [] {
        get_layer_range(PipelineLayout{6, 4, 1, {}, {}}, 0);
      },
      "--decoder-first-pipeline-num-layers");
  expect_error(
      [] {
        get_layer_range(PipelineLayout{8, 2, 3, {}, {}}, 0, 0);
      },
      "virtual pipeline stages");
  expect_error([] { get_layer_range(PipelineLayout{9, 4, 1, 3, 3}, 1); }, "split evenly");
}

TEST(ScheduleTable, MatchesMegatronsExample) {
  // Megatron's comment for PP2, 5 microbatches, VP2, group size 3:
  //   microbatch 0 1 2 0 1 2 3 4 3 4, chunk 0 0 0 1 1 1 0 0 1 1.
  auto t = get_schedule_table(5, 2, 3);
  std::vector<int64_t> mb;
  std::vector<int> chunk;
  for (auto [m, c] : t) mb.push_back(m), chunk.push_back(c);
  EXPECT_EQ(mb, (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 3, 4, 3, 4}));
  EXPECT_EQ(chunk, (std::vector<int>{0, 0, 0, 1, 1, 1, 0, 0, 1, 1}));
}

}  // namespace
}  // namespace mcore::pipeline_parallel
