// TensorBoard event files written directly, without TensorFlow or protobuf (the trainer's
// --tensorboard-dir). A file events.out.tfevents.<unix time>.<hostname> holds TFRecords
//   u64 length | u32 masked CRC-32C of length | Event bytes | u32 masked CRC-32C of the bytes
// each an Event protobuf (wall_time = 1: double, step = 2: int64, file_version = 3: string,
// summary = 5: Summary{repeated Value value = 1: {tag = 1: string, simple_value = 2: float}}),
// the first one carrying file_version "brain.Event:2". The `tensorboard` package reads them
// (tests/training checks this against the real package).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace mcore::training {

class TensorBoardWriter {
 public:
  // Creates log_dir if needed and a new event file in it (never appends to an existing one).
  explicit TensorBoardWriter(const std::string& log_dir, const std::string& filename_suffix = "");
  ~TensorBoardWriter();  // flushes and closes; errors there are only logged
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // SummaryWriter.add_scalar. wall_time < 0: now.
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time = -1);
  // Several scalars of one step in one event.
  void add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                   double wall_time = -1);
  // Makes everything written so far visible to readers (fflush; fsync when `sync`).
  void flush(bool sync = false);
  void close();

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// The scalar events of an event file (ours, or any TensorBoard file: other events and fields
// are skipped), for tests and tools. Checks every record's length and data CRCs; a corrupt
// record, or a truncated one unless it is the last (a write cut short), is an error naming the
// file and the record's byte offset.
struct ScalarEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string tag;
  float value = 0;
};
struct EventFileContents {
  std::string file_version;  // from the first event
  std::vector<ScalarEvent> scalars;
  int64_t num_records = 0;
  bool truncated_tail = false;  // the last record was cut short (and ignored)
};
EventFileContents read_event_file(const std::string& path);

// Protobuf encoding of one Event (exposed for tests). Empty `file_version` and `values`
// leave those fields out.
std::string encode_event(double wall_time, int64_t step, const std::string& file_version,
                         const std::vector<std::pair<std::string, double>>& values);
// TFRecord framing of one record.
std::string frame_record(const std::string& data);

}  // namespace mcore::training
