// Argument checks shared by the communication backends, so that local, mpi and nccl reject the
// same bad calls with the same messages (both shapes named, and the fix).
#pragma once

#include <cstdint>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::comm::detail {

// `r` must be a rank of a group of `size`.
void check_peer(int r, int size, const char* op, const char* what);
// output: [size * n, ...] (or [size, n, ...]) for input [n, ...]; same dtype and device.
void check_all_gather(const Tensor& output, const Tensor& input, int size, const char* op);
// input: [size * n, ...] (or [size, n, ...]) for output [n, ...]; same dtype and device.
void check_reduce_scatter(const Tensor& output, const Tensor& input, int size, const char* op);
void check_same_dtype_device(const Tensor& a, const Tensor& b, const char* op);

// Row counts of all_to_all_single after resolving empty splits to equal parts, checked against
// the tensors' first dimensions. row_numel: elements per row (product of the other dims).
struct AllToAllSplits {
  std::vector<int64_t> out_rows;
  std::vector<int64_t> in_rows;
  int64_t row_numel = 0;
};
AllToAllSplits resolve_all_to_all(const Tensor& output, const Tensor& input,
                                  const std::vector<int64_t>& out_splits,
                                  const std::vector<int64_t>& in_splits, int size);

// True when the byte ranges of the two tensors' storage overlap (an op must then stage a copy).
bool overlaps(const Tensor& a, const Tensor& b);

}  // namespace mcore::comm::detail
