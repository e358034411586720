"""Reference safetensors file written by the real `safetensors` package, for
tests/dist_checkpointing/safetensors_test.cpp: one tensor of every dtype mcore supports (odd
shapes, a 0-d scalar, an empty tensor), written with safetensors.serialize_file from raw
buffers (so bf16 and fp8 need no torch support).

Outputs in <out>/safetensors/:
  py_written.safetensors       the file, with __metadata__ {"format": "pt"}
  manifest.json                name -> {dtype, shape}
  <name>_bytes.npy             the tensor's raw little-endian bytes (uint8)
  <name>_values.npy            its values as float64 (fp8/bf16 decoded by ml_dtypes)
"""
import json
import pathlib

import ml_dtypes
import numpy as np
import safetensors

from refutil import rng, save

G = "safetensors"

# safetensors dtype name -> (TensorSpec dtype name, numpy dtype)
DTYPES = {
    "F64": ("float64", np.float64),
    "F32": ("float32", np.float32),
    "F16": ("float16", np.float16),
    "BF16": ("bfloat16", ml_dtypes.bfloat16),
    "F8_E4M3": ("float8_e4m3fn", ml_dtypes.float8_e4m3fn),
    "F8_E5M2": ("float8_e5m2", ml_dtypes.float8_e5m2),
    "I64": ("int64", np.int64),
    "I32": ("int32", np.int32),
    "I16": ("int16", np.int16),
    "I8": ("int8", np.int8),
    "U16": ("uint16", np.uint16),
    "U8": ("uint8", np.uint8),
    "BOOL": ("bool", np.bool_),
}


def values(st_dtype, shape, seed):
    g = rng(seed)
    n = int(np.prod(shape)) if shape else 1
    if st_dtype.startswith("F") or st_dtype == "BF16":
        x = g.standard_normal(n) * 3.0
    elif st_dtype == "BOOL":
        x = g.integers(0, 2, n)
    elif st_dtype == "I64":
        x = g.integers(-(1 << 50), 1 << 50, n)  # beyond 32 bits, exact in float64
    else:
        info = np.iinfo(DTYPES[st_dtype][1])
        x = g.integers(info.min, info.max, n, endpoint=True)
    return x.astype(DTYPES[st_dtype][1]).reshape(shape)


def generate(out: pathlib.Path):
    d = out / G
    d.mkdir(parents=True, exist_ok=True)
    tensors = {}
    shapes = {"F64": [3, 5], "F32": [7, 3], "F16": [2, 3, 3], "BF16": [5, 7], "F8_E4M3": [11],
              "F8_E5M2": [3, 4], "I64": [6], "I32": [2, 9], "I16": [5], "I8": [3, 3], "U16": [4, 2],
              "U8": [13], "BOOL": [2, 5]}
    for i, (st, shape) in enumerate(shapes.items()):
        tensors[f"t.{st.lower()}"] = (st, values(st, shape, 100 + i))
    tensors["scalar"] = ("F32", np.array(2.5, dtype=np.float32))
    tensors["empty"] = ("F32", np.zeros((0, 3), dtype=np.float32))

    specs, manifest = {}, {}
    for name, (st, arr) in tensors.items():
        arr = np.ascontiguousarray(arr)
        specs[name] = safetensors.TensorSpec(dtype=DTYPES[st][0], shape=list(arr.shape),
                                             data_ptr=arr.ctypes.data, data_len=arr.nbytes)
        manifest[name] = {"dtype": st, "shape": list(arr.shape)}
        save(out, G, f"{name}_bytes", np.frombuffer(arr.tobytes(), dtype=np.uint8))
        save(out, G, f"{name}_values", arr.astype(np.float64).reshape(-1))
    safetensors.serialize_file(specs, str(d / "py_written.safetensors"), {"format": "pt"})
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1))

    # The package itself reads the file back identically (guards this script, not mcore).
    for name, _ in safetensors.deserialize((d / "py_written.safetensors").read_bytes()):
        pass
