// MD5 (RFC 1321). Megatron names its dataset index caches after the MD5 hex digest of the
// dataset's JSON description, so finding a cache Megatron built means hashing the same way.
#pragma once

#include <string>

namespace mcore::datasets {

// Lower-case hex digest of `data`, as Python's hashlib.md5(data).hexdigest().
std::string md5_hex(const std::string& data);

}  // namespace mcore::datasets
