"""Reference values for mcore/optimizer: learning-rate / weight-decay schedules and the dynamic
loss scaler from megatron-core's own modules (optimizer_param_scheduler.py, grad_scaler.py;
megatron-core 0.16.1 installed with --no-deps), and optimizer trajectories from PyTorch
(torch.optim.AdamW / Adam / SGD driven by megatron's scheduler, with
torch.nn.utils.clip_grad_norm_).

The megatron modules are imported without running megatron/core/__init__.py (it needs a newer
torch than Debian's 1.13; see megatron_core_import.py). grad_scaler.py allocates its scale on
'cuda': it is given a torch whose `tensor` ignores the device, nothing else changes.
"""
import importlib.util
import json
import math
import pathlib
import sys
import types

import numpy as np
import torch

from refutil import save, rng

G = "optimizer"

# Enum orders of mcore/optimizer/optimizer_param_scheduler.h.
LR_STYLES = ["constant", "linear", "cosine", "inverse-square-root", "WSD"]
WSD_STYLES = ["linear", "cosine", "exponential", "minus_sqrt"]
WD_STYLES = ["constant", "linear", "cosine"]


def megatron_root():
    if "megatron" in sys.modules:
        return pathlib.Path(list(sys.modules["megatron"].__path__)[0])
    spec = importlib.util.find_spec("megatron")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("megatron-core is not installed: .venv/bin/pip install "
                          "-r tests/reference/requirements.txt --no-deps")
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def import_megatron_optimizer_modules():
    root = megatron_root()
    for name, path in (("megatron", root), ("megatron.core", root / "core")):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            sys.modules[name] = mod
    import megatron.core.parallel_state  # noqa: F401  (breaks the utils <-> parallel_state cycle)
    from megatron.core import optimizer_param_scheduler
    # megatron/core/optimizer/__init__.py pulls in distributed checkpointing: load the file alone.
    spec = importlib.util.spec_from_file_location(
        "megatron_grad_scaler", root / "core" / "optimizer" / "grad_scaler.py")
    grad_scaler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grad_scaler)

    class CpuTorch:  # torch, with tensors made on the CPU whatever device is asked for
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def tensor(data, dtype=None, device=None):
            return torch.tensor(data, dtype=dtype)

    grad_scaler.torch = CpuTorch()
    return optimizer_param_scheduler, grad_scaler


# name, scheduler kwargs, increment per step, number of steps
SCHEDULES = [
    ("linear", dict(init_lr=0.0, max_lr=1e-3, min_lr=1e-5, lr_warmup_steps=10, lr_decay_steps=100,
                    lr_decay_style="linear", start_wd=0.01, end_wd=0.1, wd_incr_steps=80,
                    wd_incr_style="linear"), 1, 130),
    ("cosine", dict(init_lr=1e-5, max_lr=6e-4, min_lr=6e-5, lr_warmup_steps=7, lr_decay_steps=113,
                    lr_decay_style="cosine", start_wd=0.0, end_wd=0.1, wd_incr_steps=120,
                    wd_incr_style="cosine"), 1, 140),
    ("cosine_samples", dict(init_lr=0.0, max_lr=3e-4, min_lr=3e-5, lr_warmup_steps=320,
                            lr_decay_steps=3200, lr_decay_style="cosine", start_wd=0.1,
                            end_wd=0.1, wd_incr_steps=3200, wd_incr_style="constant"), 32, 120),
    ("constant", dict(init_lr=0.0, max_lr=1e-3, min_lr=0.0, lr_warmup_steps=10,
                      lr_decay_steps=100, lr_decay_style="constant", start_wd=0.05, end_wd=0.05,
                      wd_incr_steps=100, wd_incr_style="constant"), 1, 120),
    ("inverse_sqrt", dict(init_lr=0.0, max_lr=1e-3, min_lr=1e-4, lr_warmup_steps=10,
                          lr_decay_steps=1000, lr_decay_style="inverse-square-root",
                          start_wd=0.0, end_wd=0.1, wd_incr_steps=50, wd_incr_style="linear"),
     7, 160),
    ("inverse_sqrt_nowarmup", dict(init_lr=0.0, max_lr=1e-3, min_lr=0.0, lr_warmup_steps=0,
                                   lr_decay_steps=100, lr_decay_style="inverse-square-root",
                                   start_wd=0.1, end_wd=0.1, wd_incr_steps=1,
                                   wd_incr_style="constant"), 1, 110),
    ("linear_nowarmup", dict(init_lr=0.0, max_lr=2e-3, min_lr=2e-4, lr_warmup_steps=0,
                             lr_decay_steps=97, lr_decay_style="linear", start_wd=0.0,
                             end_wd=0.3, wd_incr_steps=61, wd_incr_style="cosine"), 1, 110),
] + [
    (f"wsd_{s}", dict(init_lr=0.0, max_lr=1e-3, min_lr=1e-5, lr_warmup_steps=5,
                      lr_decay_steps=100, lr_decay_style="WSD", start_wd=0.1, end_wd=0.1,
                      wd_incr_steps=100, wd_incr_style="constant", wsd_decay_steps=30,
                      lr_wsd_decay_style=s), 1, 115)
    for s in WSD_STYLES
]

# Group overrides: the default group, a no-decay group, one with its own max/min lr and wd range.
GROUPS = [dict(wd_mult=1.0), dict(wd_mult=0.0),
          dict(wd_mult=0.5, max_lr=2.5e-3, min_lr=7e-5, start_wd=0.02, end_wd=0.2)]


def gen_schedules(out, sched_mod):
    names = []
    for name, kw, inc, steps in SCHEDULES:
        if kw["wd_incr_style"] == "constant":  # megatron asserts start == end for constant
            groups = [dict(g) for g in GROUPS[:2]] + [
                {k: v for k, v in GROUPS[2].items() if k not in ("start_wd", "end_wd")}]
        else:
            groups = [dict(g) for g in GROUPS]
        opt = types.SimpleNamespace(param_groups=groups)
        s = sched_mod.OptimizerParamScheduler(opt, **kw)
        lr, wd, num = [], [], []

        def record():
            lr.append([g["lr"] for g in groups])
            wd.append([g["weight_decay"] for g in groups])
            num.append(s.num_steps)
        record()
        for _ in range(steps):
            s.step(increment=inc)
            record()
        cfg = [kw["init_lr"], kw["max_lr"], kw["min_lr"], kw["lr_warmup_steps"],
               kw["lr_decay_steps"], LR_STYLES.index(kw["lr_decay_style"]), kw["start_wd"],
               kw["end_wd"], kw["wd_incr_steps"], WD_STYLES.index(kw["wd_incr_style"]),
               kw.get("wsd_decay_steps") or 0,
               WSD_STYLES.index(kw.get("lr_wsd_decay_style") or "exponential"), inc,
               1.0 if "start_wd" in groups[2] else 0.0]
        save(out, G, f"sched_{name}_config", np.array(cfg, dtype=np.float64))
        save(out, G, f"sched_{name}_lr", np.array(lr, dtype=np.float64))
        save(out, G, f"sched_{name}_wd", np.array(wd, dtype=np.float64))
        save(out, G, f"sched_{name}_num_steps", np.array(num, dtype=np.float64))
        names.append(name)
        if name == "cosine":  # megatron's state_dict, compared key by key
            (out / G / "sched_cosine_state_dict.json").write_text(json.dumps(s.state_dict()))
    save(out, G, "sched_group_overrides",
         np.array([[g.get(k, math.nan) for k in ("wd_mult", "max_lr", "min_lr", "start_wd",
                                                  "end_wd")] for g in GROUPS]))
    (out / G / "sched_names.txt").write_text("\n".join(names) + "\n")


def gen_grad_scaler(out, gs_mod):
    r = rng(7)
    # Runs of overflows of varying length between clean runs, so that hysteresis, repeated
    # backoff, the min_scale floor and growth all happen.
    flags = []
    while len(flags) < 300:
        flags += [0] * int(r.integers(0, 12)) + [1] * int(r.integers(1, 5))
    flags = flags[:300]
    for tag, (init, mn, interval, hyst) in {"a": (2.0 ** 10, 4.0, 5, 3),
                                             "b": (2.0 ** 16, 1.0, 3, 1)}.items():
        sc = gs_mod.DynamicGradScaler(initial_scale=init, min_scale=mn, growth_factor=2.0,
                                      backoff_factor=0.5, growth_interval=interval,
                                      hysteresis=hyst)
        rows = []
        for f in flags:
            sc.update(bool(f))
            rows.append([sc.scale.item(), sc._growth_tracker, sc._hysteresis_tracker,
                         sc.inv_scale.item()])
        save(out, G, f"scaler_{tag}_config", np.array([init, mn, interval, hyst], np.float64))
        save(out, G, f"scaler_{tag}_trace", np.array(rows, dtype=np.float64))
    save(out, G, "scaler_flags", np.array(flags, dtype=np.float64))


# Optimizer trajectories. Names and shapes as the C++ test builds them; 1-D params land in the
# no-decay group by Megatron's rule.
PARAMS = [("w1", (7, 13)), ("b1", (13,)), ("w2", (5, 7)), ("norm", (5,))]
OPT_SCHED = dict(init_lr=1e-4, max_lr=1e-2, min_lr=1e-3, lr_warmup_steps=10, lr_decay_steps=80,
                 lr_decay_style="cosine", start_wd=0.0, end_wd=0.1, wd_incr_steps=100,
                 wd_incr_style="linear")
STEPS = 100
MAX_NORM = 1.0


def gen_trajectories(out, sched_mod):
    r = rng(11)
    p0 = {n: r.standard_normal(s).astype(np.float32) for n, s in PARAMS}
    # Per-step magnitudes from 2^-4 to 2^3 so that clipping acts on some steps only.
    mags = np.exp2(r.uniform(-4, 3, STEPS))
    grads = {n: np.stack([(r.standard_normal(s) * m * 0.3) for m in mags]).astype(np.float32)
             for n, s in PARAMS}
    for n, _ in PARAMS:
        save(out, G, f"traj_p0_{n}", p0[n])
        save(out, G, f"traj_grads_{n}", grads[n])
    makers = {
        "adamw": lambda g: torch.optim.AdamW(g, lr=0.0, betas=(0.9, 0.95), eps=1e-8,
                                             foreach=False),
        "adam_l2": lambda g: torch.optim.Adam(g, lr=0.0, betas=(0.9, 0.95), eps=1e-8,
                                              foreach=False),
        "sgd": lambda g: torch.optim.SGD(g, lr=0.0, momentum=0.9, foreach=False),
    }
    for tag, make in makers.items():
        ps = {n: torch.nn.Parameter(torch.from_numpy(p0[n]).clone()) for n, _ in PARAMS}
        decay = [ps[n] for n, s in PARAMS if len(s) > 1]
        no_decay = [ps[n] for n, s in PARAMS if len(s) == 1]
        opt = make([dict(params=decay, wd_mult=1.0), dict(params=no_decay, wd_mult=0.0)])
        sched = sched_mod.OptimizerParamScheduler(opt, **OPT_SCHED)
        traj = {n: [] for n, _ in PARAMS}
        norms, lrs = [], []
        for s in range(STEPS):
            for n, _ in PARAMS:
                ps[n].grad = torch.from_numpy(grads[n][s]).clone()
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(ps.values()), MAX_NORM)))
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step(increment=1)
            for n, _ in PARAMS:
                traj[n].append(ps[n].detach().clone())
        for n, _ in PARAMS:
            save(out, G, f"traj_{tag}_{n}", torch.stack(traj[n]))
        save(out, G, f"traj_{tag}_norms", np.array(norms, dtype=np.float64))
        save(out, G, f"traj_{tag}_lrs", np.array(lrs, dtype=np.float64))


def gen_clip(out):
    r = rng(23)
    shapes = [(17, 9), (31,), (3, 5, 7), (1,)]
    grads = [(r.standard_normal(s) * 2.0).astype(np.float32) for s in shapes]
    for i, g in enumerate(grads):
        save(out, G, f"clip_g{i}", g)
    for tag, norm_type, max_norm in (("l2", 2.0, 1.5), ("inf", math.inf, 0.75),
                                     ("l2_noclip", 2.0, 1e3), ("p3", 3.0, 2.0)):
        ps = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p, g in zip(ps, grads):
            p.grad = torch.from_numpy(g).clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type=norm_type)
        save(out, G, f"clip_{tag}_total", np.array([float(total)], dtype=np.float64))
        for i, p in enumerate(ps):
            save(out, G, f"clip_{tag}_g{i}", p.grad)
        # Exact norm in float64, to check our float64 accumulation tightly.
        g64 = np.concatenate([g.astype(np.float64).ravel() for g in grads])
        exact = np.abs(g64).max() if math.isinf(norm_type) else \
            (np.abs(g64) ** norm_type).sum() ** (1.0 / norm_type)
        save(out, G, f"clip_{tag}_exact", np.array([exact], dtype=np.float64))


def generate(out: pathlib.Path):
    sched_mod, gs_mod = import_megatron_optimizer_modules()
    gen_schedules(out, sched_mod)
    gen_grad_scaler(out, gs_mod)
    gen_trajectories(out, sched_mod)
    gen_clip(out)


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1]))
