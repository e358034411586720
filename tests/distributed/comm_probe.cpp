// Small programs for the fault tests (run under mpirun by expect_failure.sh) and for the
// launcher-less start. Modes:
//   timeout   - the last rank sleeps past the distributed timeout before an all_reduce: every
//               other rank must abort naming the op, the group and its sequence number, and
//               that the last rank never reached it and is in no collective.
//   mismatch  - the ranks split into groups {0, 2} and {1}; rank 2 waits in a barrier of its
//               group while the others all_reduce on the world: the timeout names rank 2 as
//               not arrived and the barrier it waits in.
//   throw     - rank 1 (or 0 alone) throws inside run_distributed_main while the others wait in
//               an all_reduce: the job must end at once with "[rank 1] <message>".
//   terminate - the same exception escapes main without run_distributed_main: the terminate
//               handler init_distributed installed must end the job the same way.
//   local     - no launcher: init_distributed must pick the local backend (exit 0).
//   forget    - returns from main without destroy_distributed: the exit hook must finalize MPI
//               so that mpirun reports success (exit 0).
// A rank that gets past the collective in a fault mode prints "survived", which the fault tests
// forbid.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "mcore/base/error.h"
#include "mcore/comm/distributed.h"
#include "mcore/tensor/factory.h"

using namespace mcore;

namespace {

int run(const std::string& mode) {
  comm::init_distributed();
  auto g = comm::world();
  const int rank = g->rank(), n = g->size();
  g->barrier();  // collective #1 of the world group
  if (mode == "timeout") {
    if (rank == n - 1) std::this_thread::sleep_for(std::chrono::seconds(120));
  } else if (mode == "mismatch") {
    auto sub = g->split(rank % 2, rank);  // world collective #2
    if (rank == 2) {
      // Rank 2's own barrier times out too; starting it a second later lets the world
      // all_reduce's timeout report first, whose message the test checks (under load the
      // two 3 s timers otherwise race, and either report may end the job).
      std::this_thread::sleep_for(std::chrono::seconds(1));
      sub->barrier();  // waits for rank 0, which is in the world all_reduce
    }
  } else {
    if (rank == (n > 1 ? 1 : 0)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      MCORE_FAIL() << "deliberate failure on rank " << rank << " (comm_probe " << mode << ")";
    }
  }
  Tensor t = ones({16}, DType::F32);
  g->all_reduce(t);  // collective #2
  std::printf("[rank %d] survived\n", rank);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "local") {
    comm::init_distributed();
    auto g = comm::world();
    const bool ok = comm::backend_name() == "local" && g->size() == 1 &&
                    comm::launcher() == comm::Launcher::kNone && comm::get_rank() == 0;
    Tensor t = full({3}, 2.0, DType::F32);
    g->all_reduce(t);
    comm::destroy_distributed();
    std::printf("%s\n",
                ok && t.to(DType::F64).data<double>()[0] == 2.0 ? "local ok" : "local FAILED");
    return ok ? 0 : 1;
  }
  if (mode == "forget") {
    comm::init_distributed();
    Tensor t = ones({4}, DType::F32);
    comm::world()->all_reduce(t);
    const bool ok = t.to(DType::F64).data<double>()[0] == comm::get_world_size();
    std::printf("[rank %d] forget %s\n", comm::get_rank(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
  }
  if (mode == "terminate") return run(mode);  // no safety net but the terminate handler
  if (mode == "timeout" || mode == "throw" || mode == "mismatch") {
    return comm::run_distributed_main(argc, argv, [&](int, char**) { return run(mode); });
  }
  std::fprintf(stderr, "usage: comm_probe timeout|mismatch|throw|terminate|local|forget\n");
  return 2;
}
