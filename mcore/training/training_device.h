// Internal to pretrain_gpt: the device a run trains on (--device cpu|cuda). With cuda, each rank
// uses GPU local_rank % visible devices and the world group is NCCL; model chunks are built on
// the CPU (Philox init, layout-invariant) and moved to the GPU before DDP and the optimizer see
// them; batches (CPU tensors from mcore/datasets) go through pinned memory; the log line reports
// the caching allocator's memory instead of the process RSS.
#pragma once

#include <string>

#include "mcore/datasets/data_loader.h"
#include "mcore/tensor/device.h"
#include "mcore/training/arguments.h"

namespace mcore::training {

// Errors unless `device` is "cpu", or "cuda" in a CUDA build with a visible GPU.
void check_device_flag(const std::string& device);

// The device to hand init_distributed (cuda: "this rank's GPU", which picks the nccl backend).
Device init_device(const Arguments& a);

// After init_distributed: makes this rank's GPU current (the nccl communicator's; otherwise
// local rank mod visible devices) and returns it; Device::cpu() for --device cpu.
Device select_training_device(const Arguments& a);

// The batch's tensors on `device`: via pinned memory, so the copies are asynchronous on the
// current stream. The batch itself when `device` is the CPU.
datasets::GPTBatch batch_to_device(const datasets::GPTBatch& b, Device device);

// Memory for the log line, in GiB: the process's resident and peak resident set on the CPU;
// the caching allocator's allocated and peak allocated bytes on a GPU (plus reserved).
struct MemoryGib {
  double current = 0;
  double peak = 0;
  double reserved = 0;  // GPU only
};
MemoryGib memory_gib(Device device);

}  // namespace mcore::training
