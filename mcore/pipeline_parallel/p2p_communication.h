// Point-to-point communication between adjacent pipeline stages (Megatron Core's
// pipeline_parallel/p2p_communication.py).
//
// A stage sends its output activations to the next stage and receives, in backward, the
// gradient of that output from it; it receives its input from the previous stage and sends the
// input's gradient back. "next" and "prev" wrap around the pipeline group, which the
// interleaved schedule relies on: the last rank's chunk c feeds the first rank's chunk c + 1.
//
// Every call posts its sends and receives together as one batch (batch_isend_irecv) and waits
// for all of them, so two neighbours exchanging in both directions cannot deadlock. The ops are
// issued in an order that pairs up between an even and an odd rank (even: send next, recv prev,
// send prev, recv next; odd: the mirror), so backends that match messages by order (NCCL) pair
// them correctly; the MPI backend also tags activations and gradients differently.
//
// Shapes are known in advance ([seq/tp-if-sequence-parallel, micro batch, hidden]); with
// variable_seq_lengths each exchange first sends the shapes, then the tensors.
#pragma once

#include <utility>

#include "mcore/comm/process_group.h"
#include "mcore/tensor/tensor.h"

namespace mcore::pipeline_parallel {

struct P2PConfig {
  Shape tensor_shape;                 // shape of every activation / gradient exchanged
  DType pipeline_dtype = DType::F32;  // their dtype
  bool variable_seq_lengths = false;  // exchange shapes first (tensor_shape is then unused)
  Device device = Device::cpu();
};

class P2PCommunicator {
 public:
  // pp_group: the pipeline-parallel group (nullptr: parallel_state's).
  P2PCommunicator(comm::ProcessGroupPtr pp_group, P2PConfig config);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_first_stage() const { return rank_ == 0; }
  bool is_last_stage() const { return rank_ == size_ - 1; }
  const comm::ProcessGroupPtr& pp_group() const { return group_; }
  const P2PConfig& config() const { return config_; }

  // Receives the input activation from the previous stage (undefined tensor when
  // `is_first_stage` says there is none). The result is a leaf that requires grad when
  // `requires_grad`, so backward leaves the gradient to send back in its grad().
  Tensor recv_forward(bool is_first_stage, bool requires_grad = true);
  // Receives the gradient of this stage's output from the next stage.
  Tensor recv_backward(bool is_last_stage);
  void send_forward(const Tensor& output, bool is_last_stage);
  void send_backward(const Tensor& input_grad, bool is_first_stage);
  // 1F1B steady state: send the output just computed, receive the gradient of an earlier one.
  Tensor send_forward_recv_backward(const Tensor& output, bool is_last_stage);
  // Send an input's gradient, receive the next input.
  Tensor send_backward_recv_forward(const Tensor& input_grad, bool is_first_stage,
                                    bool requires_grad = true);
  // Interleaved schedule: send (if defined) and receive (if asked) in one direction.
  Tensor send_forward_recv_forward(const Tensor& output, bool recv_prev, bool requires_grad = true);
  Tensor send_backward_recv_backward(const Tensor& input_grad, bool recv_next);
  // Both directions in one batch: returns (input from prev, output grad from next).
  std::pair<Tensor, Tensor> send_forward_backward_recv_forward_backward(const Tensor& output,
                                                                        const Tensor& input_grad,
                                                                        bool recv_prev,
                                                                        bool recv_next,
                                                                        bool requires_grad = true);

  // Bytes sent and received so far (tests, benchmark).
  int64_t bytes_sent() const { return bytes_sent_; }
  int64_t bytes_received() const { return bytes_received_; }

 private:
  // The one primitive: any of the four transfers, batched and waited.
  std::pair<Tensor, Tensor> communicate(const Tensor& send_next, const Tensor& send_prev,
                                        bool recv_prev, bool recv_next, bool requires_grad);
  std::pair<Shape, Shape> communicate_shapes(const Tensor& send_next, const Tensor& send_prev,
                                             bool recv_prev, bool recv_next);

  comm::ProcessGroupPtr group_;
  P2PConfig config_;
  int rank_ = 0, size_ = 1, next_ = 0, prev_ = 0;
  int64_t bytes_sent_ = 0, bytes_received_ = 0;
};

}  // namespace mcore::pipeline_parallel
