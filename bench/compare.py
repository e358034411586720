#!/usr/bin/env python3
"""Runs an mcore Google Benchmark binary and a PyTorch script with the same benchmark names,
and prints both times and the ratio (PyTorch time / mcore time: > 1 means mcore is faster).

usage: compare.py MCORE_BENCH_BINARY TORCH_SCRIPT [extra benchmark args]
"""
import json
import subprocess
import sys


def main():
    binary, script = sys.argv[1], sys.argv[2]
    ours = json.loads(subprocess.run([binary, "--benchmark_format=json"] + sys.argv[3:],
                                     check=True, capture_output=True, text=True).stdout)
    theirs = json.loads(subprocess.run([sys.executable, script], check=True,
                                       capture_output=True, text=True).stdout)
    print(f"{'op':<22}{'mcore ms':>10}{'torch ms':>10}{'ratio':>8}  throughput (mcore)")
    for b in ours["benchmarks"]:
        name = b["name"].split("/")[0]
        ms = b["real_time"] if b["time_unit"] == "ms" else b["real_time"] / 1e6
        rate = ""
        for key in ("GB/s", "GFLOP/s"):
            if key in b:
                rate = f"{b[key]:.1f} {key}"
        t = theirs.get(name)
        if t is None:
            print(f"{name:<22}{ms:>10.2f}{'-':>10}{'-':>8}  {rate}")
        else:
            print(f"{name:<22}{ms:>10.2f}{t * 1e3:>10.2f}{t * 1e3 / ms:>7.2f}x  {rate}")


if __name__ == "__main__":
    main()
