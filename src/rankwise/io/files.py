"""Safe file primitives: atomic writes, JSON and tensor reads that never unpickle.

Every error names the file and says what is wrong with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from ..errors import AdapterFileError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder + fsync + rename.

    Readers see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write ``tensors`` as a safetensors file."""
    data = st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def read_json(path: Path) -> dict:
    """Read a JSON object; unreadable or malformed files raise AdapterFileError naming the file."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise AdapterFileError(f"cannot read {path}: {e}") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise AdapterFileError(f"{path} is not valid JSON ({e}); the file is corrupt or truncated") from e
    if not isinstance(obj, dict):
        raise AdapterFileError(f"{path} must hold a JSON object, found {type(obj).__name__}")
    return obj


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (or a PyTorch .bin read with ``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        raise AdapterFileError(f"{path} does not exist")
    if path.suffix == ".bin":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise AdapterFileError(f"{path} cannot be read as a weights-only PyTorch file: {e}") from e
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise AdapterFileError(f"{path} does not hold a flat dict of tensors")
        return obj
    try:
        out = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
        return out
    except Exception as e:
        raise AdapterFileError(f"{path} is not a readable safetensors file ({e}); it is corrupt or truncated") from e
