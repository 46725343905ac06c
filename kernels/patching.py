"""Route Hugging Face transformers' norm layers through tilenorm, and undo it exactly.

Only ``forward`` changes hands: parameters, buffers, attribute names and the state dict
stay the HF ones, so checkpoints load into a patched model and a patched model's
checkpoints load anywhere. The mapping (checked against transformers 5.23):

| name       | HF class                     | patched forward runs                                 |
|------------|------------------------------|------------------------------------------------------|
| llama      | LlamaRMSNorm                 | rms_norm(x, w, variance_epsilon, casting="llama")[1] |
| mistral    | MistralRMSNorm               | as llama [1]                                         |
| qwen2      | Qwen2RMSNorm                 | as llama [1]                                         |
| qwen3      | Qwen3RMSNorm (q/k_norm too)  | as llama; q/k_norm over head_dim [1]                 |
| phi3       | Phi3RMSNorm                  | as llama [1]                                         |
| gemma      | GemmaRMSNorm                 | rms_norm(x, w, eps, offset=1.0, casting="gemma")     |
| gemma2     | Gemma2RMSNorm                | as gemma                                             |
| gemma3     | Gemma3RMSNorm (q/k_norm too) | as gemma                                             |
| layer_norm | nn.LayerNorm (e.g. GPT-2)    | layer_norm(x, weight, bias, eps) [2]                 |

Gemma's weights start at zeros and scale by ``(1 + w.float())``, all in fp32, with one
cast to ``x.dtype`` at the end: tilenorm's ``offset=1.0, casting="gemma"``.

[1] HF Llama-style norms return ``weight * normalized.to(x.dtype)``, whose dtype is the
promotion of both. When that is ``x.dtype`` one kernel computes the same thing; when
the weight is wider (fp32 weights with bf16 activations, as under autocast) the kernel
normalizes without the weight and the multiply stays in torch, so that values and
dtype match HF's.
[2] A multi-dim ``normalized_shape`` is normalized as its flattened trailing dims.
Under CUDA autocast ``nn.LayerNorm`` runs in fp32 (autocast's policy for
``layer_norm``); the patched forward upcasts the input the same way.

Two modes:

- ``patch_transformers()`` (by class): swaps ``forward`` on each installed family's
  class, so every instance uses tilenorm, whether built before or after. The
  ``layer_norm`` family patches ``torch.nn.LayerNorm`` itself, for the whole process;
  leave it out with ``families=`` if that is too wide.
- ``patch_transformers(model)`` (in place): binds the tilenorm forward on the norm
  modules of that model only (those whose exact class is in the table).

Inputs the kernels do not take (float64, devices other than CPU/CUDA, tensor
subclasses such as DTensor, eps <= 0, mismatched trailing dims) go to the original
forward, so patching never breaks a model that worked. Families whose transformers
module is missing are skipped. ``unpatch_transformers()`` puts back the exact objects
that were there before, most recent patch first.
"""

from __future__ import annotations

import importlib
import logging
import types
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .functional import layer_norm, rms_norm

__all__ = ["FAMILIES", "Family", "patch_transformers", "unpatch_transformers"]

log = logging.getLogger(__name__)

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
_MARK = "__tilenorm_original__"  # on each forward of ours: the forward it replaced
_MISSING = object()


# ------------------------------------------------------------------ tilenorm forwards


def _takes(x: torch.Tensor, params: tuple[torch.Tensor | None, ...], eps: float) -> bool:
    """True when tilenorm's kernels accept these inputs; else the original forward runs."""
    for t in (x, *params):
        if t is None:
            continue
        if type(t) not in _PLAIN_TENSORS or t.dtype not in _DTYPES or t.device != x.device:
            return False
    return x.device.type in ("cpu", "cuda") and eps > 0


def _mark(forward: Callable, original: Callable) -> Callable:
    setattr(forward, _MARK, original)
    return forward


def _llama_forward(original: Callable) -> Callable:
    """Llama-style RMSNorm: fp32 statistics, normalized value rounded to x's dtype, * w."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        w, eps = self.weight, self.variance_epsilon
        if not _takes(hidden_states, (w,), eps):
            return original(self, hidden_states)
        if torch.promote_types(w.dtype, hidden_states.dtype) == hidden_states.dtype:
            return rms_norm(hidden_states, w, eps, casting="llama")
        # A wider weight makes HF's result wider than x: keep that multiply in torch.
        return w * rms_norm(hidden_states, None, eps, casting="llama")

    return _mark(forward, original)


def _gemma_forward(original: Callable) -> Callable:
    """Gemma RMSNorm: all in fp32 with (1 + w), one cast to x's dtype at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        if not _takes(x, (self.weight,), self.eps):
            return original(self, x)
        return rms_norm(x, self.weight, self.eps, offset=1.0, casting="gemma")

    return _mark(forward, original)


def _layer_norm_forward(original: Callable) -> Callable:
    """nn.LayerNorm over its normalized_shape (several trailing dims are flattened)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002, ANN001
        shape = tuple(self.normalized_shape)
        fits = 0 < len(shape) <= input.dim() and tuple(input.shape[-len(shape) :]) == shape
        if not fits or not _takes(input, (self.weight, self.bias), self.eps):
            return original(self, input)  # torch raises its own error on bad shapes
        if input.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
            input = input.float()  # autocast runs layer_norm in fp32 on CUDA
        w, b = self.weight, self.bias
        if len(shape) > 1:
            flat = (*input.shape[: -len(shape)], -1)
            w = None if w is None else w.reshape(-1)
            b = None if b is None else b.reshape(-1)
            return layer_norm(input.reshape(flat), w, b, self.eps).view(input.shape)
        return layer_norm(input, w, b, self.eps)

    return _mark(forward, original)


# ------------------------------------------------------------------------ the families


@dataclass(frozen=True)
class Family:
    module: str  # the class's __module__ (imported only in by-class mode)
    cls_name: str
    make_forward: Callable[[Callable], Callable]  # original forward -> tilenorm forward


def _hf(name: str, cls_name: str, make: Callable[[Callable], Callable]) -> Family:
    return Family(f"transformers.models.{name}.modeling_{name}", cls_name, make)


FAMILIES: dict[str, Family] = {
    "llama": _hf("llama", "LlamaRMSNorm", _llama_forward),
    "mistral": _hf("mistral", "MistralRMSNorm", _llama_forward),
    "qwen2": _hf("qwen2", "Qwen2RMSNorm", _llama_forward),
    "qwen3": _hf("qwen3", "Qwen3RMSNorm", _llama_forward),
    "phi3": _hf("phi3", "Phi3RMSNorm", _llama_forward),
    "gemma": _hf("gemma", "GemmaRMSNorm", _gemma_forward),
    "gemma2": _hf("gemma2", "Gemma2RMSNorm", _gemma_forward),
    "gemma3": _hf("gemma3", "Gemma3RMSNorm", _gemma_forward),
    "layer_norm": Family(nn.LayerNorm.__module__, "LayerNorm", _layer_norm_forward),
}


def _select(families: Iterable[str] | None) -> list[Family]:
    if families is None:
        return list(FAMILIES.values())
    names = [families] if isinstance(families, str) else list(families)
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise ValueError(
            f"patch_transformers: unknown families {unknown}; known: {sorted(FAMILIES)}"
        )
    return [FAMILIES[n] for n in names]


def _load_class(family: Family) -> type | None:
    """The family's class, or None when that transformers module is not installed."""
    try:
        return getattr(importlib.import_module(family.module), family.cls_name)
    except (ImportError, AttributeError) as e:
        log.info("tilenorm: skipping %s.%s (%s)", family.module, family.cls_name, e)
        return None


# ------------------------------------------------------------------- patches and undo


@dataclass
class _Patch:
    target: weakref.ref  # the class or module instance whose __dict__ got `forward`
    previous: object  # what __dict__["forward"] held before, or _MISSING
    installed: Callable  # what we put there (undo only if it is still there)


_patches: list[_Patch] = []


def _is_ours(forward: object) -> bool:
    return hasattr(forward, _MARK)


def _install(target: object, installed: Callable) -> None:
    previous = target.__dict__.get("forward", _MISSING)
    setattr(target, "forward", installed)
    _patches.append(_Patch(weakref.ref(target), previous, installed))


def _patch_classes(families: list[Family]) -> list[str]:
    patched = []
    for family in families:
        cls = _load_class(family)
        if cls is None or _is_ours(cls.__dict__.get("forward")):
            continue
        _install(cls, family.make_forward(cls.forward))
        patched.append(f"{cls.__module__}.{cls.__qualname__}")
    return patched


def _patch_instances(model: nn.Module, families: list[Family]) -> list[str]:
    by_class = {(f.module, f.cls_name): f for f in families}
    patched = []
    for name, module in model.named_modules():
        family = by_class.get((type(module).__module__, type(module).__qualname__))
        if family is None:
            continue
        own = module.__dict__.get("forward", _MISSING)
        if own is not _MISSING:
            if not _is_ours(own):
                # Someone else's wrapper (an accelerate hook, say): replacing it would
                # silently drop it, so this module keeps it and its original math.
                warnings.warn(
                    f"patch_transformers: {name or type(module).__name__} already has its "
                    "own forward (a hook?); left unpatched. Patch before adding hooks, "
                    "or patch by class before building the model.",
                    stacklevel=3,
                )
            continue
        forward = family.make_forward(type(module).forward)
        _install(module, types.MethodType(forward, module))
        patched.append(name)
    return patched


def patch_transformers(
    model: nn.Module | None = None, *, families: Iterable[str] | None = None
) -> list[str]:
    """Make Hugging Face norm layers run tilenorm; see the module docstring's table.

    ``model=None`` patches the classes (every instance, now and later); a model patches
    only that model's norm modules. ``families`` picks names from ``FAMILIES`` (default:
    all). Patching twice is a no-op. Returns what was patched: qualified class names,
    or the module names inside ``model``.
    """
    chosen = _select(families)
    if model is None:
        return _patch_classes(chosen)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"patch_transformers: model must be a torch.nn.Module or None, "
            f"got {type(model).__name__}"
        )
    return _patch_instances(model, chosen)


def unpatch_transformers() -> int:
    """Undo every patch, newest first, restoring the exact objects that were there.

    A ``forward`` that something else replaced after us is left alone (with a warning);
    models that no longer exist are skipped. Returns how many patches were undone.
    """
    undone = 0
    while _patches:
        patch = _patches.pop()
        target = patch.target()
        if target is None:
            continue
        if target.__dict__.get("forward") is not patch.installed:
            what = target.__qualname__ if isinstance(target, type) else type(target).__name__
            warnings.warn(
                f"unpatch_transformers: the forward of {what} was "
                "replaced after tilenorm patched it; left as it is now",
                stacklevel=2,
            )
            continue
        if patch.previous is _MISSING:
            delattr(target, "forward")
        else:
            setattr(target, "forward", patch.previous)
        undone += 1
    return undone
