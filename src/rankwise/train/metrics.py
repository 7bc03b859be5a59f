"""Where a run's numbers go: ``metrics.jsonl`` and ``metrics.csv`` (plus TensorBoard when installed),
and a progress bar with loss, tokens/s and ETA (tqdm when installed, else a line every log row).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..io.files import atomic_write_bytes

COLUMNS = ("step", "kind", "loss", "lr", "tokens", "tokens_per_s", "elapsed_s", "val_loss", "val_ppl", "val_accuracy")


class MetricsLog:
    """Rows of metrics, one per logged step or evaluation, rewritten atomically on every append.

    On resume, rows after the checkpoint's step are dropped, so the files describe one run.
    """

    def __init__(self, out: Path, resume_step: int | None = None, tensorboard: bool = True):
        self.out = Path(out)
        self.rows: list[dict[str, Any]] = []
        jsonl = self.out / "metrics.jsonl"
        if resume_step is not None and jsonl.exists():
            rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
            self.rows = [r for r in rows if r["step"] <= resume_step]
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out / "tensorboard"))
            except Exception:  # tensorboard is optional
                self.writer = None
        self._flush()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, float):
                    self.writer.add_scalar(f"{row['kind']}/{k}", v, row["step"])
        self._flush()

    @property
    def elapsed(self) -> float:
        """Wall seconds already spent by the run (continued across resumes)."""
        return max((r.get("elapsed_s", 0.0) for r in self.rows), default=0.0)

    def _flush(self) -> None:
        atomic_write_bytes(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_bytes(self.out / "metrics.csv", buf.getvalue().encode())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """A progress bar over optimizer steps showing loss and tokens/s; tqdm adds the ETA."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str = "train"):
        self.enabled, self.total, self.bar = enabled, total, None
        self.start = time.perf_counter()
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self.bar = None

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            self.bar.update(1)
        elif (step + 1) % max(1, self.total // 20) == 0 or step + 1 == self.total:
            done = step + 1
            rate = done / max(time.perf_counter() - self.start, 1e-9)
            eta = (self.total - done) / max(rate, 1e-9)
            print(f"step {done}/{self.total} loss {loss:.4f} tok/s {tokens_per_s:,.0f} eta {eta:.0f}s",
                  file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
