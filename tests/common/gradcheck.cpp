#include "tests/common/gradcheck.h"

#include <cmath>

#include "mcore/autograd/engine.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore::testing {

namespace {
double contract(const Tensor& out, const Tensor& w) {
  std::vector<double> o = to_vector<double>(out), v = to_vector<double>(w);
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += o[i] * v[i];
  return s;
}
}  // namespace

::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                     std::vector<Tensor> inputs, GradcheckOptions opt) {
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad() && t.dtype() != DType::F64)
      return ::testing::AssertionFailure() << "gradcheck needs float64 inputs, got " << t.dtype();
  }
  Tensor out = fn(inputs);
  if (!out.requires_grad()) return ::testing::AssertionFailure() << "output does not require grad";
  Tensor w = random_tensor(out.shape(), opt.seed, DType::F64);
  for (Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) t.set_grad(Tensor());
  autograd::backward({out}, {w});

  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor analytic = x.grad();
    if (!analytic.defined()) analytic = zeros(x.shape(), DType::F64);
    Tensor numeric = zeros(x.shape(), DType::F64);
    double* xp = x.data<double>();  // inputs are contiguous leaves
    double* np = numeric.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double orig = xp[i];
      double plus, minus;
      {
        NoGradGuard g;
        xp[i] = orig + opt.eps;
        plus = contract(fn(inputs), w);
        xp[i] = orig - opt.eps;
        minus = contract(fn(inputs), w);
        xp[i] = orig;
      }
      np[i] = (plus - minus) / (2 * opt.eps);
    }
    auto r = tensors_close(analytic, numeric, opt.rtol, opt.atol);
    if (!r) return ::testing::AssertionFailure() << "input " << k << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

}  // namespace mcore::testing
