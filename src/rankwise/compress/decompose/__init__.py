"""Decompositions of a layer weight, each a truncated SVD of a transformed W (see ``base``)."""

from .asvd import asvd
from .base import Spectrum, transformed_svd
from .fwsvd import fwsvd
from .svd import svd
from .svd_llm import svd_llm, whitening

DECOMPOSITIONS = ("svd", "fwsvd", "asvd", "svd-llm")

__all__ = ["DECOMPOSITIONS", "Spectrum", "asvd", "fwsvd", "svd", "svd_llm", "transformed_svd", "whitening"]
