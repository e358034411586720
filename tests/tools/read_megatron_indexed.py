"""Opens an indexed dataset with megatron-core's own IndexedDataset and dumps what it reads:
    read_megatron_indexed.py PREFIX OUT_DIR
writes OUT_DIR/{tokens,lengths,document_indices}.npy and OUT_DIR/dtype.txt. Exits 77 when
megatron-core cannot be imported (the C++ test then skips).
"""
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "reference"))


def main():
    prefix, out = sys.argv[1], pathlib.Path(sys.argv[2])
    try:
        from megatron_core_import import import_megatron_datasets
        IndexedDataset = import_megatron_datasets().IndexedDataset
    except Exception as e:  # not installed, or incompatible with this torch
        print(f"megatron-core unavailable: {e}", file=sys.stderr)
        sys.exit(77)
    ds = IndexedDataset(prefix, mmap=True)
    seqs = [np.asarray(ds[i]) for i in range(len(ds))]
    out.mkdir(parents=True, exist_ok=True)
    tokens = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
    np.save(out / "tokens.npy", tokens)
    np.save(out / "lengths.npy", np.asarray(ds.sequence_lengths, dtype=np.int64))
    np.save(out / "document_indices.npy", np.asarray(ds.document_indices, dtype=np.int64))
    (out / "dtype.txt").write_text(np.dtype(ds.index.dtype).name)
    # Reading through the plain-file path too must agree.
    ds2 = IndexedDataset(prefix, mmap=False)
    assert all(np.array_equal(ds2[i], seqs[i]) for i in range(len(ds2)))
    print(f"megatron-core read {len(ds)} sequences, {len(ds.document_indices) - 1} documents")


if __name__ == "__main__":
    main()
