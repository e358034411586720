#include "mcore/comm/rank_status.h"

#include <mpi.h>

#include <chrono>
#include <cstring>

namespace mcore::comm::rank_status {

namespace {

constexpr int kGroups = 64;
constexpr int kText = 160;

// One rank's record. Keys and sequence numbers are aligned 64-bit words, so a remote read of
// one is never torn; the text may be, which only garbles a diagnostic.
struct Record {
  uint64_t keys[kGroups];
  uint64_t seqs[kGroups];
  uint64_t waiting;  // 1 while `text` names the operation this rank waits in
  char text[kText];
};

MPI_Win g_win = MPI_WIN_NULL;
Record* g_mine = nullptr;
int g_rank = -1;

int slot_of(uint64_t key, bool insert) {
  for (int i = 0; i < kGroups; ++i) {
    if (g_mine->keys[i] == key) return i;
    if (g_mine->keys[i] == 0) {
      if (!insert) return -1;
      g_mine->keys[i] = key;
      return i;
    }
  }
  return -1;  // more groups than slots: this one goes unrecorded
}

// Reads rank r's record within `deadline`; false if it did not arrive in time.
bool read_record(int r, Record* out, std::chrono::steady_clock::time_point deadline) {
  MPI_Request req = MPI_REQUEST_NULL;
  if (MPI_Rget(out, sizeof(Record), MPI_BYTE, r, 0, sizeof(Record), MPI_BYTE, g_win, &req) !=
      MPI_SUCCESS)
    return false;
  for (;;) {
    int done = 0;
    if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    if (done) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;  // abandoned: we abort
  }
}

}  // namespace

void init() {
  if (g_win != MPI_WIN_NULL) return;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  void* base = nullptr;
  if (MPI_Win_allocate(sizeof(Record), 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &g_win) !=
      MPI_SUCCESS) {
    g_win = MPI_WIN_NULL;  // diagnostics only: run without them
    return;
  }
  g_mine = static_cast<Record*>(base);
  std::memset(g_mine, 0, sizeof(Record));
  MPI_Win_lock_all(MPI_MODE_NOCHECK, g_win);
}

void finalize() {
  if (g_win == MPI_WIN_NULL) return;
  MPI_Win_unlock_all(g_win);
  MPI_Win_free(&g_win);
  g_win = MPI_WIN_NULL;
  g_mine = nullptr;
}

uint64_t group_key(const std::string& name, const std::vector<int>& global_ranks) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i)
      h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  };
  mix(name.data(), name.size());
  for (int r : global_ranks) mix(&r, sizeof(r));
  return h == 0 ? 1 : h;  // 0 marks an empty slot
}

void note_posted(uint64_t key, uint64_t seq) {
  if (!g_mine) return;
  const int i = slot_of(key, true);
  if (i >= 0) g_mine->seqs[i] = seq;
}

void note_waiting(const std::string& what) {
  if (!g_mine) return;
  const size_t n = std::min<size_t>(what.size(), kText - 1);
  std::memcpy(g_mine->text, what.data(), n);
  g_mine->text[n] = '\0';
  g_mine->waiting = 1;
}

void note_done() {
  if (g_mine) g_mine->waiting = 0;
}

std::string describe_late_ranks(uint64_t key, uint64_t seq, const std::vector<int>& global_ranks) {
  if (g_win == MPI_WIN_NULL) return "";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::string out;
  for (int r : global_ranks) {
    if (r == g_rank) continue;
    Record rec;
    if (!read_record(r, &rec, deadline)) {
      out += (out.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) +
             " did not answer (computing without MPI progress, or dead)";
      continue;
    }
    uint64_t posted = 0;
    for (int i = 0; i < kGroups; ++i) {
      if (rec.keys[i] == key) posted = rec.seqs[i];
    }
    if (posted >= seq) continue;
    rec.text[kText - 1] = '\0';
    out += (out.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) +
           " has not reached it (its last on this group was #" + std::to_string(posted) + "; " +
           (rec.waiting ? "it is waiting in " + std::string(rec.text)
                        : std::string("it is in no collective: computing, stuck or dead")) +
           ")";
  }
  return out;
}

}  // namespace mcore::comm::rank_status
