#!/usr/bin/env python3
"""Writes tests/reference/data/rank_groups.json: the process groups megatron-core's own
initialize_model_parallel creates for a set of parallel layouts, and the errors it raises for
impossible ones. tests/parallel_state/rank_generator_test.cpp compares mcore's layout with it.

Why a committed file rather than a gen_*.py run by run_all.py: megatron-core 0.16 requires
torch >= 2.6 and its package __init__ does not import under Debian's torch 1.13, and putting it
in requirements.txt would pull a PyPI torch into the reference venv. The rank logic itself
(megatron/core/parallel_state.py) only needs torch.distributed's API, so this script loads that
one file from the installed wheel, unmodified, with torch.distributed replaced by a recorder:
every create_group() call megatron makes is recorded with its group_desc and rank list.

Regenerate (any machine, no GPU, a few seconds):
    /usr/bin/python3 -m venv --system-site-packages /tmp/mcvenv
    /tmp/mcvenv/bin/pip install --no-deps megatron-core==0.16.1 einops==0.8.2
    /tmp/mcvenv/bin/python tests/reference/make_rank_groups.py
"""
import importlib.metadata
import importlib.util
import json
import pathlib
import re
import sys
import types

import torch
import torch.distributed as dist

MEGATRON_CORE_VERSION = "0.16.1"

# (world, tp, pp, cp, ep, expert_tp or None, order, num_distributed_optimizer_instances)
CASES = [
    (1, 1, 1, 1, 1, None, "tp-cp-ep-dp-pp", 1),
    (4, 2, 1, 1, 1, None, "tp-cp-ep-dp-pp", 1),
    (4, 1, 2, 1, 1, None, "tp-cp-ep-dp-pp", 1),
    (4, 2, 2, 1, 1, None, "tp-cp-ep-dp-pp", 1),
    (8, 2, 2, 1, 1, None, "tp-cp-ep-dp-pp", 1),
    (8, 1, 2, 2, 1, None, "tp-cp-ep-dp-pp", 1),
    (8, 2, 1, 1, 4, 1, "tp-cp-ep-dp-pp", 1),
    (8, 2, 1, 2, 2, None, "tp-cp-ep-dp-pp", 1),
    (8, 1, 1, 1, 8, None, "tp-cp-ep-dp-pp", 1),
    (8, 2, 4, 1, 1, None, "tp-cp-ep-dp-pp", 1),
    (12, 2, 3, 1, 1, None, "tp-cp-ep-dp-pp", 1),
    (12, 1, 3, 2, 2, None, "tp-cp-ep-dp-pp", 1),
    (16, 2, 2, 2, 2, 1, "tp-cp-ep-dp-pp", 1),
    (16, 4, 2, 1, 2, 2, "tp-cp-ep-dp-pp", 1),
    (16, 2, 4, 1, 1, None, "tp-pp-dp", 1),
    (16, 2, 2, 2, 1, None, "tp-cp-dp-pp", 1),
    (16, 2, 2, 2, 2, 2, "tp-cp-ep-pp-dp", 1),
    (16, 2, 1, 1, 4, 1, "tp-cp-ep-dp-pp", 2),
    (24, 2, 3, 2, 2, 1, "tp-cp-ep-dp-pp", 1),
    (32, 2, 2, 2, 4, 2, "tp-cp-ep-dp-pp", 1),
    (32, 2, 2, 2, 4, 1, "tp-cp-ep-dp-pp", 2),
    (32, 4, 2, 1, 4, 1, "tp-cp-ep-dp-pp", 1),
    (64, 2, 4, 2, 8, 1, "tp-cp-ep-dp-pp", 1),
]

# Layouts megatron rejects; the C++ test checks our message carries the same numbers.
ERROR_CASES = [
    (8, 3, 1, 1, 1, None, "tp-cp-ep-dp-pp", 1),   # world not divisible by tp*pp*cp
    (12, 2, 2, 2, 1, None, "tp-cp-ep-dp-pp", 1),  # 12 % 8
    (8, 2, 1, 1, 3, None, "tp-cp-ep-dp-pp", 1),   # world not divisible by etp*ep*pp
    (8, 1, 2, 1, 8, 1, "tp-cp-ep-dp-pp", 1),      # 8 % 16
    (8, 2, 1, 1, 1, None, "tp-cp-ep-dp-pp", 3),   # dp*cp not divisible by dist-opt instances
    (8, 2, 2, 1, 1, None, "tp-cp-ep-dp", 1),      # pp > 1 but missing from the order
    (16, 2, 2, 1, 2, 2, "tp-pp-ep-dp", 1),        # pp not last: expert dp 2 != dp 4
    (16, 2, 2, 1, 2, 1, "tp-pp-ep-dp", 1),        # pp not last: expert pp groups differ
    (16, 2, 1, 2, 8, 1, "tp-cp-ep-dp-pp", 4),     # expert dp 2 not divisible by 4 instances
]


def load_parallel_state():
    """Imports megatron/core/parallel_state.py alone, bypassing megatron.core's __init__."""
    dist_info = importlib.metadata.distribution("megatron-core")
    assert dist_info.version == MEGATRON_CORE_VERSION, (
        f"expected megatron-core {MEGATRON_CORE_VERSION}, found {dist_info.version}")
    path = pathlib.Path(dist_info.locate_file("megatron/core/parallel_state.py"))
    # The only sibling import: .utils (memory buffers and a torch version test).
    megatron = types.ModuleType("megatron")
    megatron.__path__ = []
    core = types.ModuleType("megatron.core")
    core.__path__ = []
    utils = types.ModuleType("megatron.core.utils")

    class _Buffer:
        pass

    utils.GlobalMemoryBuffer = _Buffer
    utils.GlobalSymmetricMemoryBuffer = _Buffer
    utils.is_torch_min_version = lambda version, check_equality=True: False
    sys.modules.update({"megatron": megatron, "megatron.core": core, "megatron.core.utils": utils})
    spec = importlib.util.spec_from_file_location("megatron.core.parallel_state", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """Stands in for torch.distributed: a world of `world` ranks seen from rank 0."""

    def __init__(self, world):
        self.world = world
        self.groups = {}  # group_desc -> list of rank lists, in creation order

    def new_group(self, ranks=None, timeout=None, backend=None, pg_options=None,
                  use_local_synchronization=False, group_desc=None):
        assert backend != "gloo", "gloo groups are not requested"
        self.groups.setdefault(group_desc, []).append([int(r) for r in ranks])
        return object()

    def install(self):
        dist.is_initialized = lambda: True
        dist.is_available = lambda: True
        dist.get_world_size = lambda group=None: self.world
        dist.get_rank = lambda group=None: 0
        dist.new_group = self.new_group
        dist.barrier = lambda *a, **k: None


def run_case(case, record_desc):
    world, tp, pp, cp, ep, etp, order, ndo = case
    ps = load_parallel_state()
    rec = Recorder(world)
    rec.install()
    # create_group drops group_desc on torch < 2.4; keep it so groups can be told apart.
    ps.is_torch_min_version = lambda version, check_equality=True: True
    ps.initialize_model_parallel(
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        context_parallel_size=cp,
        expert_model_parallel_size=ep,
        expert_tensor_parallel_size=etp,
        num_distributed_optimizer_instances=ndo,
        order=order,
        create_gloo_process_groups=False,
    )
    return rec.groups if record_desc else None


def case_key(case):
    world, tp, pp, cp, ep, etp, order, ndo = case
    return {"world": world, "tp": tp, "pp": pp, "cp": cp, "ep": ep,
            "expert_tp": etp if etp is not None else 0, "order": order,
            "num_distributed_optimizer_instances": ndo}


def main():
    out = pathlib.Path(__file__).resolve().parent / "data" / "rank_groups.json"
    cases = []
    for case in CASES:
        entry = case_key(case)
        entry["groups"] = run_case(case, True)
        cases.append(entry)
    errors = []
    for case in ERROR_CASES:
        entry = case_key(case)
        try:
            run_case(case, False)
        except (RuntimeError, AssertionError) as e:
            entry["message"] = str(e)
        else:
            raise SystemExit(f"megatron accepted {case}, expected an error")
        errors.append(entry)
    doc = {
        "about": "Process groups created by megatron-core's initialize_model_parallel, keyed by "
                 "group_desc; made by tests/reference/make_rank_groups.py (see its docstring). "
                 "expert_tp 0 means None (defaults to tp). Do not edit by hand.",
        "megatron_core_version": MEGATRON_CORE_VERSION,
        "torch_version": torch.__version__,
        "cases": cases,
        "errors": errors,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    # One rank list per line keeps the file small and diffable.
    text = re.sub(r"\[\s*(\d+(?:,\s*\d+)*)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]",
                  json.dumps(doc, indent=1))
    out.write_text(text + "\n")
    print(f"wrote {out} ({len(cases)} layouts, {len(errors)} error cases)")


if __name__ == "__main__":
    main()
