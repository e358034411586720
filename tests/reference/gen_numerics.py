"""Reference data for tests/numerics: dtype conversions (PyTorch, ml_dtypes and an exact
table-based rounding), reductions, AdamW and FP8 quantization.

Bit patterns travel as integer arrays (uint16 for bf16/fp16, uint8 for fp8, int32 for float32
bits) so that NaN payloads and denormals reach the C++ test unchanged.
"""
import pathlib

import ml_dtypes
import numpy as np
import torch

from refutil import rng, save

G = "numerics"

# Low halves combined with every high half of a float32: exact bf16 ties (0x8000), values one
# ulp either side of a tie, fp16 ties at bit 12 with even (0x1000) and odd (0x3000) kept bits.
LOW_HALVES = np.array([0x0000, 0x0001, 0x1000, 0x3000, 0x7FFF, 0x8000, 0x8001, 0xFFFF],
                      dtype=np.uint32)
# fp8 rounds at bits 20/21, inside the high half; the low half only adds stickiness.
FP8_LOW_HALVES = np.array([0x0000, 0x0001, 0xFFFF], dtype=np.uint32)


def float_grid(lows):
    """All 65536 high halves x the given low halves, as float32 bit patterns (high-major)."""
    hi = np.arange(65536, dtype=np.uint32)[:, None] << 16
    return (hi | lows[None, :]).reshape(-1)


def exact_round(x, fmt_bits_dtype, max_code, overflow_value):
    """Correctly rounded (nearest, ties to even) conversion of float64 `x` to a narrow format,
    by table lookup over the format's non-negative finite values (codes 0..max_code are
    monotonic in value). Overflow yields code max_code + 1 (inf for bf16/fp16/E5M2, NaN for
    E4M3), the IEEE rule with `overflow_value` the next power of two above the max."""
    codes = np.arange(max_code + 1, dtype=np.uint32)
    if fmt_bits_dtype in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2):
        vals = codes.astype(np.uint8).view(fmt_bits_dtype).astype(np.float64)
    elif fmt_bits_dtype == "bf16":
        vals = (codes << 16).astype(np.uint32).view(np.float32).astype(np.float64)
    else:  # fp16
        vals = codes.astype(np.uint16).view(np.float16).astype(np.float64)
    vals = np.append(vals, overflow_value)  # sentinel: the rounding neighbour past the max
    a = np.abs(x)
    idx = np.searchsorted(vals, a, side="right") - 1
    idx = np.clip(idx, 0, max_code)
    lo, hi = vals[idx], vals[idx + 1]
    mid = (lo + hi) / 2  # exact: both have few significant bits
    up = (a > mid) | ((a == mid) & (idx % 2 == 1))
    code = np.where(a == lo, idx, np.where(up, idx + 1, idx)).astype(np.uint32)
    sign_shift = 15 if fmt_bits_dtype in ("bf16", "fp16") else 7
    code |= (np.signbit(x).astype(np.uint32) << sign_shift)
    return code


def gen_conversions(out):
    # Every bf16 / fp16 pattern to float32 (as float32 bits).
    allh = np.arange(65536, dtype=np.int32).astype(np.int16)
    t = torch.from_numpy(allh)
    save(out, G, "bf16_all_to_f32_bits", t.view(torch.bfloat16).float().view(torch.int32))
    save(out, G, "fp16_all_to_f32_bits", t.view(torch.float16).float().view(torch.int32))

    # float32 grid -> bf16 / fp16 (uint16 bits), low halves saved so C++ rebuilds the inputs.
    f = float_grid(LOW_HALVES)
    tf = torch.from_numpy(f.view(np.float32).copy())
    save(out, G, "f32_grid_lows", LOW_HALVES.astype(np.int32))
    save(out, G, "f32_grid_to_bf16", tf.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))
    save(out, G, "f32_grid_to_fp16", tf.to(torch.float16).view(torch.int16).numpy().view(np.uint16))

    # fp8: all 256 patterns -> float32 bits, and a float32 grid -> fp8 (ml_dtypes astype:
    # non-saturating), plus the saturating reference (clip to +-max first; inf -> +-max).
    codes = np.arange(256, dtype=np.uint8)
    g8 = float_grid(FP8_LOW_HALVES).view(np.float32)
    save(out, G, "fp8_grid_lows", FP8_LOW_HALVES.astype(np.int32))
    for name, dt in (("e4m3", ml_dtypes.float8_e4m3fn), ("e5m2", ml_dtypes.float8_e5m2)):
        save(out, G, f"{name}_all_to_f32_bits", codes.view(dt).astype(np.float32).view(np.int32))
        with np.errstate(over="ignore", invalid="ignore"):
            save(out, G, f"f32_grid_to_{name}", g8.astype(dt).view(np.uint8))
            mx = float(ml_dtypes.finfo(dt).max)
            sat = np.where(np.isnan(g8), g8, np.clip(g8, -mx, mx)).astype(np.float32)
            save(out, G, f"f32_grid_to_{name}_sat", sat.astype(dt).view(np.uint8))

    # float64 -> bf16 / fp16. Inputs: random magnitudes over the whole range, ties of the
    # narrow format nudged by far less than a float32 ulp (where a float32 detour double-rounds),
    # denormals, overflow boundaries, specials.
    r = rng(11)
    xs = [r.standard_normal(4000) * np.exp2(r.integers(-30, 30, 4000)),
          r.uniform(-1, 1, 500) * 2.0 ** -130, r.uniform(-1, 1, 500) * 2.0 ** -20]
    for prec in (8, 11):  # bf16 / fp16 significand bits
        m = r.integers(2 ** (prec - 1), 2 ** prec, 2000).astype(np.float64)
        e = r.integers(-12, 12, 2000).astype(np.float64)
        tie = (m + 0.5) * np.exp2(e - prec + 1)
        for nudge in (0.0, 2.0 ** -40, -(2.0 ** -40), 2.0 ** -30, -(2.0 ** -30)):
            xs.append(tie * (1 + nudge) * np.where(r.random(2000) < 0.5, -1, 1))
    bf16_max, fp16_max = 3.3895313892515355e38, 65504.0
    xs.append(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0,
                        bf16_max, bf16_max * (1 + 2.0 ** -9), bf16_max * (1 + 2.0 ** -9) * (1 - 2.0 ** -40),
                        bf16_max * (1 + 2.0 ** -9) * (1 + 2.0 ** -40), 1e39, 3.5e38, -3.5e38,
                        fp16_max, 65519.99999, 65520.0, 65520.00001, 70000.0, -65520.0,
                        2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * (1 + 2.0 ** -40), 2.0 ** -26, 3 * 2.0 ** -26,
                        2.0 ** -133, 2.0 ** -134, 2.0 ** -134 * (1 + 2.0 ** -40), 2.0 ** -149,
                        2.0 ** -150, 1e-300, -1e-300, 1e300, 5e-324]))
    x64 = np.concatenate(xs)
    save(out, G, "f64_inputs", x64)
    exact_bf16 = exact_round(x64, "bf16", 0x7F7F, 2.0 ** 128)
    exact_fp16 = exact_round(x64, "fp16", 0x7BFF, 65536.0)
    nan = np.isnan(x64)
    exact_bf16[nan], exact_fp16[nan] = 0x7FC0, 0x7E00
    # NumPy's float64 -> float16 is correctly rounded: it must agree with the table.
    with np.errstate(over="ignore"):
        np_fp16 = x64.astype(np.float16).view(np.uint16)
    assert np.array_equal(np_fp16[~nan], exact_fp16[~nan].astype(np.uint16))
    # PyTorch (and ml_dtypes) convert double -> float -> bf16/fp16, rounding twice. Every
    # disagreement with the exact result must be exactly that double rounding.
    t64 = torch.from_numpy(x64)
    for exact, dt in ((exact_bf16, torch.bfloat16), (exact_fp16, torch.float16)):
        tr = t64.to(dt).view(torch.int16).numpy().view(np.uint16)
        via_f32 = t64.float().to(dt).view(torch.int16).numpy().view(np.uint16)
        diff = (tr != exact.astype(np.uint16)) & ~nan
        assert np.array_equal(tr, via_f32)
        assert diff.sum() > 0  # the test set does contain double-rounding cases
    save(out, G, "f64_to_bf16_exact", exact_bf16.astype(np.uint16))
    save(out, G, "f64_to_fp16_exact", exact_fp16.astype(np.uint16))
    # float64 -> fp8 (non-saturating), exact.
    finite = np.isfinite(x64)
    for name, dt, mc, ov in (("e4m3", ml_dtypes.float8_e4m3fn, 0x7E, 480.0),
                             ("e5m2", ml_dtypes.float8_e5m2, 0x7B, 65536.0)):
        # The set brought into fp8's range, plus fp8 ties nudged far below a float32 ulp.
        prec = 4 if name == "e4m3" else 3
        m = r.integers(2 ** (prec - 1), 2 ** prec, 300).astype(np.float64)
        tie = (m + 0.5) * np.exp2(r.integers(-8, 8, 300) - prec + 1)
        sub = np.concatenate([np.where(finite, x64 * 2.0 ** -8, x64)] +
                             [tie * (1 + nd) for nd in (0.0, 2.0 ** -40, -(2.0 ** -40))])
        code = exact_round(sub, dt, mc, ov)
        code[np.isnan(sub)] = 0x7F if name == "e4m3" else 0x7E
        if name == "e4m3":
            code[np.isinf(sub)] = 0x7F | (np.signbit(sub[np.isinf(sub)]).astype(np.uint32) << 7)
        save(out, G, f"f64_fp8_inputs_{name}", sub)
        save(out, G, f"f64_to_{name}_exact", code.astype(np.uint8))


def gen_reductions(out):
    r = rng(21)
    x = r.standard_normal((3, 5, 7, 4))
    save(out, G, "red_x", x)
    t = torch.from_numpy(x)
    cases = {"d1": [1], "d13": [1, 3], "d0": [0], "d23": [2, 3], "d02": [0, 2], "dm1": [-1],
             "dall": [0, 1, 2, 3]}
    for name, dims in cases.items():
        for keep in (0, 1):
            save(out, G, f"red_sum_{name}_k{keep}", t.sum(dim=dims, keepdim=bool(keep)))
            save(out, G, f"red_mean_{name}_k{keep}", t.mean(dim=dims, keepdim=bool(keep)))
    # float32 and bf16 (as bits) inputs: the same values rounded.
    t32 = t.float()
    save(out, G, "red_sum_d13_f32", t32.sum(dim=[1, 3]))
    tb = t.to(torch.bfloat16)
    save(out, G, "red_xb_bits", tb.view(torch.int16).numpy().view(np.uint16))
    # torch 1.13's own bf16 sum over a non-innermost dim set accumulates in bf16 (0.05 off here);
    # the reference is the float32 sum of the bf16 values, rounded once, as our kernels compute.
    save(out, G, "red_sum_d13_bf16",
         tb.float().sum(dim=[1, 3]).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))
    save(out, G, "red_mean_d2_bf16",
         tb.float().mean(dim=[2]).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))
    for d in (0, 1, 2, 3):
        v, i = t.max(dim=d)
        save(out, G, f"red_max_d{d}_values", v)
        save(out, G, f"red_max_d{d}_indices", i)
    # Long reduction: precision of the float32 accumulation.
    long = r.standard_normal((2, 60001)).astype(np.float32) + 1.0
    save(out, G, "red_long", long)
    save(out, G, "red_long_sum", long.astype(np.float64).sum(axis=1))
    tall = r.standard_normal((5003, 7)).astype(np.float32) + 1.0
    save(out, G, "red_tall", tall)
    save(out, G, "red_tall_sum0", tall.astype(np.float64).sum(axis=0))
    # Squared L2 norm over several tensors (fp32, bf16 bits, fp64).
    a = r.standard_normal((17, 33)).astype(np.float32)
    b = torch.from_numpy(r.standard_normal(1001)).to(torch.bfloat16)
    c = r.standard_normal((5, 3, 2))
    save(out, G, "l2_a", a)
    save(out, G, "l2_b_bits", b.view(torch.int16).numpy().view(np.uint16))
    save(out, G, "l2_c", c)
    total = (a.astype(np.float64) ** 2).sum() + (b.double() ** 2).sum().item() + (c ** 2).sum()
    save(out, G, "l2_total", np.array([total]))


def gen_adam(out):
    r = rng(31)
    shape = (7, 13)
    steps = 100
    p0 = r.standard_normal(shape).astype(np.float32)
    grads = (r.standard_normal((steps,) + shape) * np.exp2(r.integers(-4, 3, (steps, 1, 1)))).astype(np.float32)
    hp = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    save(out, G, "adam_p0", p0)
    save(out, G, "adam_grads", grads)
    for dtype, tag in ((torch.float32, "f32"), (torch.float64, "f64")):
        p = torch.nn.Parameter(torch.from_numpy(p0).to(dtype).clone())  # no aliasing of p0
        opt = torch.optim.AdamW([p], foreach=False, **hp)
        traj = []
        for s in range(steps):
            p.grad = torch.from_numpy(grads[s]).to(dtype)
            opt.step()
            traj.append(p.detach().clone())
        save(out, G, f"adam_traj_{tag}", torch.stack(traj))
        st = opt.state[p]
        save(out, G, f"adam_exp_avg_{tag}", st["exp_avg"])
        save(out, G, f"adam_exp_avg_sq_{tag}", st["exp_avg_sq"])


def gen_fp8(out):
    r = rng(41)
    x = (r.standard_normal((9, 31)) * np.exp2(r.integers(-6, 6, (9, 31)))).astype(np.float32)
    x[0, :6] = [np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0]
    save(out, G, "fp8_x", x)
    for name, dt in (("e4m3", ml_dtypes.float8_e4m3fn), ("e5m2", ml_dtypes.float8_e5m2)):
        mx = float(ml_dtypes.finfo(dt).max)
        scale = np.float32(mx / 40.0)  # a few values overflow and must saturate
        y = x * scale
        q = np.where(np.isnan(y), y, np.clip(y, -mx, mx)).astype(dt)
        save(out, G, f"fp8_scale_{name}", np.array([scale], dtype=np.float32))
        save(out, G, f"fp8_q_{name}", q.view(np.uint8))
        scale_inv = np.float32(1.0) / scale
        deq = q.astype(np.float32) * scale_inv
        save(out, G, f"fp8_deq_{name}_f32", deq)
        save(out, G, f"fp8_deq_{name}_bf16",
             torch.from_numpy(deq).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))
    save(out, G, "fp8_amax_rest", np.array([np.abs(x[1:]).max()], dtype=np.float32))  # rows 1..8


# Conversions to and from the integer types and bool, by PyTorch (numpy for uint16, which torch
# 1.13 lacks). Float sources hold only values inside the target's range (outside it C++ and
# PyTorch are undefined); integer narrowing wraps modulo 2^bits in both. bf16/fp16 travel as
# uint16 bits. Each case saves conv_<name>_in and conv_<name>_out (or _in_bits / _out_bits).
TORCH = {"f64": torch.float64, "f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16,
         "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8,
         "u8": torch.uint8, "bool": torch.bool}
SIGNED_SMALL = [-127.9, -100.5, -2.5, -1.5, -0.7, -0.0, 0.0, 0.3, 0.5, 0.99, 1.0, 1.5, 2.5, 100.7,
                126.99]
UNSIGNED_SMALL = [0.0, 0.4, 1.7, 127.5, 128.5, 254.9, 255.0]
BIG = [-2147483520.0, -1.5e9, -65536.75, 32767.5, 1e9 + 64, 2147483520.0]
HUGE = [-9.2e18, -4.5e15 - 0.5, 1e15 + 0.5, 9.2e18]
INTS = [-(2**40) - 3, -32769, -129, -128, -1, 0, 1, 127, 128, 200, 255, 256, 32767, 32768, 65535,
        65536, 2**31 - 1, 2**31, 2**53 + 1, 2**62 + 3]
# Zeros of both signs, float32 denormals (nonzero: true), NaN (true), infinities.
TO_BOOL = [0.0, -0.0, 1e-45, -1e-40, float("nan"), float("inf"), float("-inf"), 0.5, -3.0]


def int_conversion_cases():
    cases = []  # (name, source values, source dtype, target dtype)
    for dst in ("i8", "i16", "i32", "i64"):
        for src in ("f32", "f64", "bf16", "f16"):
            cases.append((f"{src}_{dst}", SIGNED_SMALL, src, dst))
    for src in ("f32", "f64", "bf16", "f16"):
        cases.append((f"{src}_u8", UNSIGNED_SMALL, src, "u8"))
    for dst in ("i32", "i64"):
        cases.append((f"f64big_{dst}", BIG, "f64", dst))
    cases.append(("f32big_i64", BIG, "f32", "i64"))
    cases.append(("f64huge_i64", HUGE, "f64", "i64"))
    for dst in ("i8", "u8", "i16", "i32", "f32", "f64", "bf16", "f16", "bool"):
        cases.append((f"i64_{dst}", INTS, "i64", dst))
    for dst in ("i8", "u8", "i16", "i64", "f32"):
        cases.append((f"i32_{dst}", [v for v in INTS if -2**31 <= v < 2**31], "i32", dst))
    for dst in ("i8", "i32", "f32", "bf16"):
        cases.append((f"u8_{dst}", [0, 1, 127, 128, 200, 255], "u8", dst))
    for dst in ("f32", "i64", "bf16", "u8"):
        cases.append((f"bool_{dst}", [False, True, True, False], "bool", dst))
    for src in ("f32", "f64", "bf16", "f16"):
        cases.append((f"{src}_bool", TO_BOOL, src, "bool"))
    cases.append(("f64denormal_bool", [5e-324, -5e-324, 0.0], "f64", "bool"))
    return cases


def save_tensor(out, name, t):
    if t.dtype in (torch.bfloat16, torch.float16):
        save(out, G, name + "_bits", t.view(torch.int16).numpy().view(np.uint16))
    else:
        save(out, G, name, t.numpy())


def gen_int_conversions(out):
    for name, values, src, dst in int_conversion_cases():
        if src == "f32" and name.endswith("_bool"):
            x = torch.tensor(np.array(values, dtype=np.float32))  # keeps the denormals exact
        else:
            x = torch.tensor(values, dtype=TORCH[src])
        save_tensor(out, f"conv_{name}_in", x)
        save_tensor(out, f"conv_{name}_out", x.to(TORCH[dst]))
    # uint16 (numpy: astype wraps like the torch integer casts above)
    ints = np.array(INTS, dtype=np.int64)
    save(out, G, "conv_i64_u16_in", ints)
    save(out, G, "conv_i64_u16_out", ints.astype(np.uint16))
    u16 = np.array([0, 1, 255, 256, 32767, 32768, 65535], dtype=np.uint16)
    save(out, G, "conv_u16_i32_in", u16)
    save(out, G, "conv_u16_i32_out", u16.astype(np.int32))
    save(out, G, "conv_u16_f32_in", u16)
    save(out, G, "conv_u16_f32_out", u16.astype(np.float32))
    save(out, G, "conv_f32_u16_in", np.array(UNSIGNED_SMALL + [65535.9], dtype=np.float32))
    save(out, G, "conv_f32_u16_out",
         np.array(UNSIGNED_SMALL + [65535.9], dtype=np.float32).astype(np.uint16))
    # The list of cases, for the C++ test to walk: "name src dst" lines.
    lines = [f"{n} {s} {d}" for n, _, s, d in int_conversion_cases()]
    lines += ["i64_u16 i64 u16", "u16_i32 u16 i32", "u16_f32 u16 f32", "f32_u16 f32 u16"]
    (out / G).mkdir(parents=True, exist_ok=True)
    (out / G / "conv_cases.txt").write_text("\n".join(lines) + "\n")


def generate(out: pathlib.Path):
    gen_conversions(out)
    gen_int_conversions(out)
    gen_reductions(out)
    gen_adam(out)
    gen_fp8(out)


if __name__ == "__main__":
    import sys
    generate(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/reference"))
