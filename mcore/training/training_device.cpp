#include "mcore/training/training_device.h"

#include <cstdlib>
#include <fstream>

#include "mcore/base/error.h"
#include "mcore/comm/distributed.h"
#include "mcore/tensor/cuda_device.h"
#include "mcore/tensor/cuda_memory.h"

namespace mcore::training {

void check_device_flag(const std::string& device) {
  MCORE_CHECK(device == "cpu" || device == "cuda")
      << "invalid arguments: --device must be cpu or cuda, got '" << device << "'";
  if (device != "cuda") return;
  MCORE_CHECK(cuda_built()) << "invalid arguments: --device cuda, but this mcore was built "
                               "without CUDA (configure with nvcc on PATH, e.g. "
                               "scripts/device/build_gpu), or use --device cpu";
  MCORE_CHECK(cuda_device_count() > 0)
      << "invalid arguments: --device cuda, but no CUDA device is visible (check nvidia-smi, "
         "the driver and CUDA_VISIBLE_DEVICES), or use --device cpu";
}

Device init_device(const Arguments& a) {
  check_device_flag(a.device);
  return a.device == "cuda" ? Device::cuda() : Device::cpu();
}

Device select_training_device(const Arguments& a) {
  check_device_flag(a.device);
  if (a.device != "cuda") return Device::cpu();
  MCORE_CHECK(!comm::is_initialized() || comm::get_world_size() == 1 ||
              comm::backend_name() == "nccl")
      << "--device cuda with " << comm::get_world_size() << " ranks needs the nccl backend, but "
      << "the world group runs on '" << comm::backend_name()
      << "' (init_distributed with {.device = Device::cuda()})";
  // The nccl backend already made its GPU current (local rank mod visible devices, from the
  // launcher's environment); every tensor of this rank must live there.
  if (!comm::is_initialized() || comm::backend_name() != "nccl") {
    const int local = comm::is_initialized() ? comm::get_local_rank() : 0;
    set_cuda_device(local % cuda_device_count());
  }
  return current_cuda_device();
}

datasets::GPTBatch batch_to_device(const datasets::GPTBatch& b, Device device) {
  if (device.is_cpu()) return b;
  auto move = [&](const Tensor& t) {
    if (!t.defined() || t.device() == device) return t;
    return pin_memory(t.contiguous()).to(device);
  };
  datasets::GPTBatch out;
  out.tokens = move(b.tokens);
  out.labels = move(b.labels);
  out.loss_mask = move(b.loss_mask);
  out.position_ids = move(b.position_ids);
  out.attention_mask = move(b.attention_mask);
  out.sample_indices = b.sample_indices;
  return out;
}

MemoryGib memory_gib(Device device) {
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  MemoryGib m;
  if (device.is_cuda()) {
    const CudaMemoryStats s = cuda_memory_stats(device.index);
    m.current = static_cast<double>(s.allocated_bytes) / kGiB;
    m.peak = static_cast<double>(s.peak_allocated_bytes) / kGiB;
    m.reserved = static_cast<double>(s.reserved_bytes) / kGiB;
    return m;
  }
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.current = std::atof(line.c_str() + 6) / (1024.0 * 1024.0);
    if (line.rfind("VmHWM:", 0) == 0) m.peak = std::atof(line.c_str() + 6) / (1024.0 * 1024.0);
  }
  return m;
}

}  // namespace mcore::training
