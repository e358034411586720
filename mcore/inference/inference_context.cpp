#include "mcore/inference/inference_context.h"

#include "mcore/base/error.h"
#include "mcore/tensor/factory.h"

namespace mcore::inference {

KVCache::KVCache(int64_t max_sequence_length, int64_t batch_size, int64_t num_groups,
                 int64_t head_dim, DType dtype, Device device) {
  MCORE_CHECK(max_sequence_length > 0 && batch_size > 0 && num_groups > 0 && head_dim > 0)
      << "KVCache: sizes must be positive, got max_sequence_length=" << max_sequence_length
      << " batch=" << batch_size << " groups=" << num_groups << " head_dim=" << head_dim;
  key_ = zeros({max_sequence_length, batch_size, num_groups, head_dim}, {dtype, device});
  value_ = zeros({max_sequence_length, batch_size, num_groups, head_dim}, {dtype, device});
}

std::pair<Tensor, Tensor> KVCache::update(const Tensor& key, const Tensor& value, int64_t offset) {
  MCORE_CHECK(key.dim() == 4 && key.shape() == value.shape() && key.size(1) == key_.size(1) &&
              key.size(2) == key_.size(2) && key.size(3) == key_.size(3))
      << "KVCache: key " << shape_str(key.shape()) << " and value " << shape_str(value.shape())
      << " must both be [s, " << key_.size(1) << ", " << key_.size(2) << ", " << key_.size(3)
      << "] to fit the cache " << shape_str(key_.shape());
  const int64_t s = key.size(0);
  MCORE_CHECK(offset >= 0 && offset + s <= key_.size(0))
      << "KVCache: tokens [" << offset << ", " << offset + s << ") do not fit the cache of "
      << key_.size(0) << " positions: create the InferenceContext with a larger "
      << "max_sequence_length";
  // Rows of dim 0 of a contiguous buffer: narrow() views are contiguous, so copy_ writes in
  // place and the returned prefix needs no copy.
  Tensor kdst = key_.narrow(0, offset, s), vdst = value_.narrow(0, offset, s);
  kdst.copy_(key);
  vdst.copy_(value);
  return {key_.narrow(0, 0, offset + s), value_.narrow(0, 0, offset + s)};
}

InferenceContext::InferenceContext(int64_t max_sequence_length, int64_t max_batch_size)
    : max_sequence_length_(max_sequence_length), max_batch_size_(max_batch_size) {
  MCORE_CHECK(max_sequence_length > 0 && max_batch_size > 0)
      << "InferenceContext: max_sequence_length (" << max_sequence_length
      << ") and max_batch_size (" << max_batch_size << ") must be positive";
}

void InferenceContext::increment_sequence_len_offset(int64_t n) {
  MCORE_CHECK(n >= 0 && sequence_len_offset_ + n <= max_sequence_length_)
      << "InferenceContext: advancing the offset " << sequence_len_offset_ << " by " << n
      << " passes max_sequence_length " << max_sequence_length_;
  sequence_len_offset_ += n;
}

KVCache& InferenceContext::cache_for_layer(int64_t layer_number, const Tensor& key) {
  auto it = caches_.find(layer_number);
  if (it == caches_.end()) {
    MCORE_CHECK(key.dim() == 4 && key.size(1) <= max_batch_size_)
        << "InferenceContext: keys must be [s, b, ng, hn] with b <= max_batch_size ("
        << max_batch_size_ << "), got " << shape_str(key.shape());
    it = caches_
             .emplace(layer_number, KVCache(max_sequence_length_, key.size(1), key.size(2),
                                            key.size(3), key.dtype(), key.device()))
             .first;
  }
  return it->second;
}

}  // namespace mcore::inference
