"""tilenorm: the LayerNorm/RMSNorm family as Helion kernels, tuned per shape.

Functional: ``layer_norm``, ``rms_norm``, ``add_layer_norm``, ``add_rms_norm``.
Modules: ``LayerNorm``, ``RMSNorm``, ``GatedRMSNorm``. Compatibility:
``fast_layernorm``, ``fast_rms_layernorm``. Hugging Face: ``patch_transformers``,
``unpatch_transformers``.
"""

from . import ops  # registers the tilenorm:: custom ops used under torch.compile
from .functional import add_layer_norm, add_rms_norm, layer_norm, rms_norm
from .launch import get_cpu_backend, set_cpu_backend
from .modules import GatedRMSNorm, LayerNorm, RMSNorm, fast_layernorm, fast_rms_layernorm
from .patching import patch_transformers, unpatch_transformers

__version__ = "0.1.0"

__all__ = [
    "GatedRMSNorm",
    "LayerNorm",
    "RMSNorm",
    "add_layer_norm",
    "add_rms_norm",
    "fast_layernorm",
    "fast_rms_layernorm",
    "get_cpu_backend",
    "layer_norm",
    "patch_transformers",
    "rms_norm",
    "set_cpu_backend",
    "unpatch_transformers",
]
