"""Indexed datasets written by megatron-core's own IndexedDatasetBuilder, one per dtype (plus a
multimodal one and an add_index merge), with the values as .npy: tests/datasets/
indexed_dataset_test.cpp reads them with mcore and writes them again, byte for byte."""
import pathlib
import shutil

import numpy as np
import torch

from megatron_core_import import import_megatron_datasets
from refutil import save

G = "indexed_dataset"
DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.float64, np.float32, np.uint16]


def generate(out: pathlib.Path):
    mc = import_megatron_datasets()
    root = (out / G).resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for dt in DTYPES:
        name = np.dtype(dt).name
        b = mc.IndexedDatasetBuilder(str(root / f"{name}.bin"), dtype=dt)
        values, lengths, docs = [], [], [0]
        for _ in range(7):
            for _ in range(int(rng.integers(1, 4))):
                n = int(rng.integers(0, 9))  # empty sequences too
                v = rng.integers(0, 100, size=n).astype(dt)
                b.add_item(torch.from_numpy(v.astype(np.float64 if v.dtype.kind == "f" else np.int64)))
                values.extend(v.astype(np.float64).tolist())
                lengths.append(n)
            b.end_document()
            docs.append(len(lengths))
        b.finalize(str(root / f"{name}.idx"))
        save(out, G, f"{name}_values", np.array(values, dtype=np.float64))
        save(out, G, f"{name}_lengths", np.array(lengths, dtype=np.int64))
        save(out, G, f"{name}_docs", np.array(docs, dtype=np.int64))
    # Multimodal: sequence modes after the document indices.
    b = mc.IndexedDatasetBuilder(str(root / "multimodal.bin"), dtype=np.int32, multimodal=True)
    for i in range(5):
        b.add_item(torch.arange(i + 1, dtype=torch.int64), mode=i % 3)
        if i % 2:
            b.end_document()
    b.end_document()
    b.finalize(str(root / "multimodal.idx"))
    # add_index: int32 + int32 merged.
    b = mc.IndexedDatasetBuilder(str(root / "merged.bin"), dtype=np.int32)
    b.add_index(str(root / "int32"))
    b.add_item(torch.tensor([7, 8, 9]))
    b.end_document()
    b.add_index(str(root / "int32"))
    b.finalize(str(root / "merged.idx"))
