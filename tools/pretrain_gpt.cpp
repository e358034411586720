// pretrain_gpt: Megatron-LM's pretrain_gpt.py entry point (flags as Megatron's; see
// mcore/training/arguments.h and training.h). For example, on 4 ranks with TP=2 x DP=2:
//
//   mpirun -np 4 pretrain_gpt --tensor-model-parallel-size 2 --model gpt2-tiny --mock-data
//       --seq-length 128 --micro-batch-size 2 --global-batch-size 16 --train-iters 100
//       --lr 3e-4
#include "mcore/training/training.h"

int main(int argc, char** argv) { return mcore::training::pretrain_gpt_main(argc, argv); }
