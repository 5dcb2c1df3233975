"""The bytes a served black box exchanges: safetensors (arrays) and JSON (everything else).

Nothing is ever unpickled: a safetensors file is an 8-byte header length, a JSON
header (shapes, dtypes, offsets and a string-to-string `__metadata__`) and raw
little-endian numbers, so reading one runs no code from the sender.
"""

from __future__ import annotations

import json
import struct

import numpy as np
from safetensors.numpy import load, save


def pack(arrays: dict[str, np.ndarray], meta: dict | None = None) -> bytes:
    """Arrays (+ JSON-able `meta`, stored as one metadata string) -> safetensors bytes."""
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    return save(arrays, metadata={"json": json.dumps(meta or {})})


def unpack(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """safetensors bytes -> (arrays, meta); a malformed payload raises ValueError."""
    try:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + length])
        meta = json.loads((header.get("__metadata__") or {}).get("json", "{}"))
        arrays = load(data)
    except Exception as e:  # noqa: BLE001 - any parse failure is the sender's malformed payload
        raise ValueError(f"the payload is not valid safetensors bytes ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict):
        raise ValueError("the payload's metadata must be a JSON object")
    return arrays, meta
