"""Atomic, weights-only training checkpoints: everything a run needs to continue bit-identically.

A checkpoint is a folder:

    model.safetensors   the model's full state dict (adapters, moved base weights, buffers)
    trainer.pt          optimizer and method-schedule state, RNG states (read with weights_only=True)
    state.json          step and format; written last, so a folder with it is complete

A new checkpoint is written next to the old one and swapped in by renames, so an interruption at
any moment leaves a complete checkpoint (``checkpoint`` or, mid-swap, ``checkpoint-old``).
"""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..errors import AdapterFileError
from ..io.files import atomic_write_bytes, read_json, read_tensors, write_json, write_tensors

FORMAT = "rankwise.checkpoint"
NAME = "checkpoint"


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), Python and NumPy RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def save_checkpoint(out: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    schedule_state: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint of the state after ``step`` completed optimizer steps into ``out/checkpoint``."""
    out = Path(out)
    final, new, old = out / NAME, out / f"{NAME}-new", out / f"{NAME}-old"
    shutil.rmtree(new, ignore_errors=True)
    tensors, seen = {}, set()
    for k, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        tensors[k] = t.clone() if key in seen else t  # tied weights: safetensors refuses shared storage
        seen.add(key)
    write_tensors(new / "model.safetensors", tensors)
    buf = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule_state, "rng": rng_state()}, buf)
    atomic_write_bytes(new / "trainer.pt", buf.getvalue())
    write_json(new / "state.json", {"format": FORMAT, "step": step, "rankwise_version": __version__,
                                    **(extra or {})})
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint under ``out`` (the current one, or the previous one after a crash mid-swap)."""
    for name in (NAME, f"{NAME}-old"):
        folder = Path(out) / name
        if (folder / "state.json").exists():
            return folder
    return None


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, dict, dict]:
    """Load a checkpoint into ``model`` and ``optimizer``; returns (step, schedule state, state.json).

    RNG states are restored too. Nothing is unpickled: tensors come from safetensors and
    ``torch.load(weights_only=True)``.
    """
    folder = Path(folder)
    meta = read_json(folder / "state.json")
    if meta.get("format") != FORMAT:
        raise AdapterFileError(f"{folder / 'state.json'} is not a rankwise checkpoint")
    tensors = read_tensors(folder / "model.safetensors")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise AdapterFileError(f"{folder}: the checkpoint does not fit the model (missing {missing[:5]}, unexpected "
                               f"{unexpected[:5]}); resume with the same model, method and settings")
    try:
        trainer = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)
    except Exception as e:
        raise AdapterFileError(f"{folder / 'trainer.pt'} cannot be read with weights_only=True: {e}") from e
    optimizer.load_state_dict(trainer["optimizer"])
    set_rng_state(trainer["rng"])
    return int(meta["step"]), trainer["schedule"], meta
