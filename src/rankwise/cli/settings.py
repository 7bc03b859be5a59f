"""The settings every training command shares: model, data, method and the loop's own (TrainConfig)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..train.config import TrainConfig, check_fields, setting


@dataclass
class RunSettings(TrainConfig):
    """Model, data and method settings on top of the training loop's."""

    model: str = setting("llama-tiny", "a preset (llama-tiny, llama-small, llama-60m, llama-130m, minilm) or a "
                         "Hugging Face model folder")
    data: str = setting("stdlib", "text file or folder (language modelling), a .tsv/.csv/.jsonl file with text and "
                        "label columns (classification), or 'stdlib' (this Python's standard-library sources)")
    val_data: str = setting("", "separate validation file for classification (empty: split val_fraction off data)")
    val_fraction: float = setting(0.1, "fraction held out for validation (the end of a text corpus; a seeded "
                                  "random subset of labelled rows)", gt=0, lt=1)
    text_column: str = setting("", "classification: text column (empty: sentence/text/content/review)")
    label_column: str = setting("label", "classification: label column")
    max_train_rows: int = setting(0, "classification: keep the first N training rows after random.seed(seed) "
                                  "shuffle (0: all)", min=0)
    tokenizer: str = setting("", "tokenizer.json or Hugging Face tokenizer folder (empty: the model folder's, "
                             "else a byte-level BPE trained on the training text and saved with the run)")
    vocab_size: int = setting(2048, "vocabulary of the trained byte-level BPE (presets)", min=260)
    max_length: int = setting(128, "sequence length: LM window, or classification truncation", min=2)
    batch_size: int = setting(16, "sequences per micro-batch", min=1)
    rank: int | None = setting(None, "rank for methods that have one (adapters, GaLore/Fira/APOLLO, low-rank "
                               "pretraining); empty: the method's default", min=1)
    alpha: float | None = setting(None, "adapter α (empty: 2·rank when rank is set, else the method's default)")
    targets: list[str] = setting(["all-linear"], "adapter targets: names, suffixes, regexes or 'all-linear'")
    modules_to_save: list[str] = setting([], "adapter methods: whole modules trained too (a new classifier head "
                                         "is added automatically)")
    method_args: dict = setting({}, "extra fields for the method's config, e.g. \"{update_gap: 50}\"")
    threads: int = setting(0, "torch intra-op threads (0: torch's default)", min=0)
    out: str = setting("runs/run", "output folder: config.yaml, metrics, checkpoint, adapter, tokenizer")

    def validate(self) -> None:
        check_fields(self)
        if not self.data:
            raise ConfigError("data is empty; pass --data FILE (text, .tsv/.csv/.jsonl) or 'stdlib'")

    def method_settings(self) -> dict:
        """The shared method fields, for ``rankwise.train.method_kwargs``."""
        alpha = self.alpha if self.alpha is not None else (2.0 * self.rank if self.rank is not None else None)
        return {"rank": self.rank, "alpha": alpha, "targets": self.targets, **self.method_args}


def check_method(name: str) -> None:
    """Refuse (before any work) a method name that is neither 'adamw'/'full' nor a training method in the catalogue."""
    from ..methods import get_method
    from ..train.method import FULL

    if name in FULL:
        return
    if get_method(name).family == "compress":  # unknown names raise here, with close names
        raise ConfigError(f"method {name!r} is a compression method; use `rankwise compress`")
