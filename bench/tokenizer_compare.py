#!/usr/bin/env python3
"""Encoding throughput of mcore's tokenizers beside Hugging Face `tokenizers` on the same text.

    .venv/bin/python bench/tokenizer_compare.py [--jsonl data/fortunes/fortunes.jsonl]

Trains a 16k byte-level BPE (GPT-2 layout) and a Llama-3-layout one on the corpus (nothing is
downloaded), then measures MB/s of UTF-8 text encoded at 1 and 2 threads: mcore's
bench/tokenizer_bench (OpenMP over documents) and tokenizers' encode_batch (Rayon, thread count
from RAYON_NUM_THREADS), best of 3 after a warm-up, same documents. Also checks the ids agree.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

HF_RUN = r"""
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
docs = json.load(open(sys.argv[2]))
mb = sum(len(d.encode()) for d in docs) / 2**20
tok.encode_batch(docs, add_special_tokens=True)  # warm-up
best = 1e30
for _ in range(3):
    t0 = time.perf_counter(); enc = tok.encode_batch(docs, add_special_tokens=True)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"mb_per_s": mb / best, "tokens": sum(len(e.ids) for e in enc)}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl", default=str(ROOT / "data/fortunes/fortunes.jsonl"))
    ap.add_argument("--build", default=str(ROOT / os.environ.get("MCORE_BUILD_DIR", "build")))
    ap.add_argument("--max-mb", type=float, default=8)
    args = ap.parse_args()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    work = pathlib.Path(args.build) / "bench_tokenizers"
    work.mkdir(parents=True, exist_ok=True)
    docs, size = [], 0
    for line in open(args.jsonl, encoding="utf-8"):
        docs.append(json.loads(line)["text"])
        size += len(docs[-1].encode())
        if size >= args.max_mb * 2**20:
            break
    (work / "docs.json").write_text(json.dumps(docs))
    with open(work / "docs.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")

    l3re = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    layouts = {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False),
        "llama3": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(l3re), "isolated"),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
    }
    print(f"text: {len(docs)} documents, {size / 2**20:.1f} MB from {args.jsonl}")
    print(f"{'tokenizer':<10} {'threads':>7} {'mcore MB/s':>11} {'HF MB/s':>9} {'ratio':>6}")
    for name, pre in layouts.items():
        path = work / f"{name}.json"
        if not path.exists():
            tok = Tokenizer(models.BPE(ignore_merges=(name == "llama3")))
            tok.pre_tokenizer = pre
            tok.decoder = decoders.ByteLevel()
            tok.train_from_iterator(docs, trainers.BpeTrainer(
                vocab_size=16000, special_tokens=["<|endoftext|>"], show_progress=False,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
            tok.save(str(path))
        ours = subprocess.run([str(pathlib.Path(args.build) / "bench" / "tokenizer_bench"), "--jsonl",
                               str(work / "docs.jsonl"), "--tokenizer-model", str(path), "--threads", "1,2",
                               "--max-mb", str(args.max_mb + 1)],
                              check=True, capture_output=True, text=True).stdout.split("\n")
        ours = {int(l.split()[0].split("=")[1]): dict(kv.split("=") for kv in l.split()) for l in ours if l}
        for threads in (1, 2):
            env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
            hf = json.loads(subprocess.run([sys.executable, "-c", HF_RUN, str(path), str(work / "docs.json")],
                                           check=True, capture_output=True, text=True, env=env).stdout)
            o = ours[threads]
            assert int(o["tokens"]) == hf["tokens"], f"token counts differ: {o['tokens']} vs {hf['tokens']}"
            mine = float(o["mb_per_s"])
            print(f"{name:<10} {threads:>7} {mine:>11.2f} {hf['mb_per_s']:>9.2f} {mine / hf['mb_per_s']:>6.2f}")


if __name__ == "__main__":
    main()
