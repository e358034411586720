// tools/preprocess_data end to end: JSON lines of the tokenizer reference corpus (every
// language and edge case of tests/reference/gen_tokenizers.py) through the real binary, then
// read back with mcore's IndexedDataset and with megatron-core's own IndexedDataset (PyPI
// package, via tests/tools/read_megatron_indexed.py): both must give exactly the tokens the
// tokenizer produces, with eod appended and Megatron's document structure.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mcore/datasets/indexed_dataset.h"
#include "mcore/tokenizers/hf_tokenizer.h"
#include "mcore/tokenizers/simple_tokenizers.h"
#include "tests/tokenizers/tokenizer_ref.h"

namespace mcore::testing {
namespace {

namespace fs = std::filesystem;
using tokenizers::TokenId;

fs::path tool_path() {
  return fs::canonical("/proc/self/exe").parent_path().parent_path() / "tools" / "preprocess_data";
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("mcore_pp_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Runs a command; returns its exit status and (in *output) what it printed.
int run(const std::string& cmd, std::string* output = nullptr) {
  const std::string log =
      (fs::temp_directory_path() / ("mcore_pp_cmd_" + std::to_string(getpid()))).string();
  const int rc = std::system((cmd + " > " + log + " 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  if (output) *output = ss.str();
  fs::remove(log);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::vector<int64_t> read_npy_i64(const fs::path& p) {
  Tensor t = load_npy(p.string());
  return std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + t.numel());
}

struct Doc {
  std::vector<std::string> text;  // one entry: a string value; several: a list value
  std::string title;
};

std::vector<Doc> corpus() {
  std::vector<Doc> docs;
  const auto texts = load_texts("texts");
  for (size_t i = 0; i < texts.size(); ++i) {
    Doc d;
    if (i % 7 == 3 && i + 1 < texts.size()) {
      d.text = {texts[i], "", texts[i + 1]};  // a list of sentences, one empty
    } else {
      d.text = {texts[i]};
    }
    d.title = "doc " + std::to_string(i);
    docs.push_back(std::move(d));
  }
  return docs;
}

void write_jsonl(const fs::path& p, const std::vector<Doc>& docs) {
  std::ofstream out(p, std::ios::binary);
  for (const auto& d : docs) {
    nlohmann::json j;
    if (d.text.size() == 1)
      j["text"] = d.text[0];
    else
      j["text"] = d.text;
    j["title"] = d.title;
    j["other"] = 42;
    out << j.dump() << "\n";
  }
}

// What Megatron's Encoder.encode gives for one key: per non-empty sentence its ids, eod after
// the last.
void expected(const tokenizers::Tokenizer& tok, const std::vector<std::string>& sentences,
              std::vector<std::vector<TokenId>>& seqs) {
  std::vector<std::vector<TokenId>> doc;
  for (const auto& s : sentences) {
    auto ids = tok.encode(s);
    if (!ids.empty()) doc.push_back(ids);
  }
  if (!doc.empty()) doc.back().push_back(tok.eod());
  for (auto& s : doc) seqs.push_back(std::move(s));
}

class PreprocessData : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs::exists(tool_path())) << tool_path() << " is not built"; }
};

TEST_F(PreprocessData, HuggingFaceTokensMatchAndMegatronReadsThem) {
  const fs::path dir = temp_dir("hf");
  const auto docs = corpus();
  write_jsonl(dir / "in.jsonl", docs);
  const std::string model = tok_path("hf_llama3/tokenizer.json");
  const std::string base = tool_path().string() + " --input " + (dir / "in.jsonl").string() +
                           " --tokenizer-type HuggingFaceTokenizer --tokenizer-model " + model +
                           " --json-keys text title --append-eod --log-interval 50";
  std::string out;
  ASSERT_EQ(run(base + " --workers 2 --output-prefix " + (dir / "w2").string(), &out), 0) << out;
  EXPECT_NE(out.find("docs/s"), std::string::npos) << out;
  EXPECT_NE(out.find("MB/s"), std::string::npos) << out;
  ASSERT_EQ(run(base + " --workers 1 --output-prefix " + (dir / "w1").string(), &out), 0) << out;

  tokenizers::HuggingFaceTokenizer tok(model);
  std::vector<std::vector<TokenId>> want;
  std::vector<int64_t> want_docs{0};
  for (const auto& d : docs) {
    expected(tok, d.text, want);
    want_docs.push_back(int64_t(want.size()));
  }

  const std::string prefix = (dir / "w2_text_document").string();
  datasets::IndexedDataset ds(prefix);
  EXPECT_EQ(ds.dtype(), DType::U16);  // vocabulary of ~3000 < 65500
  ASSERT_EQ(ds.num_sequences(), int64_t(want.size()));
  ASSERT_EQ(ds.num_documents(), int64_t(docs.size()));
  for (int64_t i = 0; i <= ds.num_documents(); ++i) {
    ASSERT_EQ(ds.document_indices()[i], want_docs[i]) << "document index " << i;
  }
  std::vector<int64_t> flat;
  for (int64_t i = 0; i < ds.num_sequences(); ++i) {
    std::vector<int64_t> got(size_t(ds.sequence_lengths()[i]));
    ds.read_tokens(i, 0, int64_t(got.size()), got.data());
    ASSERT_EQ(std::vector<int64_t>(want[i].begin(), want[i].end()), got) << "sequence " << i;
    flat.insert(flat.end(), got.begin(), got.end());
  }
  datasets::IndexedDataset titles((dir / "w2_title_document").string());
  EXPECT_EQ(titles.num_documents(), int64_t(docs.size()));

  // The output does not depend on the number of workers: byte-identical files.
  for (const char* ext : {".bin", ".idx"}) {
    std::ifstream a(prefix + ext, std::ios::binary),
        b((dir / "w1_text_document").string() + ext, std::ios::binary);
    std::stringstream sa, sb;
    sa << a.rdbuf();
    sb << b.rdbuf();
    EXPECT_TRUE(sa.str() == sb.str()) << ext << " differs between --workers 1 and 2";
  }

  // megatron-core's IndexedDataset reads the same tokens.
  const std::string python = mcore::testing::python_executable();
  const fs::path script = fs::path(__FILE__).parent_path() / "read_megatron_indexed.py";
  const int rc =
      run(python + " " + script.string() + " " + prefix + " " + (dir / "meg").string(), &out);
  ASSERT_NE(rc, 77) << "megatron-core is not importable (scripts/setup installs it): " << out;
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(read_npy_i64(dir / "meg" / "tokens.npy"), flat);
  EXPECT_EQ(read_npy_i64(dir / "meg" / "document_indices.npy"), want_docs);
  std::ifstream dt(dir / "meg" / "dtype.txt");
  std::string dtype;
  dt >> dtype;
  EXPECT_EQ(dtype, "uint16");
  fs::remove_all(dir);
}

TEST_F(PreprocessData, LargeVocabularyWritesInt32) {
  const fs::path dir = temp_dir("null");
  {
    std::ofstream out(dir / "in.jsonl");
    out << R"({"text": "1 70000 65535 3"})"
        << "\n"
        << R"({"text": "69999"})"
        << "\n";
  }
  std::string out;
  ASSERT_EQ(run(tool_path().string() + " --input " + (dir / "in.jsonl").string() +
                    " --output-prefix " + (dir / "o").string() +
                    " --tokenizer-type NullTokenizer --vocab-size 70000 --append-eod",
                &out),
            0)
      << out;
  datasets::IndexedDataset ds((dir / "o_text_document").string());
  EXPECT_EQ(ds.dtype(), DType::I32);
  ASSERT_EQ(ds.num_sequences(), 2);
  std::vector<int64_t> a(5), b(2);
  ds.read_tokens(0, 0, 5, a.data());
  ds.read_tokens(1, 0, 2, b.data());
  EXPECT_EQ(a, (std::vector<int64_t>{1, 70000, 65535, 3, 70000}));  // eod = vocab size
  EXPECT_EQ(b, (std::vector<int64_t>{69999, 70000}));
  const fs::path script = fs::path(__FILE__).parent_path() / "read_megatron_indexed.py";
  const int rc = run(mcore::testing::python_executable() + " " + script.string() + " " +
                         (dir / "o_text_document").string() + " " + (dir / "meg").string(),
                     &out);
  if (rc != 77) {
    ASSERT_EQ(rc, 0) << out;
    EXPECT_EQ(read_npy_i64(dir / "meg" / "tokens.npy"),
              (std::vector<int64_t>{1, 70000, 65535, 3, 70000, 69999, 70000}));
  }
  fs::remove_all(dir);
}

TEST_F(PreprocessData, BadLinesNameTheLineAndCanBeSkipped) {
  const fs::path dir = temp_dir("bad");
  {
    std::ofstream out(dir / "in.jsonl");
    out << R"({"text": "good"})"
        << "\n\n"
        << R"({"text": "broken)"
        << "\n"
        << R"({"body": "wrong key"})"
        << "\n"
        << R"({"text": "fine"})"
        << "\n";
  }
  const std::string base = tool_path().string() + " --input " + (dir / "in.jsonl").string() +
                           " --output-prefix " + (dir / "o").string() +
                           " --tokenizer-type ByteTokenizer";
  std::string out;
  EXPECT_EQ(run(base, &out), 1);
  EXPECT_NE(out.find("in.jsonl:3:"), std::string::npos) << out;  // blank line 2 is counted
  EXPECT_NE(out.find("--skip-bad-lines"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "o_text_document.bin"))
      << "nothing half-written under the real name";
  ASSERT_EQ(run(base + " --skip-bad-lines", &out), 0) << out;
  EXPECT_NE(out.find("in.jsonl:4: skipped: no key 'text'"), std::string::npos) << out;
  datasets::IndexedDataset ds((dir / "o_text_document").string());
  EXPECT_EQ(ds.num_documents(), 2);
  EXPECT_EQ(ds.sequence_lengths()[0], 4);  // "good", no --append-eod
  fs::remove_all(dir);
}

// Ctrl-C (or a scheduler's SIGTERM) mid-run: the tool stops, says so, exits non-zero and leaves
// neither the dataset nor its .tmp files. The input is a FIFO whose writer sends a few lines and
// then keeps it open, so the signal always arrives while the tool is still reading.
TEST_F(PreprocessData, InterruptedRunLeavesNothingBehind) {
  const fs::path dir = temp_dir("interrupt");
  const fs::path fifo = dir / "in.fifo";
  // Run as a script file: the JSON's quotes need no escaping for a `sh -c` string.
  const fs::path script = dir / "run.sh";
  {
    std::ofstream sh(script);
    sh << "mkfifo " << fifo.string() << "\n"
       << "( for i in 1 2 3; do echo '{\"text\": \"doc\"}'; done; sleep 3 ) > " << fifo.string()
       << " &\n"
       << tool_path().string() << " --input " << fifo.string() << " --output-prefix "
       << (dir / "o").string() << " --tokenizer-type ByteTokenizer &\n"
       << "pid=$!\nsleep 1\nkill -INT $pid\nwait $pid\n";
  }
  std::string out;
  EXPECT_EQ(run("sh " + script.string(), &out), 1) << out;
  EXPECT_NE(out.find("interrupted by signal 2"), std::string::npos) << out;
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != "in.fifo" && e.path().filename() != "run.sh")
      left.push_back(e.path().filename().string());
  EXPECT_TRUE(left.empty()) << "left behind: " << (left.empty() ? "" : left[0]);
  fs::remove_all(dir);
}

TEST_F(PreprocessData, UnknownFlagsAndMissingArgumentsAreErrors) {
  std::string out;
  EXPECT_EQ(run(tool_path().string() +
                    " --input x --output-prefix y --tokenizer-type ByteTokenizer --frobnicate",
                &out),
            1);
  EXPECT_NE(out.find("unknown argument '--frobnicate'"), std::string::npos) << out;
  EXPECT_EQ(run(tool_path().string() + " --input x --output-prefix y", &out), 1);
  EXPECT_NE(out.find("--tokenizer-type is required"), std::string::npos) << out;
  EXPECT_EQ(run(tool_path().string() + " --input x --output-prefix y --tokenizer-type Foo", &out),
            1);
  EXPECT_NE(out.find("unknown --tokenizer-type 'Foo'"), std::string::npos) << out;
  EXPECT_EQ(run(tool_path().string() +
                    " --input /nonexistent.jsonl --output-prefix y --tokenizer-type ByteTokenizer",
                &out),
            1);
  EXPECT_NE(out.find("cannot open --input"), std::string::npos) << out;
}

TEST_F(PreprocessData, SplitSentencesWritesSentenceLevel) {
  const fs::path dir = temp_dir("split");
  {
    std::ofstream out(dir / "in.jsonl");
    out << R"({"text": "One here. Two there!  Three?\nFour"})"
        << "\n";
  }
  std::string out;
  ASSERT_EQ(run(tool_path().string() + " --input " + (dir / "in.jsonl").string() +
                    " --output-prefix " + (dir / "o").string() +
                    " --tokenizer-type ByteTokenizer --split-sentences --append-eod",
                &out),
            0)
      << out;
  datasets::IndexedDataset ds((dir / "o_text_sentence").string());
  ASSERT_EQ(ds.num_sequences(), 4);
  EXPECT_EQ(ds.num_documents(), 1);
  const std::vector<int32_t> lens(ds.sequence_lengths(), ds.sequence_lengths() + 4);
  EXPECT_EQ(lens, (std::vector<int32_t>{9, 10, 6, 5}));  // "One here." ... "Four" + eod
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mcore::testing
