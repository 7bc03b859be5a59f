"""``save_adapter`` / ``load_adapter``: the two verbs over both formats."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..core import api
from ..errors import AdapterFileError, ConfigError
from .native import META, read_native, save_native
from .payload import apply_payload
from .peft_format import CONFIG, read_peft, save_peft

FORMATS = ("rankwise", "peft")


def save_adapter(model: nn.Module, folder: str | Path, name: str = "default", format: str = "rankwise") -> Path:
    """Save adapter ``name`` of ``model`` into ``folder`` (created if needed). Files are written atomically.

    Args:
        format: ``"rankwise"`` (``adapter.safetensors`` + ``adapter.json``) or ``"peft"``
            (``adapter_model.safetensors`` + ``adapter_config.json``, loadable with
            ``peft.PeftModel.from_pretrained``).

    Returns:
        The folder.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; choose one of {FORMATS}")
    api.adapter_config(model, name)  # raises if there is no such adapter
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AdapterFileError(f"{folder} exists and is not a folder")
    (save_native if format == "rankwise" else save_peft)(model, folder, name)
    return folder


def load_adapter(model: nn.Module, folder: str | Path, name: str = "default", activate: bool = True) -> nn.Module:
    """Load an adapter saved by rankwise or by PEFT (detected from the files) onto ``model`` as ``name``.

    Everything is read and checked first — JSON, tensor names, shapes against the model's layers,
    finiteness — so a corrupt, truncated or mismatched folder raises ``AdapterFileError`` naming
    the file and layer and leaves the model untouched. Nothing is unpickled.
    """
    api.check_adapter_name(name)
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterFileError(f"{folder} is not a folder holding an adapter")
    if (folder / META).exists():
        payload = read_native(folder)
    elif (folder / CONFIG).exists():
        payload = read_peft(folder)
    else:
        raise AdapterFileError(f"{folder} holds neither {META} (rankwise) nor {CONFIG} (PEFT)")
    return apply_payload(model, payload, name, activate)
