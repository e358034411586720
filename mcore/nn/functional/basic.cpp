#include "mcore/nn/functional/basic.h"

#include "mcore/autograd/function.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/reduction.h"
#include "mcore/tensor/factory.h"

namespace mcore::F {

using autograd::AutogradContext;
using autograd::Function;

namespace {

// Views: the backward maps the output gradient into a tensor of the input's shape through the
// same view (covers narrow/select/transpose/permute/(un)squeeze uniformly).
struct ViewFn : Function<ViewFn> {
  using Maker = std::function<Tensor(const Tensor&)>;
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Maker& make) {
    ctx->save("shape", x.shape());
    ctx->save("dtype", x.dtype());
    ctx->save("make", make);
    return make(x);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    Tensor gx = empty(ctx->get<Shape>("shape"), {ctx->get<DType>("dtype"), g[0].device()});
    Tensor target = ctx->get<Maker>("make")(gx);
    // A view that reaches every element (transpose, permute, (un)squeeze) is overwritten in
    // full by the copy; only a part (narrow, select) needs the rest zeroed.
    if (target.numel() != gx.numel()) gx.zero_();
    target.copy_(g[0]);
    return {gx};
  }
};

// Reshape-like views whose gradient is just the reshaped gradient (no zero fill).
struct ReshapeFn : Function<ReshapeFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Shape& shape) {
    ctx->save("shape", x.shape());
    return x.reshape(shape);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {g[0].reshape(ctx->get<Shape>("shape"))};
  }
};

struct ContiguousFn : Function<ContiguousFn> {
  static Tensor forward(AutogradContext*, const Tensor& x) { return x.contiguous(); }
  static std::vector<Tensor> backward(AutogradContext*, std::vector<Tensor> g) { return {g[0]}; }
};

struct ToFn : Function<ToFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, DType dtype) {
    ctx->save("dtype", x.dtype());
    return x.to(dtype);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {g[0].to(ctx->get<DType>("dtype"))};
  }
};

struct CatFn : Function<CatFn> {
  static Tensor forward(AutogradContext* ctx, const std::vector<Tensor>& xs, int64_t dim) {
    MCORE_CHECK(!xs.empty()) << "cat: no tensors";
    Shape shape = xs[0].shape();
    int64_t d = dim < 0 ? dim + static_cast<int64_t>(shape.size()) : dim;
    MCORE_CHECK(d >= 0 && d < static_cast<int64_t>(shape.size()))
        << "cat: dim " << dim << " out of range for " << shape_str(shape);
    std::vector<int64_t> sizes;
    int64_t total = 0;
    for (const Tensor& x : xs) {
      Shape a = x.shape(), b = shape;
      MCORE_CHECK(a.size() == b.size() && x.dtype() == xs[0].dtype())
          << "cat: tensors " << shape_str(xs[0].shape()) << " " << xs[0].dtype() << " and "
          << shape_str(x.shape()) << " " << x.dtype() << " cannot be concatenated";
      a[d] = b[d] = 0;
      MCORE_CHECK(a == b) << "cat: shapes " << shape_str(xs[0].shape()) << " and "
                          << shape_str(x.shape()) << " differ outside dim " << d;
      sizes.push_back(x.size(d));
      total += x.size(d);
    }
    shape[d] = total;
    Tensor out = empty(shape, {xs[0].dtype(), xs[0].device()});
    int64_t start = 0;
    for (const Tensor& x : xs) {
      Tensor slot = out.narrow(d, start, x.size(d));
      slot.copy_(x);
      start += x.size(d);
    }
    ctx->save("sizes", sizes);
    ctx->save("dim", d);
    return out;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    auto sizes = ctx->get<std::vector<int64_t>>("sizes");
    int64_t d = ctx->get<int64_t>("dim");
    std::vector<Tensor> out;
    int64_t start = 0;
    for (int64_t s : sizes) {
      out.push_back(g[0].narrow(d, start, s).contiguous());
      start += s;
    }
    return out;
  }
};

struct AddFn : Function<AddFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b, double sign) {
    ctx->save("a", a.shape());
    ctx->save("b", b.shape());
    ctx->save("sign", sign);
    return ops::add(a, b, sign);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    Tensor gb = ops::sum_to(g[0], ctx->get<Shape>("b"));
    double sign = ctx->get<double>("sign");
    return {ops::sum_to(g[0], ctx->get<Shape>("a")), sign == 1.0 ? gb : ops::scale(gb, sign)};
  }
};

struct MulFn : Function<MulFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b) {
    ctx->save_for_backward({a, b});
    return ops::mul(a, b);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& s = ctx->saved_tensors();
    Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = ops::sum_to(ops::mul(g[0], s[1]), s[0].shape());
    if (ctx->needs_input_grad(1)) gb = ops::sum_to(ops::mul(g[0], s[0]), s[1].shape());
    return {ga, gb};
  }
};

struct DivFn : Function<DivFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b) {
    ctx->save_for_backward({a, b});
    return ops::div(a, b);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const auto& s = ctx->saved_tensors();
    Tensor ga, gb;
    Tensor g_over_b = ops::div(g[0], s[1]);
    if (ctx->needs_input_grad(0)) ga = ops::sum_to(g_over_b, s[0].shape());
    if (ctx->needs_input_grad(1))  // d(a/b)/db = -a/b^2
      gb = ops::sum_to(ops::neg(ops::div(ops::mul(g_over_b, s[0]), s[1])), s[1].shape());
    return {ga, gb};
  }
};

struct ScaleFn : Function<ScaleFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double alpha) {
    ctx->save("alpha", alpha);
    return ops::scale(x, alpha);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {ops::scale(g[0], ctx->get<double>("alpha"))};
  }
};

struct SumFn : Function<SumFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double factor) {
    ctx->save("shape", x.shape());
    ctx->save("factor", factor);
    Tensor s = ops::sum_all(x);
    return factor == 1.0 ? s : ops::scale(s, factor);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const Shape& shape = ctx->get<Shape>("shape");
    const double factor = ctx->get<double>("factor");
    if (g[0].device().is_cuda()) {
      // Broadcast on the device: item() would stall the host until the backward so far is done.
      Tensor gx = empty(shape, {g[0].dtype(), g[0].device()});
      gx.copy_(factor == 1.0 ? g[0] : ops::scale(g[0], factor));  // 0-d, broadcast by copy_
      return {gx};
    }
    return {full(shape, g[0].item() * factor, {g[0].dtype(), g[0].device()})};
  }
};

// Consecutive narrows of one tensor with one backward node: the gradient is assembled by one
// copy of each piece into a single buffer that the pieces cover, instead of one zero-filled
// full-size gradient per piece plus their sums (the fused QKV split: 3 fills, 3 copies, 2 adds).
struct SplitFn : Function<SplitFn> {
  static std::vector<Tensor> forward(AutogradContext* ctx, const Tensor& x,
                                     const std::vector<int64_t>& sizes, int64_t dim) {
    ctx->save("shape", x.shape());
    ctx->save("dtype", x.dtype());
    ctx->save("sizes", sizes);
    ctx->save("dim", dim);
    std::vector<Tensor> out;
    int64_t start = 0;
    for (int64_t s : sizes) {
      out.push_back(x.narrow(dim, start, s));
      start += s;
    }
    return out;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    Tensor gx = empty(ctx->get<Shape>("shape"), {ctx->get<DType>("dtype"), g[0].device()});
    const auto& sizes = ctx->get<std::vector<int64_t>>("sizes");
    const int64_t dim = ctx->get<int64_t>("dim");
    int64_t start = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      gx.narrow(dim, start, sizes[i]).copy_(g[i]);  // missing gradients arrive as zeros
      start += sizes[i];
    }
    return {gx};
  }
};

Tensor view_op(const Tensor& x, ViewFn::Maker make) {
  return ViewFn::apply(x, make);
}

}  // namespace

Tensor view(const Tensor& x, const Shape& shape) {
  {
    NoGradGuard g;  // validate the view (and its error message) before recording
    (void)x.view(shape);
  }
  return ReshapeFn::apply(x, shape);
}
Tensor reshape(const Tensor& x, const Shape& shape) {
  return ReshapeFn::apply(x, shape);
}
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  return view_op(x, [=](const Tensor& t) { return t.narrow(dim, start, length); });
}
Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  return view_op(x, [=](const Tensor& t) { return t.select(dim, index); });
}
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  return view_op(x, [=](const Tensor& t) { return t.transpose(d0, d1); });
}
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  return view_op(x, [=](const Tensor& t) { return t.permute(dims); });
}
Tensor unsqueeze(const Tensor& x, int64_t dim) {
  return view_op(x, [=](const Tensor& t) { return t.unsqueeze(dim); });
}
Tensor squeeze(const Tensor& x, int64_t dim) {
  return view_op(x, [=](const Tensor& t) { return t.squeeze(dim); });
}
Tensor contiguous(const Tensor& x) {
  return x.is_contiguous() ? x : ContiguousFn::apply(x);
}
Tensor to(const Tensor& x, DType dtype) {
  return x.dtype() == dtype ? x : ToFn::apply(x, dtype);
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  return CatFn::apply(xs, dim);
}
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  int64_t total = 0;
  for (int64_t s : sizes) {
    MCORE_CHECK(s >= 0) << "split: negative size " << s << " for " << shape_str(x.shape());
    total += s;
  }
  MCORE_CHECK(total == x.size(dim))
      << "split: sizes sum to " << total << " but dimension " << dim << " has size " << x.size(dim);
  if (sizes.empty()) return {};
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  return SplitFn::apply(x, sizes, d);
}
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  int64_t n = x.size(dim);
  MCORE_CHECK(chunks > 0 && n % chunks == 0)
      << "chunk: dimension " << dim << " of size " << n << " does not split into " << chunks
      << " equal chunks";
  return split(x, std::vector<int64_t>(static_cast<size_t>(chunks), n / chunks), dim);
}

Tensor add(const Tensor& a, const Tensor& b) {
  return AddFn::apply(a, b, 1.0);
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return AddFn::apply(a, b, -1.0);
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return MulFn::apply(a, b);
}
Tensor div(const Tensor& a, const Tensor& b) {
  return DivFn::apply(a, b);
}
Tensor scale(const Tensor& x, double alpha) {
  return ScaleFn::apply(x, alpha);
}
Tensor axpy(double alpha, const Tensor& x, const Tensor& y) {
  return AddFn::apply(y, x, alpha);
}
Tensor neg(const Tensor& x) {
  return ScaleFn::apply(x, -1.0);
}
Tensor sum(const Tensor& x) {
  return SumFn::apply(x, 1.0);
}
Tensor mean(const Tensor& x) {
  MCORE_CHECK(x.numel() > 0) << "mean of an empty tensor";
  return SumFn::apply(x, 1.0 / static_cast<double>(x.numel()));
}

}  // namespace mcore::F
