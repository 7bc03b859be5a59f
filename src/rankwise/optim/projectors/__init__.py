"""Projectors for low-rank optimizers, behind one interface (:class:`Projector`), chosen by name per group."""

from __future__ import annotations

from ...errors import ConfigError
from .base import Projector, effective_rank, project, project_back, project_back_add_, side_for
from .dct import DCTProjector, dct_matrix
from .random import DISTRIBUTIONS, RandomProjector
from .rsvd import RandomizedSVDProjector
from .svd import SVDProjector

PROJECTORS: dict[str, Projector] = {p.name: p for p in (SVDProjector(), RandomizedSVDProjector(), DCTProjector(),
                                                        RandomProjector())}


def get_projector(name: str) -> Projector:
    """The projector called ``name``; unknown names raise ConfigError listing the known ones."""
    if name not in PROJECTORS:
        raise ConfigError(f"unknown projector {name!r}; choose one of {sorted(PROJECTORS)}")
    return PROJECTORS[name]


__all__ = ["Projector", "PROJECTORS", "get_projector", "side_for", "effective_rank", "project", "project_back",
           "project_back_add_", "dct_matrix", "DISTRIBUTIONS", "SVDProjector", "RandomizedSVDProjector",
           "DCTProjector", "RandomProjector"]
