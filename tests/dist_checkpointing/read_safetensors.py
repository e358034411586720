"""Reads a safetensors file with the real `safetensors` package and dumps what it sees:
    read_safetensors.py FILE OUT_JSON
OUT_JSON: {"metadata": {...}, "tensors": {name: {"dtype", "shape", "hex" (raw bytes),
"values" (from safetensors.torch, for the dtypes torch 1.13 has)}}}. Exit 77 when the package
is missing; any error the package raises (a file it rejects) exits 1 with its message.
"""
import json
import sys


def main():
    path, out = sys.argv[1], sys.argv[2]
    try:
        import safetensors
        from safetensors import safe_open
    except ImportError as e:
        print(f"safetensors unavailable: {e}", file=sys.stderr)
        sys.exit(77)
    data = open(path, "rb").read()
    result = {"tensors": {}}
    # The Rust core validates the header and offsets; it gives every dtype as raw bytes.
    for name, view in safetensors.deserialize(data):
        result["tensors"][name] = {"dtype": view["dtype"], "shape": list(view["shape"]),
                                   "hex": bytes(view["data"]).hex()}
    with safe_open(path, framework="pt") as f:
        result["metadata"] = f.metadata() or {}
        import torch
        for name in f.keys():
            dt = result["tensors"][name]["dtype"]
            if dt in ("F8_E4M3", "F8_E5M2", "U16"):  # not in torch 1.13
                continue
            t = f.get_tensor(name)
            result["tensors"][name]["values"] = t.double().reshape(-1).tolist()
    with open(out, "w") as fo:
        json.dump(result, fo)


if __name__ == "__main__":
    main()
