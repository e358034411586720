"""Reference samples from megatron-core's own GPTDataset / BlendedDataset /
BlendedMegatronDatasetBuilder (PyPI megatron-core, see megatron_core_import.py), for
tests/datasets/gpt_dataset_test.cpp.

Small indexed datasets are written with megatron-core's IndexedDatasetBuilder; then, for each case
(blends, splits, seeds, sequence lengths, masks/position flags, padding, multi-epoch with and
without a separate final epoch, mock data), the builder runs and every sample of every split is
dumped with the index arrays. manifest.json tells the C++ test how to build the same datasets;
the cache directory megatron-core wrote is kept so the test can check the file names (the MD5 of
the description) and that mcore reuses Megatron's caches.
"""
import json
import pathlib
import shutil
from collections import OrderedDict

import numpy as np
import torch

from megatron_core_import import import_megatron_datasets
from refutil import save

G = "gpt_dataset"
MAX_DUMP = 400


class RefTokenizer:
    """The tokenizer facts megatron-core's datasets read (eod, pad, vocab size, identifiers)."""

    def __init__(self, vocab_size, eod, pad=None):
        self.vocab_size = vocab_size
        self.eod = eod
        self._pad = pad
        self.unique_identifiers = OrderedDict(
            [("class", "mcore.tests.RefTokenizer"), ("tokenizer_path", []),
             ("vocab_size", str(vocab_size))])

    @property
    def pad(self):
        if self._pad is None:
            raise AttributeError("no pad token")
        return self._pad


def write_dataset(mc, prefix, dtype, n_docs, vocab, eod, seed, max_len):
    rng = np.random.default_rng(seed)
    builder = mc.IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for _ in range(n_docs):
        # One or two sequences per document, each ending with EOD like preprocess_data
        # --append-eod; lengths from 1 so single-token documents occur.
        for _ in range(int(rng.integers(1, 3))):
            n = int(rng.integers(1, max_len))
            toks = rng.integers(1, vocab, size=n).astype(np.int64)
            toks[-1] = eod
            builder.add_item(torch.from_numpy(toks))
        builder.end_document()
    builder.finalize(prefix + ".idx")


# name, blend spec, split, seed, seq, sizes, extra config
CASES = [
    dict(name="single_a", data_path=["A"], split="90,8,2", seed=1234, seq=16,
         sizes=[200, 30, 5]),
    # Megatron's default split on a dataset big enough for a non-empty test split (an empty
    # split with a sample request makes megatron-core loop forever; mcore raises instead).
    dict(name="default_split_d_seed7_seq8", data_path=["D"], split="969,30,1", seed=7, seq=8,
         sizes=[100, 10, 0]),
    dict(name="single_b_one_epoch", data_path=["B"], split="80,10,10", seed=3, seq=24,
         sizes=[None, None, None]),
    # Five epochs of C (317 tokens): 130 samples use 4 of the final epoch's 31 samples, under
    # 80% -> that epoch is shuffled separately; 150 use 24 (>= int(0.8 * 31)) -> jointly.
    dict(name="multi_epoch_separate", data_path=["C"], split="100,0,0", seed=11, seq=10,
         sizes=[130, 0, 0]),
    dict(name="multi_epoch_joint", data_path=["C"], split="100,0,0", seed=11, seq=10,
         sizes=[150, 0, 0]),
    dict(name="blend_ab", data_path=["0.3", "A", "0.7", "B"], split="90,8,2", seed=1234, seq=32,
         sizes=[300, 30, 10]),
    dict(name="blend_abc_weighted", data_path=["1", "A", "2", "B", "1.5", "C"], split="90,10,0",
         seed=99, seq=12, sizes=[250, 20, 0]),
    dict(name="blend_unweighted", data_path=["A", "B", "C"], split="80,10,10", seed=5, seq=16,
         sizes=[60, 10, None]),
    # Weights whose products with the sample count are often whole numbers: ties between the
    # datasets' errors, which megatron-core breaks with an unfused multiply and subtract (an FMA
    # there picks another dataset at ~15% of positions).
    dict(name="blend_ties_three", data_path=["0.45", "A", "0.35", "B", "0.2", "C"],
         split="100,0,0", seed=13, seq=8, sizes=[600, 0, 0]),
    dict(name="blend_ties_nine_two", data_path=["9", "A", "2", "B"], split="100,0,0", seed=14,
         seq=8, sizes=[500, 0, 0]),
    dict(name="single_weighted", data_path=["1.0", "B"], split="90,8,2", seed=2, seq=20,
         sizes=[80, 8, 2]),
    dict(name="per_split", per_split=[["2", "A", "1", "C"], ["B"], None], seed=21, seq=16,
         sizes=[150, 20, 0]),
    dict(name="flags_masks", data_path=["A"], split="90,8,2", seed=4, seq=12, sizes=[40, 8, 4],
         reset_position_ids=True, reset_attention_mask=True, eod_mask_loss=True,
         create_attention_mask=True),
    dict(name="no_extra_token_pad", data_path=["A"], split="90,8,2", seed=8, seq=16,
         sizes=[50, 10, 3], add_extra_token=False, pad=1),
    dict(name="valid_keep_partial", data_path=["C"], split="50,50,0", seed=6, seq=16,
         sizes=[20, None, 0], drop_last_partial_validation_sequence=False),
    dict(name="pad_collides_eod", data_path=["A"], split="90,8,2", seed=9, seq=16,
         sizes=[20, 4, 2], pad=0),
    dict(name="mock", mock=True, seed=1234, seq=64, sizes=[40, 8, 8], vocab=5000),
]

DATA = {  # name: dtype, docs, vocab, eod, seed, max sequence length
    "A": (np.uint16, 60, 1000, 0, 1, 50),
    "B": (np.int32, 40, 70000, 2, 2, 80),
    "C": (np.uint16, 12, 300, 0, 3, 30),
    "D": (np.uint16, 700, 500, 0, 4, 12),
}


def dump_split(out, case, split_name, ds, mc):
    prefix = f"{case}_{split_name}"
    # A dataset holds at least the requested samples, often a whole epoch more (the mock one a
    # million); dump the first MAX_DUMP, which still covers every requested sample here.
    n = min(len(ds), MAX_DUMP)
    keys = ["tokens", "labels", "loss_mask", "position_ids"]
    rows = {k: [] for k in keys + ["attention_mask", "dataset_id"]}
    for i in range(n):
        s = ds[i]
        for k in keys:
            rows[k].append(s[k].numpy())
        if "attention_mask" in s:
            rows["attention_mask"].append(s["attention_mask"].numpy())
        if "dataset_id" in s:
            rows["dataset_id"].append(int(s["dataset_id"]))
    info = {"size": len(ds), "dumped": n}
    for k in keys:
        if n:
            save(out, G, f"{prefix}_{k}", np.stack(rows[k]))
    if rows["attention_mask"] and n:
        save(out, G, f"{prefix}_attention_mask", np.stack(rows["attention_mask"]).astype(np.uint8))
        info["attention_mask"] = True
    if n:
        pad_sample = ds.datasets[0][None] if isinstance(ds, mc.BlendedDataset) else ds[None]
        save(out, G, f"{prefix}_padding_loss_mask", pad_sample["loss_mask"].numpy())
        save(out, G, f"{prefix}_padding_tokens", pad_sample["tokens"].numpy())
    if isinstance(ds, mc.BlendedDataset):
        info["blended"] = True
        info["hash"] = ds.unique_description_hash
        save(out, G, f"{prefix}_dataset_index", np.asarray(ds.dataset_index).astype(np.int64))
        save(out, G, f"{prefix}_dataset_sample_index", np.asarray(ds.dataset_sample_index))
        if rows["dataset_id"]:
            save(out, G, f"{prefix}_dataset_id", np.array(rows["dataset_id"], dtype=np.int64))
        info["parts"] = []
        for j, part in enumerate(ds.datasets):
            info["parts"].append({"hash": part.unique_description_hash, "size": len(part),
                                  "num_samples": part.num_samples})
            save(out, G, f"{prefix}_part{j}_document_index", np.asarray(part.document_index))
            save(out, G, f"{prefix}_part{j}_shuffle_index",
                 np.asarray(part.shuffle_index).astype(np.int64))
    elif len(ds) > 20 * MAX_DUMP:
        info["blended"] = False  # (mock: a million samples) compare samples and size only
        info["hash"] = ds.unique_description_hash
    else:
        info["blended"] = False
        info["hash"] = ds.unique_description_hash
        save(out, G, f"{prefix}_document_index", np.asarray(ds.document_index))
        save(out, G, f"{prefix}_sample_index", np.asarray(ds.sample_index).astype(np.int64))
        save(out, G, f"{prefix}_shuffle_index", np.asarray(ds.shuffle_index).astype(np.int64))
    return info


def generate(out: pathlib.Path):
    import signal

    def _timeout(*_):
        raise TimeoutError("gen_gpt_dataset: megatron-core did not finish in 300 s (an empty "
                           "split asked for samples loops forever in megatron-core)")
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(300)
    try:
        _generate(out)
    finally:
        signal.alarm(0)


def _generate(out: pathlib.Path):
    mc = import_megatron_datasets()
    root = (out / G).resolve()
    data_dir = root / "data"
    if root.exists():
        shutil.rmtree(root)
    data_dir.mkdir(parents=True)
    prefixes = {}
    for name, (dtype, docs, vocab, eod, seed, max_len) in DATA.items():
        prefix = str(data_dir / f"ds_{name}")
        write_dataset(mc, prefix, dtype, docs, vocab, eod, seed, max_len)
        prefixes[name] = prefix

    def resolve(spec):
        return None if spec is None else [prefixes.get(x, x) for x in spec]

    manifest = {"data": {k: {"prefix": v, "vocab": DATA[k][2], "eod": DATA[k][3]}
                         for k, v in prefixes.items()}, "cases": []}
    split_names = ["train", "valid", "test"]
    for case in CASES:
        name = case["name"]
        first = (case.get("data_path") or [x for x in (case.get("per_split") or [[]])[0]
                                           if x in DATA] or ["A"])[-1]
        vocab = case.get("vocab", DATA.get(first, DATA["A"])[2])
        eod = DATA.get(first, DATA["A"])[3]
        tok = RefTokenizer(vocab, eod, case.get("pad"))
        # The mock dataset's indices span 100000 documents: no cache (also Megatron's default).
        cache = None if case.get("mock") else root / f"cache_{name}"
        kw = dict(
            random_seed=case["seed"], sequence_length=case["seq"],
            path_to_cache=str(cache) if cache else None,
            tokenizer=tok,
            reset_position_ids=case.get("reset_position_ids", False),
            reset_attention_mask=case.get("reset_attention_mask", False),
            eod_mask_loss=case.get("eod_mask_loss", False),
            create_attention_mask=case.get("create_attention_mask", False),
            add_extra_token_to_sequence=case.get("add_extra_token", True),
            drop_last_partial_validation_sequence=case.get(
                "drop_last_partial_validation_sequence", True),
        )
        if case.get("mock"):
            cls = mc.MockGPTDataset
        elif "per_split" in case:
            kw["blend_per_split"] = [None if b is None else mc.get_blend_from_list(resolve(b))
                                     for b in case["per_split"]]
            cls = mc.GPTDataset
        else:
            kw["blend"] = mc.get_blend_from_list(resolve(case["data_path"]))
            kw["split"] = case["split"]
            cls = mc.GPTDataset
        config = mc.GPTDatasetConfig(**kw)
        datasets = mc.BlendedMegatronDatasetBuilder(
            cls, case["sizes"], lambda: True, config).build()
        entry = {
            "name": name, "seed": case["seed"], "seq": case["seq"], "sizes": case["sizes"],
            "split": config.split, "mock": bool(case.get("mock")),
            "data_path": resolve(case.get("data_path")),
            "per_split": [resolve(b) for b in case["per_split"]] if "per_split" in case else None,
            "vocab": vocab, "eod": eod, "pad": case.get("pad"),
            "tokenizer": tok.unique_identifiers,
            "reset_position_ids": kw["reset_position_ids"],
            "reset_attention_mask": kw["reset_attention_mask"],
            "eod_mask_loss": kw["eod_mask_loss"],
            "create_attention_mask": kw["create_attention_mask"],
            "add_extra_token": kw["add_extra_token_to_sequence"],
            "drop_last_partial_validation_sequence": kw["drop_last_partial_validation_sequence"],
            "cache_dir": str(cache) if cache else None,
            "cache_files": sorted(p.name for p in cache.glob("*")) if cache else [],
            "splits": {},
        }
        for i, ds in enumerate(datasets):
            if ds is not None:
                entry["splits"][split_names[i]] = dump_split(out, name, split_names[i], ds, mc)
        manifest["cases"].append(entry)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
