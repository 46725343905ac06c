"""patch_transformers / unpatch_transformers on tiny randomly initialised HF models.

Routing is checked on the autograd graph: every call that goes through tilenorm leaves
one ``NormFunctionBackward`` node, so a patched model must show exactly one per norm
module and an unpatched one none. Numerics are compared with the HF forward itself
(fp32 models; per-module checks in half precision, where the casting order shows).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from kernels import rms_norm
from kernels.patching import FAMILIES, Family, patch_transformers, unpatch_transformers

transformers = pytest.importorskip("transformers")

_DECODER = dict(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
    pad_token_id=0, bos_token_id=1, eos_token_id=2,
)  # fmt: skip
_GPT2 = dict(
    vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=1,
    eos_token_id=2,
)  # fmt: skip
MODELS = {  # patching family -> (HF model_type, tiny config)
    "llama": ("llama", _DECODER),
    "mistral": ("mistral", _DECODER),
    "qwen2": ("qwen2", _DECODER),
    "qwen3": ("qwen3", _DECODER),
    "phi3": ("phi3", _DECODER),
    "gemma": ("gemma", _DECODER),
    "gemma2": ("gemma2", _DECODER),
    "gemma3": ("gemma3_text", _DECODER),
    "layer_norm": ("gpt2", _GPT2),
}


@pytest.fixture(autouse=True)
def _clean_patches():
    """No test leaks a patch into the next one, whatever it asserts."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unpatch_transformers()


# ---------------------------------------------------------------------------- helpers


def _tiny_model(family: str, seed: int = 0) -> nn.Module:
    """A 2-layer random model whose norm weights (and biases) are random too.

    Random norm parameters make the weight and Gemma's ``1 + w`` matter: with HF's
    initial values (ones, or zeros for Gemma) a wrong offset or a dropped weight
    could go unnoticed.
    """
    model_type, kwargs = MODELS[family]
    try:
        config = transformers.AutoConfig.for_model(model_type, **kwargs)
    except (KeyError, ValueError):
        pytest.skip(f"{model_type} is not in transformers {transformers.__version__}")
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()  # no dropout: runs must be repeatable (gradients still flow)
    with torch.no_grad():
        for module in _norm_modules(model, family).values():
            for p in module.parameters(recurse=False):
                p.normal_(0.0, 0.5)
    return model


def _norm_modules(model: nn.Module, family: str) -> dict[str, nn.Module]:
    fam = FAMILIES[family]
    return {
        name: m
        for name, m in model.named_modules()
        if (type(m).__module__, type(m).__qualname__) == (fam.module, fam.cls_name)
    }


def _tilenorm_nodes(out: torch.Tensor) -> int:
    """How many tilenorm autograd nodes the graph behind ``out`` holds."""
    seen, stack, count = set(), [out.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count += type(node).__name__ == "NormFunctionBackward"
        stack.extend(nxt for nxt, _ in node.next_functions)
    return count


def _run(model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """(logits, parameter grads, tilenorm nodes) of one forward+backward."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128, (2, 8), generator=gen)
    model.zero_grad(set_to_none=True)
    logits = model(ids).logits
    nodes = _tilenorm_nodes(logits)
    (logits * torch.randn(logits.shape, generator=gen)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads, nodes


def _assert_near(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """Max error within 1e-5 of the tensor's scale: fp32 rounding through two layers,
    measured against the largest value, since gradients have near-cancelled entries."""
    err = (got - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= 1e-5 * scale + 1e-7, f"{what}: max error {err:.3g}, scale {scale:.3g}"


def _assert_matches(got, ref) -> None:  # noqa: ANN001
    _assert_near(got[0], ref[0], "logits")
    assert got[1].keys() == ref[1].keys()
    for name in ref[1]:
        _assert_near(got[1][name], ref[1][name], f"grad of {name}")


def _assert_identical(got, ref) -> None:  # noqa: ANN001
    assert torch.equal(got[0], ref[0])
    assert all(torch.equal(got[1][n], ref[1][n]) for n in ref[1])


def _instance_state(model: nn.Module) -> dict[str, dict]:
    return {name: dict(m.__dict__) for name, m in model.named_modules()}


def _assert_same_state(now: dict[str, dict], before: dict[str, dict]) -> None:
    assert now.keys() == before.keys()
    for name, attrs in before.items():
        assert now[name].keys() == attrs.keys(), name
        assert all(now[name][k] is v for k, v in attrs.items()), name


# ------------------------------------------------------------------- whole models


@pytest.mark.parametrize("family", list(MODELS))
def test_patch_by_class(family: str) -> None:
    model = _tiny_model(family)
    n_norms = len(_norm_modules(model, family))
    cls = type(next(iter(_norm_modules(model, family).values())))
    original_forward = cls.__dict__["forward"]
    keys = list(model.state_dict())
    ref = _run(model)
    assert n_norms > 0 and ref[2] == 0

    assert patch_transformers(families=[family]) == [f"{cls.__module__}.{cls.__qualname__}"]
    assert cls.__dict__["forward"] is not original_forward
    got = _run(model)  # built before the patch: the class's forward is what changed
    _assert_matches(got, ref)
    assert got[2] == n_norms
    later = _run(_tiny_model(family))  # built after the patch, same seed and weights
    _assert_matches(later, ref)
    assert later[2] == n_norms
    assert list(model.state_dict()) == keys

    assert unpatch_transformers() == 1
    assert cls.__dict__["forward"] is original_forward
    again = _run(model)
    _assert_identical(again, ref)
    assert again[2] == 0


@pytest.mark.parametrize("family", list(MODELS))
def test_patch_in_place(family: str) -> None:
    model, other = _tiny_model(family), _tiny_model(family)
    norms = _norm_modules(model, family)
    cls = type(next(iter(norms.values())))
    class_forward = cls.__dict__["forward"]
    keys = list(model.state_dict())
    ref = _run(model)
    state = _instance_state(model)

    assert sorted(patch_transformers(model)) == sorted(norms)  # every family, by default
    assert all("forward" in m.__dict__ for m in norms.values())
    assert cls.__dict__["forward"] is class_forward  # the class is untouched
    got = _run(model)
    _assert_matches(got, ref)
    assert got[2] == len(norms)
    assert _run(other)[2] == 0  # only the model that was patched
    assert list(model.state_dict()) == keys
    other.load_state_dict(model.state_dict())  # checkpoints cross both ways
    model.load_state_dict(other.state_dict())

    assert unpatch_transformers() == len(norms)
    _assert_same_state(_instance_state(model), state)
    again = _run(model)
    _assert_identical(again, ref)
    assert again[2] == 0


# --------------------------------------------------------------- one module, dtypes

_HALF_CASES = [
    (torch.bfloat16, torch.bfloat16),
    (torch.float16, torch.float16),
    (torch.bfloat16, torch.float32),  # fp32 weights, bf16 activations (autocast)
    (torch.float16, torch.bfloat16),
]


def _rms_classes():
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    return {"llama": LlamaRMSNorm, "gemma": GemmaRMSNorm}


@pytest.mark.parametrize("kind", ["llama", "gemma"])
@pytest.mark.parametrize(("x_dtype", "w_dtype"), _HALF_CASES)
def test_half_precision_matches_hf(kind: str, x_dtype, w_dtype) -> None:  # noqa: ANN001
    """Same dtype as HF (Llama: the promotion of x and w), and the same roundings.

    Half precision tells the casting orders apart: the other family's casting changes
    about a quarter of the outputs, so the 1% bound below would catch a swap.
    """
    torch.manual_seed(0)
    module = _rms_classes()[kind](256).to(w_dtype)
    with torch.no_grad():
        module.weight.normal_()
    x = (3 * torch.randn(64, 256)).to(x_dtype)
    ref = module(x)
    patch_transformers(module)
    got = module(x)

    offset, other_casting = (1.0, "llama") if kind == "gemma" else (0.0, "gemma")
    wrong = rms_norm(x, module.weight, 1e-6, offset=offset, casting=other_casting)

    def mismatched(t: torch.Tensor) -> float:
        return (t.float() != ref.float()).float().mean().item()

    assert got.dtype == ref.dtype
    assert mismatched(got) < 0.01
    # The rare mismatches are one rounding of the normalized value (in x's dtype) apart.
    ulp = torch.finfo(x_dtype).eps * ref.float().abs().max().item()
    assert (got.float() - ref.float()).abs().max().item() <= ulp
    assert mismatched(wrong.to(ref.dtype)) > 0.1


def test_wider_weight_gradients_match_hf() -> None:
    """bf16 input, fp32 weight: the path that keeps the weight multiply in torch."""
    module = _rms_classes()["llama"](64)
    with torch.no_grad():
        module.weight.normal_()
    x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn(4, 64)

    def grads() -> tuple[torch.Tensor, ...]:
        out = module(x)
        dx, dw = torch.autograd.grad(out, (x, module.weight), dy)
        return out, dx, dw

    ref = grads()
    patch_transformers(module)
    got = grads()
    assert _tilenorm_nodes(got[0]) == 1
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype
        torch.testing.assert_close(g, r)


def test_inputs_tilenorm_does_not_take_use_the_original() -> None:
    module = _rms_classes()["llama"](32).double()
    x = torch.randn(3, 32, dtype=torch.float64, requires_grad=True)
    ref = module(x)
    patch_transformers(module)
    got = module(x)
    assert torch.equal(got, ref) and _tilenorm_nodes(got) == 0


def test_layer_norm_variants() -> None:
    """Multi-dim normalized_shape, no affine, no bias; torch's own error on bad shapes."""
    layers = nn.ModuleList([
        nn.LayerNorm((4, 8)),
        nn.LayerNorm(8, elementwise_affine=False),
        nn.LayerNorm(8, bias=False),
    ])  # fmt: skip
    with torch.no_grad():
        for p in layers.parameters():
            p.normal_()
    x = torch.randn(2, 3, 4, 8)
    refs = [layer(x) for layer in layers]
    assert len(patch_transformers(layers)) == 3
    for layer, ref in zip(layers, refs):
        torch.testing.assert_close(layer(x.requires_grad_()), ref)
        assert _tilenorm_nodes(layer(x)) == 1
    with pytest.raises(RuntimeError, match="normalized_shape"):
        layers[0](torch.randn(2, 8, 4))


@pytest.mark.gpu
def test_layer_norm_under_cuda_autocast_runs_in_fp32() -> None:
    """Autocast's policy runs layer_norm in fp32 on CUDA; the patched forward must too."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    layer = nn.LayerNorm(64).cuda()
    x = torch.randn(8, 64, device="cuda", dtype=torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ref = layer(x)
        patch_transformers(layer)
        got = layer(x)
    assert got.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(got, ref)


# ------------------------------------------------------------------ bookkeeping


def test_by_class_default_covers_every_family_and_restores_each_forward() -> None:
    classes = [getattr(importlib.import_module(f.module), f.cls_name) for f in FAMILIES.values()]
    forwards = [cls.__dict__["forward"] for cls in classes]
    patched = patch_transformers()
    assert len(patched) == len(FAMILIES)  # every family is installed here
    assert all(cls.__dict__["forward"] is not f for cls, f in zip(classes, forwards))
    assert unpatch_transformers() == len(FAMILIES)
    assert all(cls.__dict__["forward"] is f for cls, f in zip(classes, forwards))


def test_patching_twice_is_a_noop_and_unpatch_is_idempotent() -> None:
    assert patch_transformers(families=["llama"]) != []
    assert patch_transformers(families="llama") == []
    module = _rms_classes()["llama"](8)
    assert patch_transformers(module) == [""]
    assert patch_transformers(module) == []
    assert unpatch_transformers() == 2
    assert unpatch_transformers() == 0


def test_module_with_its_own_forward_is_left_alone() -> None:
    """A hook-style instance forward (accelerate's, say) is never silently dropped."""
    module = _rms_classes()["llama"](8)
    hook = module.forward  # what a hooking library stores on the instance
    module.forward = hook
    with pytest.warns(UserWarning, match="own forward"):
        assert patch_transformers(module) == []
    assert module.__dict__["forward"] is hook


def test_unpatch_leaves_a_later_replacement_in_place() -> None:
    cls = _rms_classes()["llama"]
    original = cls.__dict__["forward"]
    patch_transformers(families=["llama"])

    def someone_elses(self, hidden_states):  # noqa: ANN001, ANN202
        return hidden_states

    cls.forward = someone_elses
    try:
        with pytest.warns(UserWarning, match="replaced after"):
            assert unpatch_transformers() == 0
        assert cls.__dict__["forward"] is someone_elses
    finally:
        cls.forward = original


def test_missing_family_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = Family("transformers.models.nope.modeling_nope", "NopeRMSNorm", lambda f: f)
    monkeypatch.setitem(FAMILIES, "nope", gone)
    assert patch_transformers(families=["nope"]) == []
    assert unpatch_transformers() == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown families"):
        patch_transformers(families=["llama", "bogus"])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        patch_transformers(object())


# ----------------------------------------------------- the `kernels` name collision


def test_transformers_does_not_take_tilenorm_for_hub_kernels() -> None:
    """With tilenorm providing `kernels`, transformers' hub-kernels probe says no.

    Run in a fresh interpreter: transformers caches the probe and decides at import.
    The probe must see tilenorm (so "not available" comes from the version window,
    not from `kernels` being absent), and tilenorm must stay importable afterwards.
    """
    code = (
        "import json, transformers\n"
        "from transformers.utils import is_kernels_available\n"
        "from transformers.utils.import_utils import _is_package_available\n"
        "import kernels\n"
        "print(json.dumps({'available': is_kernels_available(),\n"
        "  'seen': _is_package_available('kernels', return_version=True),\n"
        "  'tilenorm': hasattr(kernels, 'rms_norm'), 'version': kernels.__version__}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["available"] is False
    assert result["seen"] == [True, result["version"]]
    assert result["tilenorm"] is True
