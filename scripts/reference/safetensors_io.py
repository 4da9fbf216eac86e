"""Minimal safetensors reader/writer (stdlib + torch only).

Format: 8-byte little-endian unsigned header length N, then N bytes of UTF-8 JSON
{name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the raw little-endian tensor bytes; offsets are relative to the end of the header.
"""
import json
import os
import struct

import torch

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_header(path):
    """Return (header dict without __metadata__, metadata dict, data start offset)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def read(path, names=None):
    """Read a .safetensors file into {name: torch.Tensor} (tensors keep their stored dtype).

    names: optional iterable restricting which tensors are loaded.
    """
    header, _meta, start = read_header(path)
    wanted = set(names) if names is not None else None
    out = {}
    with open(path, "rb") as f:
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if wanted is not None and name not in wanted:
                continue
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None:
                raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
            b, e = info["data_offsets"]
            f.seek(start + b)
            buf = bytearray(f.read(e - b))
            shape = list(info["shape"])
            numel = 1
            for s in shape:
                numel *= s
            if numel == 0:
                t = torch.empty(shape, dtype=dtype)
            else:
                t = torch.frombuffer(buf, dtype=dtype, count=numel).reshape(shape)
            if len(buf) != t.numel() * t.element_size():
                raise ValueError(f"{path}: tensor {name} byte size mismatch")
            out[name] = t
    return out


def read_metadata(path):
    return read_header(path)[1]


def write(path, tensors, metadata=None):
    """Write {name: torch.Tensor} to path. Tensors are stored in their own dtype, in name order,
    each data offset aligned to 8 bytes (header padded with spaces, as the Rust library does)."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"unsupported dtype {t.dtype} for {name}")
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().tobytes()
        else:
            data = t.numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
