// A pipeline job in which one stage fails, for the fault tests: every rank runs the 1F1B
// schedule over a toy model (one weight per stage), and stage S throws in its forward (or
// backward) of microbatch 2. The other stages are then blocked in send/recv with their
// neighbours; the job must still end at once with the failing stage's message.
//
//   pipeline_probe forward|backward STAGE
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mcore/autograd/function.h"
#include "mcore/comm/distributed.h"
#include "mcore/nn/functional.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/pipeline_parallel/schedules.h"
#include "mcore/tensor/factory.h"

namespace mcore {
namespace {

// Identity whose backward throws: a failure inside a stage's backward pass.
struct ThrowInBackward : autograd::Function<ThrowInBackward> {
  static Tensor forward(autograd::AutogradContext*, const Tensor& x) { return x.clone(); }
  static std::vector<Tensor> backward(autograd::AutogradContext*, std::vector<Tensor>) {
    MCORE_FAIL() << "deliberate failure in pipeline stage " << comm::get_rank()
                 << " (backward of microbatch 2)";
    return {};
  }
};

int run(const std::string& where, int failing_stage) {
  namespace pp = pipeline_parallel;
  comm::init_distributed();
  parallel_state::initialize_model_parallel(1, comm::get_world_size());
  const int rank = comm::get_rank();
  Tensor w = full({4, 4}, 0.5).set_requires_grad(true);
  pp::ForwardStepFunc step = [&](int64_t mb, int, const Tensor& input,
                                 bool last) -> pp::ForwardStepOutput {
    Tensor x = input.defined() ? input : full({2, 1, 4}, 1.0);
    if (rank == failing_stage && mb == 2 && where == "forward")
      MCORE_FAIL() << "deliberate failure in pipeline stage " << rank << " (forward of microbatch "
                   << mb << ")";
    Tensor y = F::reshape(F::matmul(F::reshape(x, {2, 4}), w), {2, 1, 4});
    if (rank == failing_stage && mb == 2 && where == "backward") y = ThrowInBackward::apply(y);
    if (last) return {F::mean(y), {}, 0.0};
    return {y, {}, 0.0};
  };
  pp::ScheduleConfig sc;
  sc.num_microbatches = 6;
  sc.p2p.tensor_shape = {2, 1, 4};
  for (int i = 0; i < 3; ++i) pp::get_forward_backward_func()(step, sc);
  std::printf("[rank %d] survived\n", rank);
  return 0;
}

}  // namespace
}  // namespace mcore

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: pipeline_probe forward|backward STAGE\n");
    return 2;
  }
  const std::string where = argv[1];
  const int stage = std::atoi(argv[2]);
  return mcore::comm::run_distributed_main(argc, argv,
                                           [&](int, char**) { return mcore::run(where, stage); });
}
