"""Initialisers: where training starts. One function per rule, registered by name.

An initialiser receives the parameterisation and the fp32 matrix view of W0 and sets the factors.
It returns True when its starting ΔW₀ must be subtracted from W0 (PiSSA, MiLoRA, OLoRA), so that
the adapted model starts equal to the base model.
"""

from .registry import INITIALISERS, get_initialiser, register_initialiser
from .standard import init_default, init_gaussian
from .svd import init_milora, init_olora, init_pissa

__all__ = ["INITIALISERS", "get_initialiser", "register_initialiser", "init_default", "init_gaussian",
           "init_pissa", "init_milora", "init_olora"]
