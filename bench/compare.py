#!/usr/bin/env python3
"""Runs an mcore Google Benchmark binary and a PyTorch script with the same benchmark names,
and prints both times and the ratio (PyTorch time / mcore time: > 1 means mcore is faster).

usage: compare.py [--rounds N] MCORE_BENCH_BINARY TORCH_SCRIPT [extra benchmark args]

With --rounds N the two sides run alternately N times each, and the table shows the median of
each side's times with their range: the shared 2-core VM drifts by several percent between runs,
and a single pair of runs can land on either side of a target. Where the binary reports the
machine's measured fp32 peak (peak_GFLOP/s), the last column gives the median GFLOP/s as a
fraction of the median peak.
"""
import json
import statistics
import subprocess
import sys


def run_ours(binary, extra):
    out = subprocess.run([binary, "--benchmark_format=json"] + extra, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["benchmarks"]


def run_theirs(script):
    out = subprocess.run([sys.executable, script], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def spread(values, scale=1.0):
    med = statistics.median(values) * scale
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(values) * scale:.2f}-{max(values) * scale:.2f})"


def main():
    args = sys.argv[1:]
    rounds = 1
    if args and args[0] == "--rounds":
        rounds = int(args[1])
        args = args[2:]
    if len(args) < 2 or rounds < 1:
        sys.exit(__doc__)
    binary, script, extra = args[0], args[1], args[2:]
    ours, theirs, order = {}, {}, []
    for _ in range(rounds):
        for b in run_ours(binary, extra):
            name = b["name"].split("/")[0]
            if name not in ours:
                order.append(name)
                ours[name] = {"ms": [], "rate": {}, "peak": []}
            entry = ours[name]
            entry["ms"].append(b["real_time"] if b["time_unit"] == "ms" else b["real_time"] / 1e6)
            for key in ("GB/s", "GFLOP/s"):
                if key in b:
                    entry["rate"].setdefault(key, []).append(b[key])
            if "peak_GFLOP/s" in b:
                entry["peak"].append(b["peak_GFLOP/s"])
        for name, seconds in run_theirs(script).items():
            theirs.setdefault(name, []).append(seconds * 1e3)
    wide = rounds > 1
    rows = []
    for name in order:
        e = ours[name]
        ms = statistics.median(e["ms"])
        rate = ""
        for key, vals in e["rate"].items():
            rate = f"{statistics.median(vals):.1f} {key}"
            if key == "GFLOP/s" and e["peak"]:
                rate += f" ({statistics.median(vals) / statistics.median(e['peak']):.1%} of peak)"
        t = theirs.get(name)
        ratio = f"{statistics.median(t) / ms:.2f}x" if t else "-"
        rows.append((name, spread(e["ms"]), spread(t) if t else "-", ratio, rate))
    w = max([10] + [len(r[1]) + 2 for r in rows] + [len(r[2]) + 2 for r in rows])
    print(f"{'op':<22}{'mcore ms':>{w}}{'torch ms':>{w}}{'ratio':>8}  throughput (mcore)"
          + (f"  [median of {rounds} rounds, range]" if wide else ""))
    for name, ours_ms, torch_ms, ratio, rate in rows:
        print(f"{name:<22}{ours_ms:>{w}}{torch_ms:>{w}}{ratio:>8}  {rate}")


if __name__ == "__main__":
    main()
