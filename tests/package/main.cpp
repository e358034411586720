// Trains one linear layer for a step through the installed mcore package.
#include <cstdio>

#include "mcore/nn/functional.h"
#include "mcore/nn/linear.h"

int main() {
  mcore::nn::Linear fc(3, 2);
  mcore::Tensor x = mcore::ones({4, 3});
  mcore::Tensor loss = mcore::F::sum(fc.forward(x));
  loss.backward();
  std::printf("consumer ok: grad shape [%ld, %ld]\n",
              static_cast<long>(fc.weight()->grad().size(0)),
              static_cast<long>(fc.weight()->grad().size(1)));
  return fc.weight()->grad().defined() ? 0 : 1;
}
