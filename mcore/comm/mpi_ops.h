// How mcore dtypes and reduce ops map onto MPI: the predefined MPI datatype and op for native
// types, and user-defined MPI ops for bf16/fp16 that add (or compare) each pair in fp32 and
// round once per pair, as NCCL does. Also the division that turns a sum into kAvg.
#pragma once

#include <mpi.h>

#include <cstdint>

#include "mcore/base/dtype.h"
#include "mcore/comm/process_group.h"

namespace mcore::comm::mpi {

struct ReduceSpec {
  MPI_Datatype datatype;
  MPI_Op op;
};
// Errors clearly for dtypes MPI cannot reduce (fp8) and for kAvg on non-floating dtypes.
// kAvg maps to a sum; the caller divides afterwards (divide_inplace).
ReduceSpec reduce_spec(DType dtype, ReduceOp op, const char* what);
// data = data / divisor, elementwise, in the dtype's compute type (fp32 for bf16/fp16).
void divide_inplace(void* data, int64_t n, DType dtype, int divisor);
// Frees the user-defined ops (before MPI_Finalize).
void free_custom_ops();

// Throws mcore::Error naming the call and MPI's error string when rc != MPI_SUCCESS.
void check_mpi(int rc, const char* call);

}  // namespace mcore::comm::mpi
