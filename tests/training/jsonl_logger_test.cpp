// The JSONL metrics file: one object per line in the given key order, non-finite values as
// null, resume dropping records past the checkpoint and a partial last line, and errors naming
// the file and line.
#include "mcore/training/jsonl_logger.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/dist_checkpointing/ckpt_test_util.h"

namespace mcore::testing {
namespace {

using training::JsonlLogger;
using training::read_jsonl;

TEST(JsonlLogger, OneObjectPerIteration) {
  ScratchDir dir("jsonl");
  const std::string path = (dir / "logs" / "metrics.jsonl").string();
  {
    JsonlLogger log(path);
    for (int it = 1; it <= 3; ++it) {
      log.log_iteration(it,
                        {{"lm loss", 4.0 / it},
                         {"learning rate", 1e-4 * it},
                         {"grad norm", it == 2 ? std::numeric_limits<double>::quiet_NaN() : 1.0}});
    }
    log.log({{"iteration", 3}, {"validation lm loss", 1.25}});
  }
  const std::string text = read_bytes(path);
  EXPECT_EQ(text.rfind("{\"iteration\":1,\"time\":", 0), 0u) << text;  // key order kept
  auto recs = read_jsonl(path);
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[1]["iteration"], 2);
  EXPECT_DOUBLE_EQ(recs[1]["lm loss"].get<double>(), 2.0);
  EXPECT_TRUE(recs[1]["grad norm"].is_null());  // NaN: JSON has none
  EXPECT_GT(recs[0]["time"].get<double>(), 1.6e9);
  EXPECT_EQ(recs[3]["validation lm loss"], 1.25);
  // Appends, never truncates.
  {
    JsonlLogger log(path);
    log.log_iteration(4, {{"lm loss", 0.5}});
  }
  EXPECT_EQ(read_jsonl(path).size(), 5u);
  JsonlLogger log(path);
  expect_error([&] { log.log(nlohmann::ordered_json::array({1, 2})); }, {"JSON object"});
  log.close();
  expect_error([&] { log.log_iteration(1, {}); }, {"after close"});
}

TEST(JsonlLogger, ResumeDropsRecordsAfterTheCheckpointAndAPartialLine) {
  ScratchDir dir("jsonl_resume");
  const std::string path = (dir / "m.jsonl").string();
  std::string text;
  for (int it = 1; it <= 8; ++it) {
    text += "{\"iteration\":";
    text += std::to_string(it);
    text += ",\"lm loss\":1.0}\n";
  }
  text += "{\"note\":\"no iteration\"}\n";
  text += "{\"iteration\":9,\"lm lo";  // killed mid-write
  write_bytes(dir / "m.jsonl", text);
  expect_error([&] { read_jsonl(path); }, {path, "line 10", "no newline"});
  EXPECT_EQ(read_jsonl(path, /*allow_partial_last_line=*/true).size(), 9u);
  {
    JsonlLogger log(path, /*resume_iteration=*/5);
    log.log_iteration(6, {{"lm loss", 0.75}});
  }
  auto recs = read_jsonl(path);
  ASSERT_EQ(recs.size(), 7u);  // 1..5, the note, the new 6
  EXPECT_EQ(recs[4]["iteration"], 5);
  EXPECT_EQ(recs[5]["note"], "no iteration");
  EXPECT_EQ(recs[6]["iteration"], 6);
  EXPECT_EQ(recs[6]["lm loss"], 0.75);
  // A complete last line without its newline is also dropped (the write may not have finished).
  write_bytes(dir / "m.jsonl", "{\"iteration\":1}\n{\"iteration\":2}");
  { JsonlLogger log(path, 10); }
  EXPECT_EQ(read_jsonl(path).size(), 1u);
}

TEST(JsonlLogger, CorruptAndMissingFiles) {
  ScratchDir dir("jsonl_bad");
  const std::string path = (dir / "m.jsonl").string();
  write_bytes(dir / "m.jsonl", "{\"iteration\":1}\nnot json\n{\"iteration\":3}\n");
  expect_error([&] { read_jsonl(path); }, {path, "line 2", "not a JSON object"});
  // Resuming over a file corrupt in the middle is an error, not a silent rewrite.
  expect_error([&] { JsonlLogger log(path, 1); }, {path, "line 2"});
  expect_error([&] { read_jsonl((dir / "absent.jsonl").string()); },
               {"absent.jsonl", "does not exist"});
  write_bytes(dir / "blocker", "x");
  expect_error([&] { JsonlLogger log((dir / "blocker" / "m.jsonl").string()); }, {"blocker"});
}

}  // namespace
}  // namespace mcore::testing
