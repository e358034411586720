// CRC-32C (Castagnoli polynomial, reflected, init and final xor 0xFFFFFFFF): the checksum of
// TFRecord framing in TensorBoard event files and of mcore's checkpoint shard files. Uses the
// SSE4.2 crc32 instruction when the CPU has it (several GB/s), else a slicing-by-8 table.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mcore {

// crc32c(data) for one buffer; crc32c_extend(crc32c(a), b) == crc32c(a + b), so long files can
// be checksummed in chunks.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c(const void* data, size_t n) {
  return crc32c_extend(0, data, n);
}

// TFRecord's masked form: rotate right by 15 and add a constant, so that a CRC stored inside
// checksummed data does not checksum to a fixed value.
inline uint32_t crc32c_mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}
inline uint32_t crc32c_unmask(uint32_t masked) {
  const uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace mcore
