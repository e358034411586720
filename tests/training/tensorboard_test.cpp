// TensorBoard event files: the protobuf/TFRecord bytes against hand-computed encodings, the
// real `tensorboard` package reading our files back (read_tensorboard.py), and corrupt or
// truncated files.
#include "mcore/training/tensorboard_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "mcore/base/crc32c.h"
#include "tests/common/test_util.h"
#include "tests/dist_checkpointing/ckpt_test_util.h"

namespace mcore::testing {
namespace {

using json = nlohmann::json;
using training::TensorBoardWriter;

std::string le_bytes(const void* p, size_t n) {
  return std::string(static_cast<const char*>(p), n);
}

TEST(TensorBoard, EventEncodingMatchesProtobufWireFormat) {
  // Event{wall_time: 1.5, step: 300, summary{value{tag: "lm loss", simple_value: 2.0}}}
  const double wt = 1.5;
  const float v = 2.0f;
  std::string want("\x09");  // field 1, fixed64
  want += le_bytes(&wt, 8);
  want += std::string("\x10\xac\x02", 3);    // field 2, varint 300
  std::string value("\x0a\x07lm loss\x15");  // tag, simple_value (fixed32)
  value += le_bytes(&v, 4);
  std::string summary("\x0a");
  summary += char(value.size());
  summary += value;
  want += '\x2a';  // field 5, bytes
  want += char(summary.size());
  want += summary;
  EXPECT_EQ(training::encode_event(1.5, 300, "", {{"lm loss", 2.0}}), want);
  // file_version: field 3; a zero step is left out (proto3).
  std::string version("\x09");
  version += le_bytes(&wt, 8);
  version +=
      "\x1a\x0d"
      "brain.Event:2";
  EXPECT_EQ(training::encode_event(1.5, 0, "brain.Event:2", {}), version);
  // Negative steps are 10-byte varints (int64 two's complement).
  const std::string neg = training::encode_event(0, -1, "", {});
  EXPECT_EQ(neg.substr(9), std::string("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11));
  // TFRecord framing: length, masked CRC of the length, data, masked CRC of the data.
  const std::string rec = training::frame_record("abc");
  ASSERT_EQ(rec.size(), 8u + 4 + 3 + 4);
  uint64_t len;
  uint32_t c1, c2;
  std::memcpy(&len, rec.data(), 8);
  std::memcpy(&c1, rec.data() + 8, 4);
  std::memcpy(&c2, rec.data() + 15, 4);
  EXPECT_EQ(len, 3u);
  EXPECT_EQ(c1, crc32c_mask(crc32c(rec.data(), 8)));
  EXPECT_EQ(c2, crc32c_mask(crc32c("abc", 3)));
  EXPECT_EQ(crc32c_unmask(crc32c_mask(0x12345678u)), 0x12345678u);
}

struct Logged {
  std::string tag;
  int64_t step;
  double value;
  double wall_time;
};

// Writes the scalars the trainer logs; returns what was logged.
std::vector<Logged> write_run(const std::string& dir, std::string* path) {
  TensorBoardWriter w(dir);
  *path = w.path();
  std::vector<Logged> logged;
  for (int64_t it = 1; it <= 5; ++it) {
    const double wt = 1.7e9 + it * 0.25;
    const std::vector<std::pair<std::string, double>> vals = {
        {"lm loss", 10.0 / it + 0.123},
        {"learning-rate", 3e-4 * it},
        {"grad-norm", -1.5 * it},
        {"throughput/tokens per second", 123456.0 * it}};
    w.add_scalars(vals, it * 10, wt);
    for (const auto& [t, v] : vals) logged.push_back({t, it * 10, v, wt});
  }
  // A step past 2^31 and a single add_scalar with the current time.
  w.add_scalar("loss-scale", 65536.0, int64_t(1) << 33, 1.8e9);
  logged.push_back({"loss-scale", int64_t(1) << 33, 65536.0, 1.8e9});
  w.close();
  return logged;
}

TEST(TensorBoard, TensorboardPackageReadsOurEventFile) {
  ScratchDir dir("tb_ref");
  std::string path;
  const std::vector<Logged> logged = write_run(dir.str(), &path);
  EXPECT_NE(fs::path(path).filename().string().find("events.out.tfevents."), std::string::npos);
  const fs::path script = fs::path(__FILE__).parent_path() / "read_tensorboard.py";
  const std::string out_json =
      (fs::temp_directory_path() / ("tb_seen_" + std::to_string(::getpid()) + ".json")).string();
  std::string out;
  const int rc = run_command(
      python_executable() + " " + script.string() + " " + dir.str() + " " + out_json, &out);
  ASSERT_NE(rc, 77) << "the tensorboard package is not installed (scripts/setup installs it): "
                    << out;
  ASSERT_EQ(rc, 0) << out;
  const json seen = json::parse(read_bytes(out_json));
  fs::remove(out_json);
  EXPECT_EQ(seen["first_event"]["file_version"], "brain.Event:2");
  EXPECT_EQ(seen["num_events"], 1 + 5 + 1);
  std::map<std::string, std::vector<Logged>> by_tag;
  for (const Logged& l : logged) by_tag[l.tag].push_back(l);
  EXPECT_EQ(seen["scalars"].size(), by_tag.size());
  for (const auto& [tag, want] : by_tag) {
    SCOPED_TRACE(tag);
    ASSERT_TRUE(seen["scalars"].contains(tag));
    const json& got = seen["scalars"][tag];
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_DOUBLE_EQ(got[i][0].get<double>(), want[i].wall_time);
      EXPECT_EQ(got[i][1].get<int64_t>(), want[i].step);
      // simple_value is a float: exactly the float nearest the logged double.
      EXPECT_EQ(got[i][2].get<double>(), double(float(want[i].value)));
    }
  }
  // Our own reader agrees.
  auto mine = training::read_event_file(path);
  EXPECT_EQ(mine.file_version, "brain.Event:2");
  EXPECT_EQ(mine.num_records, 7);
  ASSERT_EQ(mine.scalars.size(), logged.size());
  for (size_t i = 0; i < logged.size(); ++i) {
    EXPECT_EQ(mine.scalars[i].tag, logged[i].tag);
    EXPECT_EQ(mine.scalars[i].step, logged[i].step);
    EXPECT_EQ(mine.scalars[i].value, float(logged[i].value));
  }
}

TEST(TensorBoard, TruncatedAndCorruptFiles) {
  ScratchDir dir("tb_bad");
  std::string path;
  const std::vector<Logged> logged = write_run(dir.str(), &path);
  const uintmax_t size = fs::file_size(path);
  // A kill mid-write cuts the last record: every complete record still reads, in our reader
  // and in tensorboard's.
  truncate_file(path, size - 5);
  auto cut = training::read_event_file(path);
  EXPECT_TRUE(cut.truncated_tail);
  EXPECT_EQ(cut.scalars.size(), logged.size() - 1);
  const fs::path script = fs::path(__FILE__).parent_path() / "read_tensorboard.py";
  const std::string out_json =
      (fs::temp_directory_path() / ("tb_cut_" + std::to_string(::getpid()) + ".json")).string();
  std::string out;
  const int rc = run_command(
      python_executable() + " " + script.string() + " " + dir.str() + " " + out_json, &out);
  ASSERT_EQ(rc, 0) << out;
  const json seen = json::parse(read_bytes(out_json));
  fs::remove(out_json);
  EXPECT_FALSE(seen["scalars"].contains("loss-scale"));
  EXPECT_EQ(seen["scalars"]["lm loss"].size(), 5u);
  // A flipped byte inside a record: an error naming the file and the record.
  flip_byte(path, 60);
  expect_error([&] { training::read_event_file(path); }, {path, "record at byte", "CRC"});
  expect_error([&] { training::read_event_file((dir / "absent").string()); },
               {"absent", "cannot open"});
}

TEST(TensorBoard, WriterErrorsAndSeparateFiles) {
  ScratchDir dir("tb_err");
  write_bytes(dir / "a_file", "x");
  expect_error([&] { TensorBoardWriter w((dir / "a_file").string()); },
               {"a_file", "cannot create"});
  // Two writers in the same directory and second never share a file.
  TensorBoardWriter a(dir.str()), b(dir.str());
  EXPECT_NE(a.path(), b.path());
  a.add_scalar("x", 1.0, 1);
  b.add_scalar("x", 2.0, 1);
  a.close();
  expect_error([&] { a.add_scalar("x", 1.0, 2); }, {"after close"});
  expect_error([&] { b.add_scalar("", 1.0, 2); }, {"empty tag"});
  b.flush(/*sync=*/true);
  EXPECT_EQ(training::read_event_file(b.path()).scalars.at(0).value, 2.0f);
}

}  // namespace
}  // namespace mcore::testing
