// The `nccl` backend: ProcessGroup over NCCL for CUDA tensors (built only with CUDA).
//
// - Bootstrap: rank 0 of the bootstrap group (the mpi world under a launcher) makes the NCCL
//   unique id and broadcasts it over that group; every rank then joins the world communicator
//   on GPU (local rank mod visible devices).
// - Subgroups: ProcessGroup::split is ncclCommSplit of the parent communicator.
// - Streams: each group runs its NCCL kernels on its own non-blocking stream. Before an op, that
//   stream waits (cudaEvent) for the caller's stream (set_nccl_caller_stream, default: mcore's
//   current stream, mcore::cuda::current_stream()), so inputs the caller just wrote are ready;
//   after it an event marks completion.
// - Work::wait() polls that event on the host until done. Every poll also checks
//   ncclCommGetAsyncError; past the distributed timeout the communicator is aborted
//   (ncclCommAbort, so no kernel keeps spinning) and the job ends naming the op, the group and
//   its sequence number.
// - send/recv are queued and launched together (ncclGroupStart/End) at the first wait, query or
//   collective that follows, so batch_isend_irecv rings cannot deadlock; NCCL matches p2p
//   messages by order, so tags are not used.
// Tensors must be contiguous and live on the group's device.
//
// init_distributed({.device = Device::cuda()}) picks this backend: libmcore registers it when it
// loads (register_nccl_backend, callable again harmlessly).
#pragma once

#include "mcore/comm/process_group.h"

namespace mcore::comm {

// Adds "nccl" to init_distributed's backends.
void register_nccl_backend();

// The world group over NCCL on CUDA device `device` (-1: local rank mod the visible devices).
// Collective over `bootstrap`.
ProcessGroupPtr make_nccl_world_group(const ProcessGroupPtr& bootstrap, int device = -1);

// The stream (a cudaStream_t) whose work NCCL ops must follow: the stream the caller's kernels
// run on. nullptr (the default) means mcore::cuda::current_stream() of the group's device.
void set_nccl_caller_stream(void* cuda_stream);

}  // namespace mcore::comm
