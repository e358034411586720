// Process-wide distributed setup (torch.distributed.init_process_group and friends).
// init_distributed() finds out how the program was started - OpenMPI's mpirun, a PMI/PMIx
// launcher, SLURM's srun, or plainly as one process - and builds the world group on the backend
// that fits the device: `mpi` for CPU tensors under a launcher, `local` for a single process,
// `nccl` (registered by the CUDA build through register_backend) for CUDA tensors.
//
// It also installs the "no survivors" rules: an exception that escapes on any rank (through
// run_distributed_main or std::terminate) prints "[rank N] <message>" and aborts the whole job,
// and every collective wait is bounded by the distributed timeout (set_timeout; default 10
// minutes, or MCORE_DISTRIBUTED_TIMEOUT_SECONDS from the environment).
//
// Under mpirun as root on a small machine: mpirun --allow-run-as-root --oversubscribe -np N prog
// (or set OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
// OMPI_MCA_rmaps_base_oversubscribe=1). Under SLURM: srun --mpi=pmix -n N prog.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "mcore/comm/process_group.h"
#include "mcore/tensor/device.h"

namespace mcore::comm {

enum class Launcher { kNone, kOpenMpi, kPmi, kSlurm };
const char* launcher_name(Launcher launcher);
// From the environment: OMPI_COMM_WORLD_SIZE (mpirun), PMIX_RANK / PMI_RANK (PMI launchers),
// SLURM_PROCID inside an srun step (SLURM_STEP_ID set).
Launcher detect_launcher();

struct InitOptions {
  // "" picks by device and launcher: CPU -> "mpi" under a launcher, else "local";
  // CUDA -> "nccl". "mpi" without a launcher starts a one-rank MPI job (singleton).
  std::string backend;
  Device device = Device::cpu();
  // Zero keeps the current timeout (MCORE_DISTRIBUTED_TIMEOUT_SECONDS, else 10 minutes).
  std::chrono::seconds timeout{0};
  // std::set_terminate handler that aborts the whole job with "[rank N] <what>".
  bool abort_on_uncaught_exception = true;
};

// Errors when called twice without destroy_distributed() in between.
void init_distributed(const InitOptions& options = {});
bool is_initialized();
// Releases the world group and finalizes MPI if init_distributed started it (after a barrier
// bounded by the timeout, so a rank that finishes early cannot hang in MPI_Finalize). Called at
// exit when the program did not.
void destroy_distributed();

ProcessGroupPtr world();  // errors before init_distributed()
int get_rank();
int get_world_size();
int get_local_rank();        // rank among the processes on this node
int get_local_world_size();  // processes on this node
Launcher launcher();
const std::string& backend_name();

// Bound on every blocking wait (Work::wait). set_timeout applies to waits that start afterwards.
void set_timeout(std::chrono::seconds timeout);
std::chrono::seconds get_timeout();
// MCORE_DISTRIBUTED_TIMEOUT_SECONDS when set to a positive number of seconds: the default
// timeout, and for tools the override of their own timeout flag.
std::optional<std::chrono::seconds> timeout_from_environment();

// Whether a wait yields the CPU between polls: true when this node runs more ranks than it has
// cores (mpirun --oversubscribe), so that the peer it waits for can run; else it spins, as
// MPI_Wait does. MCORE_COMM_YIELD=1 or 0 overrides.
bool yield_when_idle();

// A backend the CUDA build provides ("nccl"). The factory gets the bootstrap group (the mpi world
// under a launcher, else the local one) to exchange its unique id over.
using BackendFactory =
    std::function<ProcessGroupPtr(const ProcessGroupPtr& bootstrap, const InitOptions& options)>;
void register_backend(const std::string& name, BackendFactory factory);
bool has_backend(const std::string& name);

// Prints "[rank N] <message>" to stderr and ends the whole job: MPI_Abort when MPI is running
// (mpirun then kills every rank), else exit status 1.
[[noreturn]] void abort_job(const std::string& message);
// Called by a Work whose wait ran past the timeout: prints
// "[rank N] distributed timeout: <op> on group '<group>' (ranks a,b,...) sequence #<k> did not
// complete after <s> s" and aborts the job.
// `late`, when given, names the members that never posted the operation (rank_status.h).
[[noreturn]] void abort_on_timeout(const std::string& op, const std::string& group,
                                   const std::vector<int>& ranks, uint64_t sequence,
                                   double waited_seconds, const std::string& late = "");

// Runs main_fn; an exception escaping it on any rank prints "[rank N] <what>" and aborts the
// whole job instead of leaving the other ranks waiting. Calls destroy_distributed() after a
// normal return.
int run_distributed_main(int argc, char** argv, const std::function<int(int, char**)>& main_fn);

}  // namespace mcore::comm
