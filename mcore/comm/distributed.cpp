#include "mcore/comm/distributed.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/comm/cuda/nccl_backend.h"
#endif

#include <mpi.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "mcore/base/error.h"
#include "mcore/base/logging.h"
#include "mcore/comm/local_backend.h"
#include "mcore/comm/mpi_backend.h"
#include "mcore/comm/mpi_ops.h"
#include "mcore/comm/rank_status.h"
#include "mcore/tensor/factory.h"

namespace mcore::comm {

namespace {

struct State {
  bool initialized = false;
  bool mpi_started_by_us = false;
  bool atexit_registered = false;
  Launcher launcher = Launcher::kNone;
  std::string backend;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  bool yield_when_idle = false;
  ProcessGroupPtr world;
  ProcessGroupPtr mpi_world;  // the bootstrap group under a launcher
  std::terminate_handler previous_terminate = nullptr;
};

State& state() {
  static State s;
  return s;
}

std::map<std::string, BackendFactory>& registry() {
  static std::map<std::string, BackendFactory> r;
  return r;
}

int64_t timeout_from_env() {
  const auto env = timeout_from_environment();
  return env ? env->count() : 600;
}

std::atomic<int64_t>& timeout_seconds() {
  static std::atomic<int64_t> seconds{timeout_from_env()};
  return seconds;
}

bool mpi_running() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* v = env(name);
  return v ? std::atoi(v) : fallback;
}

// The rank for "[rank N]" before (or without) init_distributed: from the launcher's environment.
int best_known_rank() {
  if (state().initialized) return state().rank;
  if (log_rank() >= 0) return log_rank();
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (env(name)) return env_int(name, 0);
  }
  return 0;
}

// The launcher's view of the world size, to cross-check MPI's.
int launcher_world_size(Launcher l) {
  switch (l) {
    case Launcher::kOpenMpi:
      return env_int("OMPI_COMM_WORLD_SIZE", -1);
    case Launcher::kPmi:
      return env_int("PMI_SIZE", -1);
    case Launcher::kSlurm:
      return env_int("SLURM_STEP_NUM_TASKS", env_int("SLURM_NTASKS", -1));
    case Launcher::kNone:
      return 1;
  }
  return -1;
}

void on_terminate() {
  std::string what = "terminate called without an active exception";
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = std::string("uncaught exception: ") + ex.what();
    } catch (...) {
      what = "uncaught exception of unknown type";
    }
  }
  abort_job(what);
}

// A barrier that cannot hang: all ranks leave together or the job aborts after the timeout.
void bounded_world_barrier(const char* why) {
  State& s = state();
  ProcessGroupPtr g = s.mpi_world ? s.mpi_world : s.world;
  if (!g) return;
  std::string saved = g->name();
  g->set_name(std::string("world, ") + why);
  g->barrier();
  g->set_name(saved);
}

void exit_hook() {
  // The program returned without destroy_distributed(): finalize so that mpirun does not report
  // a rank that "exited without calling finalize". The barrier inside is bounded by the
  // timeout, so a rank exiting while others still compute aborts the job rather than hang.
  if (state().initialized) {
    try {
      destroy_distributed();
    } catch (const std::exception& e) {
      abort_job(std::string("destroy_distributed at exit: ") + e.what());
    }
  }
}

}  // namespace

const char* launcher_name(Launcher l) {
  switch (l) {
    case Launcher::kNone:
      return "none";
    case Launcher::kOpenMpi:
      return "openmpi";
    case Launcher::kPmi:
      return "pmi";
    case Launcher::kSlurm:
      return "slurm";
  }
  return "?";
}

Launcher detect_launcher() {
  if (env("OMPI_COMM_WORLD_SIZE")) return Launcher::kOpenMpi;
  if (env("PMIX_RANK") || env("PMI_RANK")) return Launcher::kPmi;
  // SLURM_PROCID alone is also set in a batch script; SLURM_STEP_ID marks an srun step.
  if (env("SLURM_PROCID") && env("SLURM_STEP_ID")) return Launcher::kSlurm;
  return Launcher::kNone;
}

void set_timeout(std::chrono::seconds timeout) {
  MCORE_CHECK(timeout.count() > 0)
      << "set_timeout: the distributed timeout must be positive, got " << timeout.count() << " s";
  timeout_seconds() = timeout.count();
}

std::optional<std::chrono::seconds> timeout_from_environment() {
  if (const char* env = std::getenv("MCORE_DISTRIBUTED_TIMEOUT_SECONDS")) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    if (end != env && v > 0) return std::chrono::seconds(v);
  }
  return std::nullopt;
}

std::chrono::seconds get_timeout() {
  return std::chrono::seconds(timeout_seconds().load());
}

void register_backend(const std::string& name, BackendFactory factory) {
  registry()[name] = std::move(factory);
}

bool has_backend(const std::string& name) {
  return name == "local" || name == "mpi" || registry().count(name) > 0;
}

void init_distributed(const InitOptions& options) {
  State& s = state();
  MCORE_CHECK(!s.initialized) << "init_distributed: already initialized (backend " << s.backend
                              << ", world size " << s.world_size
                              << "); call destroy_distributed() before initializing again";
  if (options.timeout.count() > 0) set_timeout(options.timeout);
#ifdef MCORE_WITH_CUDA
  // Explicit, so a static libmcore (whose linker may drop the registering initializer) still
  // knows the backend.
  register_nccl_backend();
#endif
  const Launcher launcher = detect_launcher();
  std::string backend = options.backend;
  if (backend.empty()) {
    if (options.device.is_cuda()) {
      backend = "nccl";
    } else {
      backend = launcher == Launcher::kNone ? "local" : "mpi";
    }
  }
  MCORE_CHECK(has_backend(backend))
      << "init_distributed: unknown backend '" << backend << "' for device " << options.device
      << (backend == "nccl" ? " (this build has no CUDA backend; use a CPU device and the mpi "
                              "backend)"
                            : " (known: local, mpi)");
  // MPI runs under any launcher, and whenever the mpi backend is asked for explicitly.
  const bool use_mpi = backend == "mpi" || (backend != "local" && launcher != Launcher::kNone);
  MCORE_CHECK(
      !(backend == "local" && launcher != Launcher::kNone && launcher_world_size(launcher) > 1))
      << "init_distributed: the local backend is one process, but the " << launcher_name(launcher)
      << " launcher started " << launcher_world_size(launcher)
      << " ranks; use the mpi (CPU) or nccl (CUDA) backend";

  if (use_mpi) {
    if (!mpi_running()) {
      // OpenMPI's non-blocking allreduce (libnbc) falls back to reduce+broadcast (binomial) for
      // in-place calls and fewer than 4 ranks, twice the traffic of the blocking MPI_Allreduce
      // for large messages. Rabenseifner (reduce-scatter + all-gather; ring when there are
      // fewer elements than ranks) matches MPI_Allreduce. A user's own setting wins.
      setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", /*overwrite=*/0);
      int provided = 0;
      mpi::check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided),
                     "MPI_Init_thread");
      s.mpi_started_by_us = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    s.mpi_world = make_mpi_world_group();
    rank_status::init();
    s.rank = s.mpi_world->rank();
    s.world_size = s.mpi_world->size();
    const int expected = launcher_world_size(launcher);
    if (launcher != Launcher::kNone && expected > 0 && expected != s.world_size) {
      abort_job("init_distributed: the " + std::string(launcher_name(launcher)) + " launcher " +
                "started " + std::to_string(expected) + " ranks but MPI sees a world of " +
                std::to_string(s.world_size) +
                "; this OpenMPI cannot talk to the launcher (under SLURM use srun --mpi=pmix, "
                "or mpirun inside the allocation)");
    }
    // Ranks sharing memory = ranks on this node.
    MPI_Comm node = MPI_COMM_NULL;
    mpi::check_mpi(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, s.rank, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
    MPI_Comm_rank(node, &s.local_rank);
    MPI_Comm_size(node, &s.local_world_size);
    MPI_Comm_free(&node);
  } else {
    s.rank = 0;
    s.world_size = 1;
    s.local_rank = 0;
    s.local_world_size = 1;
  }

  if (backend == "mpi") {
    s.world = s.mpi_world;
  } else if (backend == "local") {
    s.world = make_local_group(0);
  } else {
    ProcessGroupPtr bootstrap = s.mpi_world ? s.mpi_world : make_local_group(0);
    s.world = registry().at(backend)(bootstrap, options);
    MCORE_CHECK(s.world && s.world->size() == s.world_size)
        << "init_distributed: backend '" << backend << "' built a world of "
        << (s.world ? s.world->size() : 0) << " ranks, expected " << s.world_size;
  }
  s.world->set_name("world");
  // Decided once: the polling loop asks on every wait.
  if (const char* v = env("MCORE_COMM_YIELD")) {
    s.yield_when_idle = std::string(v) != "0";
  } else {
    const unsigned cores = std::thread::hardware_concurrency();
    s.yield_when_idle = cores > 0 && static_cast<unsigned>(s.local_world_size) > cores;
  }
  s.launcher = launcher;
  s.backend = backend;
  s.initialized = true;
  if (launcher != Launcher::kNone || use_mpi) set_log_rank(s.rank);
  if (options.abort_on_uncaught_exception) s.previous_terminate = std::set_terminate(&on_terminate);
  if (use_mpi && !s.atexit_registered) {
    std::atexit(&exit_hook);
    s.atexit_registered = true;
  }
}

bool is_initialized() {
  return state().initialized;
}

void destroy_distributed() {
  State& s = state();
  if (!s.initialized) return;
  if (s.mpi_world && mpi_running()) bounded_world_barrier("destroy_distributed");
  s.world.reset();
  s.mpi_world.reset();
  if (mpi_running()) rank_status::finalize();
  if (s.previous_terminate) {
    std::set_terminate(s.previous_terminate);
    s.previous_terminate = nullptr;
  }
  s.initialized = false;
  if (s.mpi_started_by_us && mpi_running()) {
    mpi::free_custom_ops();
    MPI_Finalize();
  }
}

ProcessGroupPtr world() {
  MCORE_CHECK(state().initialized)
      << "world(): the distributed environment is not initialized; call "
         "mcore::comm::init_distributed() first";
  return state().world;
}

int get_rank() {
  return state().initialized ? state().rank : 0;
}
int get_world_size() {
  return state().initialized ? state().world_size : 1;
}
int get_local_rank() {
  return state().initialized ? state().local_rank : 0;
}
int get_local_world_size() {
  return state().initialized ? state().local_world_size : 1;
}
Launcher launcher() {
  return state().launcher;
}

bool yield_when_idle() {
  return state().yield_when_idle;
}
const std::string& backend_name() {
  return state().backend;
}

void abort_job(const std::string& message) {
  std::string line = "[rank " + std::to_string(best_known_rank()) + "] " + message + "\n";
  std::fflush(stdout);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void abort_on_timeout(const std::string& op, const std::string& group,
                      const std::vector<int>& ranks, uint64_t sequence, double waited_seconds,
                      const std::string& late) {
  std::string list;
  const size_t shown = std::min<size_t>(ranks.size(), 32);
  for (size_t i = 0; i < shown; ++i) list += (i ? "," : "") + std::to_string(ranks[i]);
  if (shown < ranks.size()) list += ",... (" + std::to_string(ranks.size()) + " ranks)";
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.1f", waited_seconds);
  abort_job("distributed timeout: " + op + " on group '" + group + "' (ranks " + list +
            ") sequence #" + std::to_string(sequence) + " did not complete after " + secs +
            " s (timeout " + std::to_string(get_timeout().count()) +
            " s; a rank of this group is late, stuck or dead)" + (late.empty() ? "" : ": " + late));
}

int run_distributed_main(int argc, char** argv, const std::function<int(int, char**)>& main_fn) {
  int rc = 0;
  try {
    rc = main_fn(argc, argv);
  } catch (const Error& e) {
    abort_job(e.what());
  } catch (const std::exception& e) {
    abort_job(e.what());
  } catch (...) {
    abort_job("unknown exception");
  }
  try {
    destroy_distributed();
  } catch (const std::exception& e) {
    abort_job(std::string("destroy_distributed: ") + e.what());
  }
  return rc;
}

}  // namespace mcore::comm
