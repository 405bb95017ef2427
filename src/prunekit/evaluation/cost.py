"""Parameters, sparsity, MACs and bytes: every cost figure prunekit reports.

All figures are computed from the *effective* weights. A parameter pruned in the
``torch.nn.utils.prune`` convention is stored as ``<name>_orig`` (Parameter) plus
``<name>_mask`` (buffer); its effective value is ``<name>_orig * <name>_mask``. The
plain ``module.<name>`` attribute is only refreshed by a forward pre-hook and may be
stale, so it is never read here.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from ..pruning.masks import original, out_in, transposed_types
from ..registry import PrunekitError

#: Layers whose weights are "prunable": counted by sparsity, MACs and ``layers``;
#: transformers' ``Conv1D`` (a Linear with a transposed weight) too, when loaded. A
#: Conv3d counts (dense: prunekit does not mask it) so that sparsity is over every
#: Linear/Conv weight of the model; this module is the one definition of sparsity
#: (``prunekit.sparsity`` is :func:`achieved_sparsity`).
MEASURED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _effective(module: nn.Module, name: str) -> Tensor | None:
    """Effective value of ``module.<name>`` (mask applied), detached; ``None`` if absent."""
    orig, mask = module._parameters.get(name + "_orig"), module._buffers.get(name + "_mask")
    if orig is not None and mask is not None:
        return (orig * mask).detach()
    param = module._parameters.get(name)
    return None if param is None else param.detach()


def _own(module: nn.Module) -> Iterator[tuple[str, Tensor, Tensor | None]]:
    """The module's own entries as ``(public_name, effective, parameter_or_None)``:
    parameters with masks folded in, then persistent non-mask buffers."""
    masked = {
        n[:-5]
        for n in module._parameters
        if n.endswith("_orig") and n[:-5] + "_mask" in module._buffers
    }
    for n, p in module._parameters.items():
        if p is not None:
            public = n[:-5] if n.endswith("_orig") and n[:-5] in masked else n
            yield public, _effective(module, public), p
    for n, b in module._buffers.items():
        skip = n in module._non_persistent_buffers_set or (n.endswith("_mask") and n[:-5] in masked)
        if b is not None and not skip:
            yield n, b.detach(), None


def effective_tensors(model: nn.Module) -> dict[str, Tensor]:
    """Everything that is saved to safetensors: every parameter under its public name
    (``fc1.weight``, never ``fc1.weight_orig``) with its mask applied, plus every
    persistent buffer that is not a mask (BN running stats, normalisation constants).

    The keys match ``state_dict()`` of the same model with the masks removed, so the
    dict loads with ``strict=True`` into an unmasked copy. Tensors that would share
    storage (tied weights) are cloned so the dict can be serialised.
    """
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name, t, _ in _own(module):
            ptr = t.untyped_storage().data_ptr()
            t = t.clone() if ptr in seen else t
            seen.add(ptr)
            out[f"{prefix}.{name}" if prefix else name] = t.contiguous()
    return out


def param_counts(model: nn.Module) -> tuple[int, int]:
    """``(total, nonzero)`` over all effective parameters (weights, biases, BN affine);
    buffers are not parameters and are not counted. Tied parameters count once."""
    total = nonzero = 0
    seen: set[int] = set()
    for module in model.modules():
        for _, t, param in _own(module):
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                total += t.numel()
                nonzero += int(torch.count_nonzero(t))
    return total, nonzero


def _measured(model: nn.Module) -> Iterator[tuple[str, nn.Module, Tensor]]:
    types = MEASURED_TYPES + transposed_types()
    for name, module in model.named_modules():
        if isinstance(module, types):
            # (out, in, *k) view, so that dim 0 is the output units for every layer type
            yield name, module, out_in(module, _effective(module, "weight"))


def _fraction_zero(n: int, nonzero: int) -> float:
    """``1 - nonzero / n``; 0.0 when nothing is counted (an empty layer or model)."""
    return 1.0 - nonzero / n if n else 0.0


def weight_sparsity(module: nn.Module) -> float:
    """Fraction of exactly-zero entries of one layer's effective ``weight`` (0.0 if empty)."""
    w = _effective(module, "weight")
    return _fraction_zero(w.numel(), int(torch.count_nonzero(w)))


def _counted(model: nn.Module) -> Iterator[Tensor]:
    """The weights :func:`achieved_sparsity` counts: every measured layer's, a tensor
    shared by several layers once, and not a tensor also held by a module that is not a
    measured layer (a language model's output layer tied to its token embedding: an
    embedding, which prunekit never prunes)."""
    types = MEASURED_TYPES + transposed_types()
    held = {
        id(p)
        for m in model.modules()
        if not isinstance(m, types)
        for p in m._parameters.values()
        if p is not None
    }
    seen: set[int] = set()
    for _, module, w in _measured(model):
        key = id(original(module))
        if key not in held and key not in seen:
            seen.add(key)
            yield w


def layer_sparsity(model: nn.Module) -> dict[str, dict]:
    """Per Linear/Conv layer (keyed by module name), for its effective ``weight``:

    ``params`` (n), ``nonzero`` (k), ``sparsity`` = 1 - k/n, ``units`` = output
    features/channels, ``units_alive`` = output units with at least one nonzero weight
    (a unit whose weights are all zero can be removed structurally; its bias is ignored).
    """
    layers: dict[str, dict] = {}
    for name, _, w in _measured(model):
        n, k = w.numel(), int(torch.count_nonzero(w))
        alive = int(w.reshape(w.shape[0], -1).ne(0).any(dim=1).sum()) if n else 0
        layers[name] = {
            "params": n,
            "nonzero": k,
            "sparsity": _fraction_zero(n, k),
            "units": int(w.shape[0]),
            "units_alive": alive,
        }
    return layers


def achieved_sparsity(model: nn.Module, scope: str = "prunable") -> float:
    """Fraction of exactly-zero effective weights (``prunekit.sparsity``).

    ``scope="prunable"``: over the ``weight`` of Linear/Conv layers only (Conv1d/2d/3d,
    transformers' ``Conv1D``), a tensor shared by several layers counted once, a tensor
    also held by a module that is not such a layer (an output layer tied to the token
    embedding) not counted; biases, BatchNorm/LayerNorm parameters and buffers are not
    counted. ``scope="all"``: over all effective parameters (as in
    :func:`param_counts`). 0.0 when nothing is counted (a model without such layers).
    """
    if scope == "prunable":
        total = nonzero = 0
        for w in _counted(model):
            total += w.numel()
            nonzero += int(torch.count_nonzero(w))
    elif scope == "all":
        total, nonzero = param_counts(model)
    else:
        raise PrunekitError(f"unknown sparsity scope {scope!r}; known: all, prunable")
    return _fraction_zero(total, nonzero)


def sparsity_against(layers: dict[str, dict], dense_layers: dict[str, dict]) -> float:
    """Sparsity of a physically smaller model against its dense original, from two
    :func:`layer_sparsity` tables: ``1 - (nonzero weights kept) / (dense weights)``
    (a removed unit's weights count as zeros). 0.0 when the dense model has none."""
    dense_weights = sum(layer["params"] for layer in dense_layers.values())
    kept = sum(layer["nonzero"] for layer in layers.values())
    return _fraction_zero(dense_weights, kept)


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """``eval()`` the models, then restore every submodule's own training flag."""
    flags = [(m, m.training) for model in models for m in model.modules()]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise PrunekitError(f"input shape must be positive integers, got {input_shape!r}")
    return shape


def _example(model: nn.Module, shape: tuple[int, ...], batch: int) -> Tensor:
    """Deterministic random input of ``(batch, *shape)`` on the model's device/dtype."""
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    return torch.randn((batch, *shape), generator=gen).to(device=device, dtype=dtype)


def _sdpa_cpu_flops(query, key, value, *_args, out_shape=None, **_kwargs) -> int:
    """FLOPs of CPU scaled-dot-product attention (shapes in, as FlopCounterMode passes
    them), which torch's counter does not know: ``Q K^T`` and ``A V`` over the full
    ``T x S`` score matrix (as the eager kernels compute it), 2 FLOPs per MAC."""
    *lead, t, d = query
    s, dv = key[-2], value[-1]
    n = 1
    for x in lead:
        n *= x
    return 2 * n * t * s * d + 2 * n * t * s * dv


def _flop_mapping() -> dict:
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _sdpa_cpu_flops} if op is not None else {}


def macs(
    model: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_inputs: Tensor | tuple | None = None,
) -> tuple[int, int]:
    """``(dense, effective)`` multiply-accumulates of one forward, measured on a real
    forward pass, so any architecture (residual, shared layers called twice) is followed
    as it runs. The input is ONE sample of shape ``input_shape`` (e.g. ``(C, H, W)``,
    random floats), or ``example_inputs`` as given (token ids for a language model: then
    the figures are for that batch and sequence length).

    - dense: every multiply-accumulate of a matrix product or convolution, from torch's
      ``FlopCounterMode`` (FLOPs / 2): the Linear/Conv/``Conv1D`` layers and what no layer
      holds, such as attention's ``Q K^T`` and ``A V`` products.
    - effective: the same, with each prunable layer counting only its nonzero weights
      (forward hooks): Conv: prod(out spatial) * nnz(weight); Linear: nnz(weight) *
      leading dims. Attention products have no weights and stay dense.
    - BatchNorm, pooling, activations, additions, biases: counted as 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if example_inputs is None:
        if input_shape is None:
            raise PrunekitError("macs needs input_shape or example_inputs")
        inputs: tuple = (_example(model, _check_shape(input_shape), 1),)
    else:
        inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    counts = [0, 0]

    def hook(module: nn.Module, _inp: tuple, out: Tensor) -> None:
        w = out_in(module, _effective(module, "weight"))
        per_unit = out.numel() // w.shape[0]  # output positions per unit (whole batch)
        counts[0] += per_unit * w.numel()
        counts[1] += per_unit * int(torch.count_nonzero(w))

    handles = [m.register_forward_hook(hook) for _, m, _ in _measured(model)]
    try:
        with (
            eval_mode(model),
            torch.no_grad(),
            FlopCounterMode(display=False, custom_mapping=_flop_mapping()) as counter,
        ):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    total = int(counter.get_total_flops()) // 2
    if total < counts[0]:  # an op the counter does not know: the layers' count stands
        return counts[0], counts[1]
    return total, total - counts[0] + counts[1]


def size_bytes(model: nn.Module) -> dict[str, int]:
    """Serialised size in bytes of :func:`effective_tensors`: ``raw`` = safetensors
    bytes, ``gzip`` = those bytes gzip-compressed at level 9 (pruned zeros compress)."""
    raw = safetensors_save({k: v.cpu() for k, v in effective_tensors(model).items()})
    return {"raw": len(raw), "gzip": len(gzip.compress(raw, compresslevel=9, mtime=0))}


def summary(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """All cost figures in one dict (keys as in result.json)."""
    total, nonzero = param_counts(model)
    dense, effective = macs(model, input_shape)
    size = size_bytes(model)
    return {
        "params_total": total,
        "params_nonzero": nonzero,
        "achieved_sparsity": achieved_sparsity(model),
        "macs_dense": dense,
        "macs_effective": effective,
        "size_bytes": size["raw"],
        "size_bytes_gzip": size["gzip"],
        "layers": layer_sparsity(model),
    }
