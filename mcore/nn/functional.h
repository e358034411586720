// Differentiable ops (PyTorch's torch.* and torch.nn.functional), namespace mcore::F. Each
// records an autograd node when an input requires grad and grad mode is on; the math is in
// mcore/ops. One header per op family under mcore/nn/functional/.
#pragma once

#include "mcore/nn/functional/activation.h"
#include "mcore/nn/functional/attention.h"
#include "mcore/nn/functional/basic.h"
#include "mcore/nn/functional/cross_entropy.h"
#include "mcore/nn/functional/dropout.h"
#include "mcore/nn/functional/embedding.h"
#include "mcore/nn/functional/linear.h"
#include "mcore/nn/functional/norm.h"
#include "mcore/nn/functional/reduction.h"
#include "mcore/nn/functional/rope.h"
#include "mcore/nn/functional/softmax.h"
