#!/usr/bin/env python3
"""Runs every tests/reference/gen_*.py, each writing .npy files under OUT/<group>/.

A generator that raises fails this fixture, and CTest then reports the tests that need its data
as not run. Each generator is skipped when its outputs are newer than the script itself.
"""
import importlib.util
import os
import pathlib
import sys
import time

def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    here = pathlib.Path(__file__).resolve().parent
    failed = []
    for script in sorted(here.glob("gen_*.py")):
        stamp = out / f".{script.stem}.done"
        if stamp.exists() and stamp.stat().st_mtime >= script.stat().st_mtime:
            print(f"{script.name}: up to date")
            continue
        t0 = time.time()
        spec = importlib.util.spec_from_file_location(script.stem, script)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
            mod.generate(out)
        except Exception as e:  # report every failing generator, then fail
            import traceback
            traceback.print_exc()
            failed.append(script.name)
            continue
        stamp.touch()
        print(f"{script.name}: ok ({time.time() - t0:.1f}s)")
    if failed:
        print("reference generators failed: " + ", ".join(failed))
        sys.exit(1)

if __name__ == "__main__":
    main()
