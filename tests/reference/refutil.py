"""Helpers for reference generators: deterministic inputs and .npy output."""
import pathlib

import numpy as np


def save(out: pathlib.Path, group: str, name: str, array) -> None:
    d = out / group
    d.mkdir(parents=True, exist_ok=True)
    try:
        import torch
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
    except ImportError:
        pass
    np.save(d / f"{name}.npy", np.ascontiguousarray(array))


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
