#include "mcore/parallel_state/rank_generator.h"

#include <algorithm>
#include <cctype>

#include "mcore/base/error.h"

namespace mcore::parallel_state {

namespace {

const char* const kAxisNames[] = {"tp", "pp", "dp", "ep", "cp"};

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "-" : "") + parts[i];
  return out;
}

}  // namespace

std::string rank_groups_str(const RankGroups& groups) {
  std::string out = "[";
  for (size_t g = 0; g < groups.size(); ++g) {
    out += g ? ", [" : "[";
    for (size_t i = 0; i < groups[g].size(); ++i)
      out += (i ? ", " : "") + std::to_string(groups[g][i]);
    out += "]";
  }
  return out + "]";
}

std::vector<std::string> split_axes(const std::string& order) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t dash = order.find('-', start);
    out.push_back(
        order.substr(start, dash == std::string::npos ? std::string::npos : dash - start));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  return out;
}

RankGroups generate_masked_orthogonal_rank_groups(int world_size,
                                                  const std::vector<int>& parallel_size,
                                                  const std::vector<bool>& mask) {
  MCORE_CHECK(parallel_size.size() == mask.size())
      << "generate_masked_orthogonal_rank_groups: " << parallel_size.size() << " sizes but "
      << mask.size() << " mask entries";
  // Stride of each axis in the global rank: the product of the sizes of the faster axes.
  std::vector<int> masked_shape, unmasked_shape, masked_stride, unmasked_stride;
  int stride = 1;
  for (size_t i = 0; i < parallel_size.size(); ++i) {
    MCORE_CHECK(parallel_size[i] >= 1) << "parallel sizes must be >= 1, got " << parallel_size[i];
    (mask[i] ? masked_shape : unmasked_shape).push_back(parallel_size[i]);
    (mask[i] ? masked_stride : unmasked_stride).push_back(stride);
    stride *= parallel_size[i];
  }
  MCORE_CHECK(stride == world_size)
      << "parallel sizes multiply to " << stride << " but the world size is " << world_size;
  int group_size = 1;
  for (int s : masked_shape) group_size *= s;
  const int num_groups = world_size / group_size;

  // Mixed-radix decomposition of `index` over `shape` (fastest first), dotted with `strides`.
  auto place = [](int index, const std::vector<int>& shape, const std::vector<int>& strides) {
    int offset = 0;
    for (size_t i = 0; i < shape.size(); ++i) {
      offset += (index % shape[i]) * strides[i];
      index /= shape[i];
    }
    return offset;
  };

  RankGroups groups(num_groups, std::vector<int>(group_size));
  for (int g = 0; g < num_groups; ++g) {
    const int base = place(g, unmasked_shape, unmasked_stride);
    for (int r = 0; r < group_size; ++r)
      groups[g][r] = base + place(r, masked_shape, masked_stride);
  }
  return groups;
}

RankGenerator::RankGenerator(int tp, int ep, int dp, int pp, int cp, const std::string& order,
                             int rank_offset)
    : world_size_(tp * ep * dp * pp * cp), rank_offset_(rank_offset) {
  MCORE_CHECK(ep == 1 || cp == 1)
      << "RankGenerator: expert parallel size (" << ep << ") and context parallel size (" << cp
      << ") cannot both be > 1 in one rank generator: CP belongs to the dense generator and EP "
         "to the expert generator";
  const int sizes[] = {tp, pp, dp, ep, cp};
  for (int i = 0; i < 5; ++i)
    MCORE_CHECK(sizes[i] >= 1) << "RankGenerator: The size of (" << kAxisNames[i] << ") is ("
                               << sizes[i] << "); parallel sizes must be >= 1";
  auto size_of_name = [&](const std::string& name) {
    for (int i = 0; i < 5; ++i)
      if (name == kAxisNames[i]) return sizes[i];
    return -1;
  };

  std::string lowered = order;
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  axes_ = split_axes(lowered);
  for (size_t i = 0; i < axes_.size(); ++i) {
    MCORE_CHECK(size_of_name(axes_[i]) > 0)
        << "parallel order '" << order << "' has unknown axis '" << axes_[i]
        << "'; use '-'-separated names from tp, cp, ep, dp, pp (e.g. tp-cp-ep-dp-pp)";
    MCORE_CHECK(std::count(axes_.begin(), axes_.end(), axes_[i]) == 1)
        << "parallel order '" << order << "' names axis '" << axes_[i] << "' twice";
  }
  for (int i = 0; i < 5; ++i) {
    if (std::find(axes_.begin(), axes_.end(), kAxisNames[i]) != axes_.end()) continue;
    MCORE_CHECK(sizes[i] == 1) << "The size of (" << kAxisNames[i] << ") is (" << sizes[i]
                               << "), but you haven't specified the order (" << order << "). Add '"
                               << kAxisNames[i] << "' to the parallel order";
    axes_.push_back(kAxisNames[i]);
  }
  for (const auto& a : axes_) sizes_.push_back(size_of_name(a));
  order_ = join(axes_);
}

int RankGenerator::size_of(const std::string& axis) const {
  auto it = std::find(axes_.begin(), axes_.end(), axis);
  MCORE_CHECK(it != axes_.end()) << "RankGenerator: unknown axis '" << axis << "' (order " << order_
                                 << ")";
  return sizes_[it - axes_.begin()];
}

RankGroups RankGenerator::get_ranks(const std::string& token) const {
  std::vector<bool> mask(axes_.size(), false);
  for (const auto& t : split_axes(token)) {
    auto it = std::find(axes_.begin(), axes_.end(), t);
    MCORE_CHECK(it != axes_.end()) << "RankGenerator::get_ranks('" << token << "'): axis '" << t
                                   << "' is not in the order " << order_;
    mask[it - axes_.begin()] = true;
  }
  RankGroups groups = generate_masked_orthogonal_rank_groups(world_size_, sizes_, mask);
  if (rank_offset_ != 0)
    for (auto& g : groups)
      for (int& r : g) r += rank_offset_;
  return groups;
}

}  // namespace mcore::parallel_state
