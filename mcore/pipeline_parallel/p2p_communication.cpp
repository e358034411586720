#include "mcore/pipeline_parallel/p2p_communication.h"

#include <vector>

#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "mcore/timers/timers.h"

namespace mcore::pipeline_parallel {

namespace {

// Tags keep activations (forward) and gradients (backward) apart on backends that match by tag:
// with two stages, both directions of traffic run between the same pair of ranks.
constexpr int kForwardTag = 11;
constexpr int kBackwardTag = 12;
constexpr int kForwardShapeTag = 13;
constexpr int kBackwardShapeTag = 14;

Tensor sendable(const Tensor& t) {
  // The wire needs contiguous memory; detach so no graph is touched or recorded.
  return t.detach().contiguous();
}

// Shape headers travel on the pipeline's device (NCCL moves only GPU memory).
Tensor shape_tensor(const Tensor& t, Device device) {
  std::vector<int64_t> dims(t.shape().begin(), t.shape().end());
  dims.insert(dims.begin(), static_cast<int64_t>(dims.size()));
  dims.resize(8, 0);
  return from_vector<int64_t>(dims).to(device);
}

Shape shape_from(const Tensor& t_in) {
  const Tensor t = t_in.to(Device::cpu());
  const int64_t* p = t.data<int64_t>();
  MCORE_CHECK(p[0] >= 0 && p[0] <= 7) << "pipeline p2p: received a malformed shape header";
  return Shape(p + 1, p + 1 + p[0]);
}

// Posts the ops in the order that pairs an even rank with an odd one (see the header).
std::vector<comm::P2POp> ordered(int rank, comm::P2POp* send_next, comm::P2POp* recv_prev,
                                 comm::P2POp* send_prev, comm::P2POp* recv_next) {
  std::vector<comm::P2POp> ops;
  auto add = [&](comm::P2POp* op) {
    if (op) ops.push_back(*op);
  };
  if (rank % 2 == 0) {
    add(send_next), add(recv_prev), add(send_prev), add(recv_next);
  } else {
    add(recv_prev), add(send_next), add(recv_next), add(send_prev);
  }
  return ops;
}

}  // namespace

P2PCommunicator::P2PCommunicator(comm::ProcessGroupPtr pp_group, P2PConfig config)
    : group_(pp_group ? std::move(pp_group) : parallel_state::get_pipeline_model_parallel_group()),
      config_(std::move(config)) {
  rank_ = group_->rank();
  size_ = group_->size();
  next_ = (rank_ + 1) % size_;
  prev_ = (rank_ - 1 + size_) % size_;
  MCORE_CHECK(config_.variable_seq_lengths || !config_.tensor_shape.empty())
      << "P2PCommunicator: tensor_shape is required unless variable_seq_lengths is set";
}

std::pair<Shape, Shape> P2PCommunicator::communicate_shapes(const Tensor& send_next,
                                                            const Tensor& send_prev, bool recv_prev,
                                                            bool recv_next) {
  Tensor sn, sp, rp, rn;
  comm::P2POp o_sn{comm::P2POp::kSend, {}, next_, kForwardShapeTag};
  comm::P2POp o_sp{comm::P2POp::kSend, {}, prev_, kBackwardShapeTag};
  comm::P2POp o_rp{comm::P2POp::kRecv, {}, prev_, kForwardShapeTag};
  comm::P2POp o_rn{comm::P2POp::kRecv, {}, next_, kBackwardShapeTag};
  if (send_next.defined()) o_sn.tensor = shape_tensor(send_next, config_.device);
  if (send_prev.defined()) o_sp.tensor = shape_tensor(send_prev, config_.device);
  if (recv_prev) o_rp.tensor = zeros({8}, {DType::I64, config_.device});
  if (recv_next) o_rn.tensor = zeros({8}, {DType::I64, config_.device});
  auto ops = ordered(rank_, send_next.defined() ? &o_sn : nullptr, recv_prev ? &o_rp : nullptr,
                     send_prev.defined() ? &o_sp : nullptr, recv_next ? &o_rn : nullptr);
  if (!ops.empty())
    for (auto& w : group_->batch_isend_irecv(ops)) w->wait();
  return {recv_prev ? shape_from(o_rp.tensor) : Shape{},
          recv_next ? shape_from(o_rn.tensor) : Shape{}};
}

std::pair<Tensor, Tensor> P2PCommunicator::communicate(const Tensor& send_next,
                                                       const Tensor& send_prev, bool recv_prev,
                                                       bool recv_next, bool requires_grad) {
  if (size_ == 1) {
    MCORE_CHECK(!recv_prev && !recv_next && !send_next.defined() && !send_prev.defined())
        << "pipeline p2p: a single-stage pipeline has no neighbour to exchange with";
    return {};
  }
  Shape prev_shape = config_.tensor_shape, next_shape = config_.tensor_shape;
  if (config_.variable_seq_lengths) {
    std::tie(prev_shape, next_shape) =
        communicate_shapes(send_next, send_prev, recv_prev, recv_next);
  }
  const TensorOptions opts{config_.pipeline_dtype, config_.device};
  comm::P2POp o_sn{comm::P2POp::kSend, {}, next_, kForwardTag};
  comm::P2POp o_sp{comm::P2POp::kSend, {}, prev_, kBackwardTag};
  comm::P2POp o_rp{comm::P2POp::kRecv, {}, prev_, kForwardTag};
  comm::P2POp o_rn{comm::P2POp::kRecv, {}, next_, kBackwardTag};
  auto check = [&](const Tensor& t, const char* what) {
    MCORE_CHECK(t.dtype() == config_.pipeline_dtype)
        << "pipeline p2p: " << what << " has dtype " << t.dtype() << " but the pipeline exchanges "
        << dtype_name(config_.pipeline_dtype) << " (set the pipeline dtype to the activations')";
    MCORE_CHECK(config_.variable_seq_lengths || t.shape() == config_.tensor_shape)
        << "pipeline p2p: " << what << " has shape " << shape_str(t.shape())
        << " but the pipeline was set up for " << shape_str(config_.tensor_shape)
        << " (pass variable_seq_lengths for changing shapes)";
  };
  if (send_next.defined()) {
    check(send_next, "the activation sent forward");
    o_sn.tensor = sendable(send_next);
    bytes_sent_ += static_cast<int64_t>(o_sn.tensor.nbytes());
  }
  if (send_prev.defined()) {
    check(send_prev, "the gradient sent backward");
    o_sp.tensor = sendable(send_prev);
    bytes_sent_ += static_cast<int64_t>(o_sp.tensor.nbytes());
  }
  if (recv_prev) o_rp.tensor = empty(prev_shape, opts);
  if (recv_next) o_rn.tensor = empty(next_shape, opts);
  auto ops = ordered(rank_, send_next.defined() ? &o_sn : nullptr, recv_prev ? &o_rp : nullptr,
                     send_prev.defined() ? &o_sp : nullptr, recv_next ? &o_rn : nullptr);
  if (!ops.empty())
    for (auto& w : group_->batch_isend_irecv(ops)) w->wait();
  Tensor from_prev = o_rp.tensor, from_next = o_rn.tensor;
  if (recv_prev) {
    bytes_received_ += static_cast<int64_t>(from_prev.nbytes());
    if (requires_grad) from_prev.set_requires_grad(true);
  }
  if (recv_next) bytes_received_ += static_cast<int64_t>(from_next.nbytes());
  return {from_prev, from_next};
}

Tensor P2PCommunicator::recv_forward(bool is_first_stage, bool requires_grad) {
  if (is_first_stage) return {};
  timers::ScopedTimer t("forward-recv", 2);
  return communicate({}, {}, true, false, requires_grad).first;
}

Tensor P2PCommunicator::recv_backward(bool is_last_stage) {
  if (is_last_stage) return {};
  timers::ScopedTimer t("backward-recv", 2);
  return communicate({}, {}, false, true, false).second;
}

void P2PCommunicator::send_forward(const Tensor& output, bool is_last_stage) {
  if (is_last_stage) return;
  timers::ScopedTimer t("forward-send", 2);
  communicate(output, {}, false, false, false);
}

void P2PCommunicator::send_backward(const Tensor& input_grad, bool is_first_stage) {
  if (is_first_stage) return;
  timers::ScopedTimer t("backward-send", 2);
  communicate({}, input_grad, false, false, false);
}

Tensor P2PCommunicator::send_forward_recv_backward(const Tensor& output, bool is_last_stage) {
  if (is_last_stage) return {};
  timers::ScopedTimer t("forward-send-backward-recv", 2);
  return communicate(output, {}, false, true, false).second;
}

Tensor P2PCommunicator::send_backward_recv_forward(const Tensor& input_grad, bool is_first_stage,
                                                   bool requires_grad) {
  if (is_first_stage) return {};
  timers::ScopedTimer t("backward-send-forward-recv", 2);
  return communicate({}, input_grad, true, false, requires_grad).first;
}

Tensor P2PCommunicator::send_forward_recv_forward(const Tensor& output, bool recv_prev,
                                                  bool requires_grad) {
  timers::ScopedTimer t("forward-send-forward-recv", 2);
  return communicate(output, {}, recv_prev, false, requires_grad).first;
}

Tensor P2PCommunicator::send_backward_recv_backward(const Tensor& input_grad, bool recv_next) {
  timers::ScopedTimer t("backward-send-backward-recv", 2);
  return communicate({}, input_grad, false, recv_next, false).second;
}

std::pair<Tensor, Tensor> P2PCommunicator::send_forward_backward_recv_forward_backward(
    const Tensor& output, const Tensor& input_grad, bool recv_prev, bool recv_next,
    bool requires_grad) {
  timers::ScopedTimer t("forward-backward-send-forward-backward-recv", 2);
  return communicate(output, input_grad, recv_prev, recv_next, requires_grad);
}

}  // namespace mcore::pipeline_parallel
