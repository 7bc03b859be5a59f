"""What every survey experiment returns, and the digits data they share."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError


@dataclass
class ExperimentResult:
    """The outcome of one experiment.

    Attributes:
        name: the experiment's module name.
        metrics: the scalar numbers its claim is judged by (what the tests assert).
        series: the curves behind the figure (lists of floats), for users who want to re-plot.
        figure: the written PNG, or None when ``out_dir`` was None.
    """

    name: str
    metrics: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)
    figure: Path | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "metrics": self.metrics, "series": self.series,
                "figure": None if self.figure is None else str(self.figure)}


def digits(dtype: torch.dtype = torch.float32, seed: int = 0, test_fraction: float = 0.25):
    """The 8×8 digits dataset that scikit-learn ships (1797 images, 10 classes), centred, split.

    Returns:
        (x_train, y_train, x_test, y_test): x (N, 64) pixels scaled to [0, 1] (they range 0…16) and
        centred by the training mean, y (N,) int64 labels. (No per-pixel division by the standard
        deviation: border pixels are constant in the training part and would blow up in the test part.)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ConfigError("this experiment uses scikit-learn's digits dataset: pip install scikit-learn") from e
    data = load_digits()
    x = torch.tensor(data.data, dtype=dtype)
    y = torch.tensor(data.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    te, tr = perm[:n_test], perm[n_test:]
    x = x / 16.0
    x = x - x[tr].mean(0)
    return x[tr], y[tr], x[te], y[te]


def out_path(out_dir, filename: str) -> Path | None:
    """``out_dir / filename`` (creating the folder), or None when ``out_dir`` is None."""
    if out_dir is None:
        return None
    p = Path(out_dir)
    p.mkdir(parents=True, exist_ok=True)
    return p / filename


@contextlib.contextmanager
def single_thread():
    """Run the block with one intra-op thread, restoring the setting after.

    The experiments' matrices are tiny (≤ 256 wide): thread start-up and synchronisation cost more
    than the arithmetic, and on a busy machine idle-spinning worker threads slow a run down by orders
    of magnitude.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(fn):
    """Decorator: run ``fn`` inside :func:`single_thread`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_thread():
            return fn(*args, **kwargs)

    return wrapper
