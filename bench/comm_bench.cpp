// Communication benchmark: bus bandwidth of mcore's all_reduce / all_gather / reduce_scatter /
// all_to_all (mpi backend, blocking form = async op + bounded wait) beside OpenMPI's own blocking
// call (MPI_Allreduce, ...) and its non-blocking twin (MPI_Iallreduce + MPI_Wait, what the
// backend issues) on the same buffers. "ratio" = mcore time / raw blocking time (target <= 1.05
// for large messages); "vs nb" = mcore / raw non-blocking, mcore's own overhead.
// Bus bandwidth follows nccl-tests: all_reduce 2(n-1)/n * bytes / t, the others (n-1)/n.
//
//   mpirun -np 2 build/bench/comm_bench [--full] [--size BYTES] [--min-ms 200] [--op all_reduce]
// Default sizes: 1 KB, 64 KB, 1 MB, 16 MB; --full sweeps 1 KB .. 256 MB by factors of 4.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "mcore/comm/distributed.h"
#include "mcore/tensor/factory.h"

using namespace mcore;

namespace {

struct Options {
  bool full = false;
  double min_ms = 100;         // per measurement round
  int rounds = 5;              // medians over rounds, the three variants interleaved
  std::string op;              // empty: all
  std::vector<int64_t> sizes;  // --size BYTES (repeatable) replaces the default list
};

// Seconds per call of fn: iterations sized so a round lasts ~min_ms, slowest rank counts.
double time_round(const std::function<void()>& fn, int iters) {
  MPI_Barrier(MPI_COMM_WORLD);
  const double t0 = MPI_Wtime();
  for (int i = 0; i < iters; ++i) fn();
  double t = (MPI_Wtime() - t0) / iters;
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Variant {
  const char* name;
  std::function<void()> fn;
};

void bench_op(const char* op, int64_t bytes, double bus_factor, const std::vector<Variant>& v,
              const Options& opt, int rank) {
  for (const Variant& x : v) x.fn();  // warm-up: first-touch pages, connection setup
  // Iterations per round from one timed call of the first variant.
  const double once = time_round(v[0].fn, 1);
  int iters = static_cast<int>(std::clamp(opt.min_ms * 1e-3 / std::max(once, 1e-7), 1.0, 20000.0));
  MPI_Bcast(&iters, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<std::vector<double>> times(v.size());
  for (int r = 0; r < opt.rounds; ++r) {
    for (size_t k = 0; k < v.size(); ++k) times[k].push_back(time_round(v[k].fn, iters));
  }
  std::vector<double> med;
  for (auto& t : times) med.push_back(median(t));
  if (rank == 0) {
    auto busbw = [&](double t) { return bus_factor * static_cast<double>(bytes) / t / 1e9; };
    char size[32];
    if (bytes >= (1 << 20)) {
      std::snprintf(size, sizeof(size), "%lld MB", static_cast<long long>(bytes >> 20));
    } else {
      std::snprintf(size, sizeof(size), "%lld KB", static_cast<long long>(bytes >> 10));
    }
    std::printf("%-15s %8s %10.1f %9.2f %10.1f %9.2f %10.1f %9.2f %7.3f %7.3f\n", op, size,
                med[0] * 1e6, busbw(med[0]), med[1] * 1e6, busbw(med[1]), med[2] * 1e6,
                busbw(med[2]), med[0] / med[1], med[0] / med[2]);
    std::fflush(stdout);
  }
}

void wait(MPI_Request& r) {
  MPI_Wait(&r, MPI_STATUS_IGNORE);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--full") {
      opt.full = true;
    } else if (a == "--min-ms" && i + 1 < argc) {
      opt.min_ms = std::atof(argv[++i]);
    } else if (a == "--rounds" && i + 1 < argc) {
      opt.rounds = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--size" && i + 1 < argc) {
      opt.sizes.push_back(std::atoll(argv[++i]));
    } else if (a == "--op" && i + 1 < argc) {
      opt.op = argv[++i];
    } else {
      std::fprintf(
          stderr,
          "usage: comm_bench [--full] [--size BYTES]... [--min-ms MS] [--rounds N] [--op NAME]\n");
      return 2;
    }
  }
  return comm::run_distributed_main(argc, argv, [&](int, char**) {
    comm::init_distributed({.backend = "mpi"});
    auto g = comm::world();
    const int rank = g->rank(), n = g->size();
    std::vector<int64_t> sizes;
    if (!opt.sizes.empty()) {
      sizes = opt.sizes;
    } else if (opt.full) {
      for (int64_t b = 1 << 10; b <= (int64_t{256} << 20); b *= 4) sizes.push_back(b);
    } else {
      sizes = {1 << 10, 64 << 10, 1 << 20, 16 << 20};
    }
    if (rank == 0) {
      std::printf("comm_bench: %d ranks, float32, times in us (median of %d rounds), busbw GB/s\n",
                  n, opt.rounds);
      std::printf("%-15s %8s %10s %9s %10s %9s %10s %9s %7s %7s\n", "op", "size", "mcore", "busbw",
                  "raw", "busbw", "raw-nb", "busbw", "ratio", "vs nb");
    }
    auto want = [&](const char* name) { return opt.op.empty() || opt.op == name; };
    const MPI_Comm w = MPI_COMM_WORLD;
    for (int64_t bytes : sizes) {
      // Element count divisible by n, so the chunked ops split evenly.
      const int64_t count = std::max<int64_t>(n, (bytes / 4) / n * n);
      const int64_t chunk = count / n;
      const int c = static_cast<int>(count), ch = static_cast<int>(chunk);
      Tensor full_buf = ones({count}, DType::F32);
      Tensor full_out = zeros({count}, DType::F32);
      Tensor part = ones({chunk}, DType::F32);
      float* fb = full_buf.data<float>();
      float* fo = full_out.data<float>();
      float* pb = part.data<float>();
      // all_reduce keeps summing in place; overflow to inf does not change the timing.
      if (want("all_reduce")) {
        bench_op("all_reduce", count * 4, 2.0 * (n - 1) / n,
                 {{"mcore", [&] { g->all_reduce(full_buf); }},
                  {"raw", [&] { MPI_Allreduce(MPI_IN_PLACE, fb, c, MPI_FLOAT, MPI_SUM, w); }},
                  {"raw-nb",
                   [&] {
                     MPI_Request r;
                     MPI_Iallreduce(MPI_IN_PLACE, fb, c, MPI_FLOAT, MPI_SUM, w, &r);
                     wait(r);
                   }}},
                 opt, rank);
      }
      if (want("all_gather")) {
        bench_op("all_gather", count * 4, 1.0 * (n - 1) / n,
                 {{"mcore", [&] { g->all_gather(full_out, part); }},
                  {"raw", [&] { MPI_Allgather(pb, ch, MPI_FLOAT, fo, ch, MPI_FLOAT, w); }},
                  {"raw-nb",
                   [&] {
                     MPI_Request r;
                     MPI_Iallgather(pb, ch, MPI_FLOAT, fo, ch, MPI_FLOAT, w, &r);
                     wait(r);
                   }}},
                 opt, rank);
      }
      if (want("reduce_scatter")) {
        bench_op("reduce_scatter", count * 4, 1.0 * (n - 1) / n,
                 {{"mcore", [&] { g->reduce_scatter(part, full_buf); }},
                  {"raw", [&] { MPI_Reduce_scatter_block(fb, pb, ch, MPI_FLOAT, MPI_SUM, w); }},
                  {"raw-nb",
                   [&] {
                     MPI_Request r;
                     MPI_Ireduce_scatter_block(fb, pb, ch, MPI_FLOAT, MPI_SUM, w, &r);
                     wait(r);
                   }}},
                 opt, rank);
      }
      if (want("all_to_all")) {
        bench_op("all_to_all", count * 4, 1.0 * (n - 1) / n,
                 {{"mcore", [&] { g->all_to_all_single(full_out, full_buf); }},
                  {"raw", [&] { MPI_Alltoall(fb, ch, MPI_FLOAT, fo, ch, MPI_FLOAT, w); }},
                  {"raw-nb",
                   [&] {
                     MPI_Request r;
                     MPI_Ialltoall(fb, ch, MPI_FLOAT, fo, ch, MPI_FLOAT, w, &r);
                     wait(r);
                   }}},
                 opt, rank);
      }
    }
    return 0;
  });
}
