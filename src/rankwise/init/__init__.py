"""Initialisers: where training starts. One function per rule, registered by name.

An initialiser receives the parameterisation and the fp32 matrix view of W0 and sets the factors.
It returns True when its starting ΔW₀ must be subtracted from W0 (PiSSA, MiLoRA, OLoRA), so that
the adapted model starts equal to the base model.
"""

from .corda import init_corda
from .eva import init_eva
from .lora_ga import init_lora_ga
from .lora_one import init_lora_one
from .lora_sb import init_lora_sb
from .lora_xs import init_lora_xs
from .nlora import init_nlora
from .registry import INITIALISERS, get_initialiser, register_initialiser
from .standard import init_default, init_gaussian
from .svd import init_milora, init_olora, init_pissa

__all__ = ["INITIALISERS", "get_initialiser", "register_initialiser", "init_default", "init_gaussian",
           "init_pissa", "init_milora", "init_olora", "init_lora_ga", "init_lora_one", "init_lora_sb", "init_eva",
           "init_corda", "init_lora_xs", "init_nlora"]
