"""Reference streams of numpy's legacy RandomState (MT19937) and of default_rng (PCG64), which
mcore/datasets/numpy_random.* must reproduce exactly: Megatron shuffles its dataset indices with
RandomState(seed).shuffle and draws the mock dataset's document lengths with default_rng(0)."""
import pathlib

import numpy as np

from refutil import save

G = "numpy_random"
SEEDS = [0, 1, 42, 1234, 2**31 - 1, 2**32 - 1, 123456789]
SIZES = [1, 2, 3, 10, 100, 1000, 4097, 70000]


def generate(out: pathlib.Path):
    save(out, G, "seeds", np.array(SEEDS, dtype=np.int64))
    save(out, G, "sizes", np.array(SIZES, dtype=np.int64))
    for s in SEEDS:
        rs = np.random.RandomState(s)
        # Successive shuffles share one state, as Megatron's document/shuffle indices do.
        for n in SIZES:
            a = np.arange(n, dtype=np.int32)
            rs.shuffle(a)
            b = np.arange(n, dtype=np.uint32)
            rs.shuffle(b)
            if n <= 4097 or s in (0, 1234):  # (keep the data small; 70000 > 2^16 tests masks)
                save(out, G, f"shuffle_i32_s{s}_n{n}", a)
                save(out, G, f"shuffle_u32_s{s}_n{n}", b.astype(np.int64))
        save(out, G, f"random_sample_s{s}", rs.random_sample(50))
        ints = [rs.randint(0, hi) for hi in (2, 7, 1000, 2**31, 2**33 + 5, 2**62)]
        ints += [rs.randint(-5, 5) for _ in range(20)]
        save(out, G, f"randint_s{s}", np.array(ints, dtype=np.int64))
    # init_by_array seeding (RandomState of an array).
    rs = np.random.RandomState(np.array([1, 2, 3], dtype=np.uint32))
    save(out, G, "by_array_123_sample", rs.random_sample(20))
    # default_rng(seed).integers(1, 4096, dtype=int32): the mock dataset's lengths use seed 0.
    for s in (0, 5, 2**40 + 3):
        save(out, G, f"pcg_integers_s{s}", np.random.default_rng(seed=s).integers(
            low=1, high=4096, size=1000, dtype=np.int32))
    save(out, G, "pcg_integers_s0_mock", np.random.default_rng(seed=0).integers(
        low=1, high=4096, size=100000, dtype=np.int32))
