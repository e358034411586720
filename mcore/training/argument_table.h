// The table of pretrain_gpt's flags (Megatron-LM's names, destinations and help texts) that
// the parser in arguments.cpp walks. Internal to mcore/training.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mcore/training/arguments.h"

namespace mcore::training::detail {

using A = Arguments;
using Field =
    std::variant<bool A::*, int64_t A::*, double A::*, std::string A::*,
                 std::optional<int64_t> A::*, std::optional<double> A::*,
                 std::optional<std::string> A::*, std::optional<std::vector<std::string>> A::*,
                 std::optional<std::vector<int64_t>> A::*>;

struct Row {
  ArgumentSpec spec;
  Field field;
  int nargs = 1;  // 1: one value; -1: any number ('*'); n: exactly n
};

using Act = ArgumentSpec::Action;

const std::vector<Row>& rows();

}  // namespace mcore::training::detail
