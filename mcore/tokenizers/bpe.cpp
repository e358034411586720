#include "mcore/tokenizers/bpe.h"

#include <algorithm>
#include <atomic>
#include <cstdio>

#include "mcore/base/error.h"
#include "mcore/tokenizers/byte_level.h"
#include "mcore/tokenizers/unicode.h"

namespace mcore::tokenizers {
namespace {

// Cache limits: words under 256 bytes (as Hugging Face), 65536 words per model and thread
// (Hugging Face keeps 10000; a multilingual corpus has more distinct words than that, and the
// cache never changes results).
constexpr size_t kCacheMaxWordLen = 256;
constexpr size_t kCacheCapacity = 65536;
// Words of up to this many initial symbols merge by linear scan instead of a heap.
constexpr size_t kLinearMergeMax = 48;

std::atomic<uint64_t> next_cache_id{1};

using WordCache = std::unordered_map<std::string, std::vector<TokenId>>;

// One cache per model and thread: encoding never locks.
std::unordered_map<uint64_t, WordCache>& thread_caches() {
  thread_local std::unordered_map<uint64_t, WordCache> caches;
  return caches;
}

}  // namespace

BpeModel::BpeModel(const std::vector<std::pair<std::string, TokenId>>& vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options)
    : options_(std::move(options)), cache_id_(next_cache_id.fetch_add(1)) {
  MCORE_CHECK(!(options_.byte_level && (!options_.continuing_subword_prefix.empty() ||
                                        !options_.end_of_word_suffix.empty())))
      << "BPE: continuing_subword_prefix/end_of_word_suffix are not supported with byte-level "
         "pre-tokenization";
  TokenId max_id = -1;
  for (const auto& [tok, id] : vocab) {
    MCORE_CHECK(id >= 0) << "BPE vocabulary: token '" << tok << "' has negative id " << id;
    max_id = std::max(max_id, id);
  }
  id_to_token_.resize(size_t(max_id + 1));
  has_id_.assign(size_t(max_id + 1), false);
  vocab_.reserve(vocab.size() * 2);
  for (const auto& [tok, id] : vocab) {
    id_to_token_[id] = tok;
    has_id_[id] = true;
    if (auto key = key_of(tok)) vocab_[*key] = id;
  }
  std::fill(std::begin(byte_id_), std::end(byte_id_), kNoToken);
  std::fill(std::begin(byte_fallback_id_), std::end(byte_fallback_id_), kNoToken);
  all_byte_fallback_ = true;
  for (int b = 0; b < 256; ++b) {
    if (options_.byte_level) {
      if (auto it = vocab_.find(std::string(1, char(b))); it != vocab_.end())
        byte_id_[b] = it->second;
    }
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    if (auto it = vocab_.find(name); it != vocab_.end()) {
      byte_fallback_id_[b] = it->second;
    } else {
      all_byte_fallback_ = false;
    }
  }
  if (options_.unk_token) {
    if (auto it = vocab_.find(*options_.unk_token); it != vocab_.end()) unk_id_ = it->second;
  }

  merges_.reserve(merges.size() * 2);
  const size_t prefix_len = options_.continuing_subword_prefix.size();
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ka = key_of(a), kb = key_of(b);
    auto ia = ka ? vocab_.find(*ka) : vocab_.end();
    auto ib = kb ? vocab_.find(*kb) : vocab_.end();
    MCORE_CHECK(ia != vocab_.end() && ib != vocab_.end())
        << "BPE merges: merge " << rank << " ('" << a << "' '" << b
        << "') uses a token that is not in the vocabulary; the vocab and merges files do not "
           "belong together";
    std::string joined =
        a + (prefix_len && b.compare(0, prefix_len, options_.continuing_subword_prefix) == 0
                 ? b.substr(prefix_len)
                 : b);
    auto kj = key_of(joined);
    auto ij = kj ? vocab_.find(*kj) : vocab_.end();
    MCORE_CHECK(ij != vocab_.end()) << "BPE merges: the result '" << joined << "' of merge " << rank
                                    << " is not in the vocabulary; the vocab and merges files "
                                       "do not belong together";
    // Later duplicates win, as in both Hugging Face (HashMap collect) and GPT-2 (dict).
    merges_[pair_key(ia->second, ib->second)] = {int32_t(rank), ij->second};
  }
}

// Other threads' caches of this model stay until those threads end; ids are never reused.
BpeModel::~BpeModel() {
  thread_caches().erase(cache_id_);
}

std::optional<std::string> BpeModel::key_of(const std::string& token) const {
  if (!options_.byte_level) return token;
  return byte_level_decode(token);
}

const std::string* BpeModel::id_to_token(TokenId id) const {
  if (id < 0 || size_t(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

std::optional<TokenId> BpeModel::token_to_id(std::string_view token) const {
  auto key = key_of(std::string(token));
  if (!key) return std::nullopt;
  auto it = vocab_.find(*key);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto it = vocab_.find(std::string(word)); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() >= kCacheMaxWordLen) {
    merge_word(word, out);
    return;
  }
  WordCache& cache = thread_caches()[cache_id_];
  thread_local std::string key;
  key.assign(word);
  if (auto it = cache.find(key); it != cache.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t start = out.size();
  merge_word(word, out);
  if (cache.size() < kCacheCapacity)
    cache.emplace(key, std::vector<TokenId>(out.begin() + start, out.end()));
}

void BpeModel::merge_with_heap(std::vector<Symbol>& symbols, std::vector<Candidate>& heap) const {
  for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) {
    auto it = merges_.find(pair_key(symbols[i].id, symbols[i + 1].id));
    if (it != merges_.end()) heap.push_back({it->second.rank, i, it->second.new_id});
  }
  std::make_heap(heap.begin(), heap.end());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    auto it = merges_.find(pair_key(cur.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale candidate
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next != -1) symbols[right.next].prev = top.pos;
    if (cur.prev != -1) {
      auto m = merges_.find(pair_key(symbols[cur.prev].id, cur.id));
      if (m != merges_.end()) {
        heap.push_back({m->second.rank, cur.prev, m->second.new_id});
        std::push_heap(heap.begin(), heap.end());
      }
    }
    if (cur.next != -1) {
      auto m = merges_.find(pair_key(cur.id, symbols[cur.next].id));
      if (m != merges_.end()) {
        heap.push_back({m->second.rank, top.pos, m->second.new_id});
        std::push_heap(heap.begin(), heap.end());
      }
    }
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<TokenId>& out) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  thread_local std::string unit;
  symbols.clear();
  heap.clear();
  auto add = [&](TokenId id, uint32_t len) {
    const int32_t n = int32_t(symbols.size());
    if (n) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, len});
  };

  // Initial symbols (Hugging Face's BPE::merge_word), with its quirk kept: a pending unk is
  // not flushed before byte-fallback tokens.
  TokenId unk = kNoToken;
  uint32_t unk_len = 0;
  for (size_t i = 0; i < word.size();) {
    const uint32_t len = options_.byte_level ? 1 : uint32_t(utf8_len(uint8_t(word[i])));
    const uint32_t n = uint32_t(std::min<size_t>(len, word.size() - i));
    TokenId id = kNoToken;
    const bool first = i == 0, last = i + n >= word.size();
    if (options_.byte_level) {
      id = byte_id_[uint8_t(word[i])];
    } else {
      unit.clear();
      if (!first) unit += options_.continuing_subword_prefix;
      unit.append(word.data() + i, n);
      if (last) unit += options_.end_of_word_suffix;
      if (auto it = vocab_.find(unit); it != vocab_.end()) id = it->second;
    }
    if (id != kNoToken) {
      if (unk != kNoToken) {
        add(unk, unk_len);
        unk = kNoToken;
      }
      add(id, n);
    } else {
      bool done = false;
      if (options_.byte_fallback) {
        // The bytes of the unit as written (prefix/suffix included), all or nothing.
        std::string_view bytes = options_.byte_level ? word.substr(i, n) : std::string_view(unit);
        bool all = true;
        for (char b : bytes) all = all && byte_fallback_id_[uint8_t(b)] != kNoToken;
        if (all) {
          for (char b : bytes) add(byte_fallback_id_[uint8_t(b)], 1);
          done = true;
        }
      }
      if (!done && options_.unk_token) {
        MCORE_CHECK(unk_id_ != kNoToken)
            << "BPE: the unk token '" << *options_.unk_token << "' is not in the vocabulary";
        if (unk != kNoToken && options_.fuse_unk) {
          unk_len += n;
        } else {
          if (unk != kNoToken) add(unk, unk_len);
          unk = unk_id_;
          unk_len = n;
        }
      }
      // Neither fallback nor unk: Hugging Face drops the character.
    }
    i += n;
  }
  if (unk != kNoToken) add(unk, unk_len);

  if (symbols.size() <= kLinearMergeMax) {
    // Same order as the heap below: the lowest (rank, left position) among the current
    // adjacent pairs merges first. rank[i] caches the pair (i, next(i)).
    thread_local std::vector<MergeValue> pair;
    const int32_t n = int32_t(symbols.size());
    pair.assign(size_t(n), {INT32_MAX, kNoToken});
    auto lookup = [&](int32_t i) {
      const int32_t j = symbols[i].next;
      if (j == -1) return MergeValue{INT32_MAX, kNoToken};
      auto it = merges_.find(pair_key(symbols[i].id, symbols[j].id));
      return it == merges_.end() ? MergeValue{INT32_MAX, kNoToken} : it->second;
    };
    for (int32_t i = 0; i + 1 < n; ++i) pair[i] = lookup(i);
    for (;;) {
      int32_t best = -1;
      for (int32_t i = 0; i != -1 && i < n; i = symbols[i].next) {
        if (pair[i].rank != INT32_MAX && (best == -1 || pair[i].rank < pair[best].rank)) best = i;
      }
      if (best == -1) break;
      Symbol& cur = symbols[best];
      const int32_t right = cur.next;
      cur.id = pair[best].new_id;
      cur.len += symbols[right].len;
      cur.next = symbols[right].next;
      symbols[right].len = 0;
      if (cur.next != -1) symbols[cur.next].prev = best;
      pair[best] = lookup(best);
      if (cur.prev != -1) pair[cur.prev] = lookup(cur.prev);
    }
  } else {
    merge_with_heap(symbols, heap);
  }
  for (const Symbol& s : symbols) {
    if (s.len) out.push_back(s.id);
  }
}

}  // namespace mcore::tokenizers
