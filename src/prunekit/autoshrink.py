"""``prunekit.shrink(model, example_inputs)``: remove the zeroed units of any model.

A unit (Linear row, conv filter, ``Conv1D`` column) is *dead* when its weights and bias
are exactly zero (BatchNorm after it: zero response too, see ``surgery.shrink``).
Removing dead units changes no output when every operation between the unit and its
consumers maps 0 to 0. Three backends, tried in this order by ``backend="auto"``:

``prunekit``
    the project's surgery (``prunekit.surgery``): torch.fx dependency groups with
    residual ties, BatchNorm followers, flatten fan-out; GroupNorm/LayerNorm keep the
    units they normalize. It refuses, naming the module path, what it cannot follow.
``hf-mlp``
    Hugging Face transformer blocks (fx cannot trace them): the hidden units of each
    MLP, ``c_fc -> act -> c_proj`` (GPT-2, ``Conv1D``) or ``intermediate.dense -> act
    -> output.dense`` (BERT, RoBERTa), where ``act(0) = 0``; see ``MLP_PAIRS``. And
    attention heads (GPT-2 ``GPT2Attention``, BERT/RoBERTa ``*Attention``) whose value
    projection (weights and bias) or whose rows of the output projection are all zero:
    such a head adds exactly nothing to the block's output, whatever its attention
    weights, so its query/key/value columns and output-projection rows go.
``torch-pruning``
    Torch-Pruning's dependency graph (extra ``peers``), for models fx cannot trace:
    each layer's dead units are removed with the group the graph couples to them, one
    layer at a time on a copy, kept only when the outputs stay equal.

Every backend's result is checked: the shrunk model's outputs on ``example_inputs``
must equal the masked model's within ``atol * max(1, max|y|)`` (default ``1e-5``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .evaluation.cost import eval_mode, param_counts
from .pruning.dependency import UnsupportedModel
from .pruning.masks import clone, finalize, is_prunable, out_in, unit_dim
from .registry import PrunekitError

#: Hugging Face block class name -> (producer path, consumer path) of its MLP.
MLP_PAIRS: dict[str, tuple[str, str]] = {
    "GPT2MLP": ("c_fc", "c_proj"),
    "BertLayer": ("intermediate.dense", "output.dense"),
    "RobertaLayer": ("intermediate.dense", "output.dense"),
}
BACKENDS = ("auto", "prunekit", "hf-mlp", "torch-pruning")


def call(model: nn.Module, example_inputs: Any) -> Any:
    """``model(x)``, ``model(*tuple)`` or ``model(**dict)``."""
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, tuple | list):
        return model(*example_inputs)
    return model(example_inputs)


def tensors_of(out: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (tensor, tuple, dict, transformers ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in tensors_of(v)]
    if isinstance(out, tuple | list):
        return [t for v in out for t in tensors_of(v)]
    return []


@torch.no_grad()
def outputs(model: nn.Module, example_inputs: Any) -> list[torch.Tensor]:
    with eval_mode(model):
        return [t.detach().clone() for t in tensors_of(call(model, example_inputs))]


def max_diff(ref: list[torch.Tensor], out: list[torch.Tensor]) -> float:
    """Largest ``|ref - out| / max(1, max|ref|)``; inf when shapes differ."""
    if len(ref) != len(out):
        return float("inf")
    worst = 0.0
    for a, b in zip(ref, out, strict=True):
        if a.shape != b.shape:
            return float("inf")
        if a.numel():
            scale = max(1.0, float(a.abs().max()))
            worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


def dead_units(m: nn.Module) -> torch.Tensor:
    """Indices of the output units of a prunable layer whose weights and bias are 0."""
    w = out_in(m, m.weight.detach())
    dead = w.reshape(w.shape[0], -1).eq(0).all(1)
    bias = getattr(m, "bias", None)
    if isinstance(bias, torch.Tensor):
        dead &= bias.detach().eq(0)
    return torch.nonzero(dead).flatten()


# -- backends ------------------------------------------------------------------------------
def _prunekit(model: nn.Module, example_inputs: Any, round_to: int) -> nn.Module:
    from .surgery.shrink import shrink as surgery_shrink

    if not isinstance(example_inputs, torch.Tensor):
        raise UnsupportedModel("the prunekit surgery takes a single input tensor")
    small, _ = surgery_shrink(model, example_inputs, round_to=round_to, check=False)
    return small


def _slice(m: nn.Module, dim: int, keep: torch.Tensor, *, bias: bool) -> None:
    m.weight = nn.Parameter(m.weight.detach().index_select(dim, keep).clone())
    if bias and isinstance(getattr(m, "bias", None), torch.Tensor):
        m.bias = nn.Parameter(m.bias.detach().index_select(0, keep).clone())


@torch.no_grad()
def _hf_mlp(model: nn.Module, example_inputs: Any, round_to: int) -> nn.Module:
    small = finalize(clone(model))
    pairs = [
        (name, m, MLP_PAIRS[type(m).__name__])
        for name, m in small.named_modules()
        if type(m).__name__ in MLP_PAIRS
    ]
    heads = [(n, m) for n, m in small.named_modules() if type(m).__name__ in HEAD_RULES]
    if not pairs and not heads:
        raise UnsupportedModel(f"{type(model).__name__} has no known transformer block")
    for name, attn in heads:
        HEAD_RULES[type(attn).__name__](name, attn)
    for name, block, (p_path, c_path) in pairs:
        producer, consumer = block.get_submodule(p_path), block.get_submodule(c_path)
        n = int(out_in(producer, producer.weight).shape[0])
        alive = torch.ones(n, dtype=torch.bool)
        alive[dead_units(producer)] = False
        if not alive.any():
            raise PrunekitError(f"every hidden unit of {name}.{p_path!r} is zero; one must stay")
        keep = _keep(alive, round_to)
        if keep.numel() == n:
            continue
        _slice(producer, unit_dim(producer), keep, bias=True)
        _slice(consumer, 1 - unit_dim(consumer), keep, bias=False)
        for m in (producer, consumer):
            _fix_sizes(m)
    return small


def _dead_heads(v_w: torch.Tensor, v_b: torch.Tensor | None, o_w: torch.Tensor, n: int):
    """Heads whose value rows (``v_w``: (out, in) view) and bias, or whose output
    projection columns (``o_w``: (out, in) view), are all zero; a bool per head."""
    v = v_w.reshape(n, -1).eq(0).all(1)
    if v_b is not None:
        v &= v_b.reshape(n, -1).eq(0).all(1)
    o = o_w.t().reshape(n, -1).eq(0).all(1)
    return v | o


def _head_index(keep: torch.Tensor, head_dim: int, offset: int = 0) -> torch.Tensor:
    return (keep[:, None] * head_dim + torch.arange(head_dim) + offset).flatten()


@torch.no_grad()
def _gpt2_heads(name: str, attn: nn.Module) -> None:
    """GPT-2: ``c_attn`` = [q | k | v] columns (Conv1D), ``c_proj`` rows = head inputs."""
    if getattr(attn, "is_cross_attention", False):
        return
    n, d, e = attn.num_heads, attn.head_dim, attn.split_size
    w, b = attn.c_attn.weight, attn.c_attn.bias
    dead = _dead_heads(w[:, 2 * e :].t(), b[2 * e :], attn.c_proj.weight.t(), n)
    if not dead.any() or dead.all():
        return
    keep = torch.nonzero(~dead).flatten()
    cols = torch.cat([_head_index(keep, d, k * e) for k in range(3)])
    _slice(attn.c_attn, 1, cols, bias=True)
    _slice(attn.c_proj, 0, _head_index(keep, d), bias=False)
    _fix_sizes(attn.c_attn)
    _fix_sizes(attn.c_proj)
    attn.num_heads = int(keep.numel())
    attn.split_size = attn.num_heads * d


@torch.no_grad()
def _bert_heads(name: str, attn: nn.Module) -> None:
    """BERT/RoBERTa ``*Attention``: ``self.{query,key,value}`` rows, ``output.dense``
    columns."""
    s, o = attn.self, attn.output.dense
    n, d = s.num_attention_heads, s.attention_head_size
    dead = _dead_heads(s.value.weight, s.value.bias, o.weight, n)
    if not dead.any() or dead.all():
        return
    idx = _head_index(torch.nonzero(~dead).flatten(), d)
    for lin in (s.query, s.key, s.value):
        _slice(lin, 0, idx, bias=True)
        _fix_sizes(lin)
    _slice(o, 1, idx, bias=False)
    _fix_sizes(o)
    s.num_attention_heads = int((~dead).sum())
    s.all_head_size = s.num_attention_heads * d


#: Hugging Face attention class name -> the function removing its dead heads in place.
HEAD_RULES: dict[str, Callable[[str, nn.Module], None]] = {
    "GPT2Attention": _gpt2_heads,
    "BertAttention": _bert_heads,
    "RobertaAttention": _bert_heads,
}


def _keep(alive: torch.Tensor, round_to: int) -> torch.Tensor:
    from .surgery.shrink import keep_plan

    idx = keep_plan(alive, round_to)
    if (idx < 0).any():  # no new zero units here: keep dead ones instead
        idx = torch.arange(min(alive.numel(), idx.numel()))
    return idx


def _fix_sizes(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        m.out_features, m.in_features = m.weight.shape
    elif unit_dim(m) == 1:
        m.nx, m.nf = m.weight.shape


def _torch_pruning(model: nn.Module, example_inputs: Any, round_to: int) -> nn.Module:
    from ._optional import import_torch_pruning

    tp = import_torch_pruning("shrink's torch-pruning backend")
    ref = outputs(model, example_inputs)
    current = finalize(clone(model))
    names = [n for n, m in current.named_modules() if is_prunable(m) and unit_dim(m) == 0]
    for name in names:
        m = current.get_submodule(name)
        dead = dead_units(m)
        if dead.numel() == 0 or dead.numel() == m.weight.shape[0]:
            continue
        trial = clone(current)
        layer = trial.get_submodule(name)
        fn = tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else None
        fn = fn or tp.prune_conv_out_channels
        try:
            with eval_mode(trial):
                graph = tp.DependencyGraph().build_dependency(
                    trial, example_inputs=example_inputs, output_transform=_first_tensor
                )
            group = graph.get_pruning_group(layer, fn, idxs=dead.tolist())
            if not graph.check_pruning_group(group):
                continue
            group.prune()
            if max_diff(ref, outputs(trial, example_inputs)) <= 1e-5:
                current = trial
        except Exception:  # noqa: BLE001 - a group Torch-Pruning cannot cut stays whole
            continue
    return current


def _first_tensor(out: Any) -> torch.Tensor:
    found = tensors_of(out)
    if not found:
        raise UnsupportedModel("the model's output holds no tensor")
    return found[0]


_BACKENDS: dict[str, Callable[[nn.Module, Any, int], nn.Module]] = {
    "prunekit": _prunekit,
    "hf-mlp": _hf_mlp,
    "torch-pruning": _torch_pruning,
}


def shrink(
    model: nn.Module,
    example_inputs: Any,
    *,
    backend: str = "auto",
    atol: float = 1e-5,
    round_to: int = 1,
) -> nn.Module:
    """A physically smaller copy of ``model`` without its dead units (``model`` is not
    changed; masks are baked into the copy). ``example_inputs``: a tensor, a tuple of
    positional inputs or a dict of keyword inputs (token ids for language models).

    The copy's ``prunekit_shrink`` attribute says which backend ran and the parameter
    counts before and after. Raises :class:`PrunekitError` naming the module path when
    no backend can follow the model, or when the outputs change by more than ``atol``.
    """
    if backend not in BACKENDS:
        raise PrunekitError(f"unknown shrink backend {backend!r}; known: {', '.join(BACKENDS)}")
    ref = outputs(model, example_inputs)
    if not ref:
        raise PrunekitError(f"{type(model).__name__}'s output holds no tensor to check")
    order = ["prunekit", "hf-mlp", "torch-pruning"] if backend == "auto" else [backend]
    refusals = []
    for name in order:
        try:
            small = _BACKENDS[name](model, example_inputs, round_to)
        except UnsupportedModel as e:
            refusals.append(f"{name}: {e}")
            continue
        except PrunekitError:
            raise
        except Exception as e:  # noqa: BLE001 - a third-party tracer failing = cannot follow
            refusals.append(f"{name}: {type(e).__name__}: {e}")
            continue
        diff = max_diff(ref, outputs(small, example_inputs))
        if diff > atol:
            raise PrunekitError(
                f"shrink backend {name!r} changed the outputs by {diff:.3g} (> {atol:g}, "
                "relative to max(1, |y|)); the model uses an operation it does not model"
            )
        small.prunekit_shrink = {  # type: ignore[assignment]
            "backend": name,
            "params_before": param_counts(model)[0],
            "params_after": param_counts(small)[0],
        }
        return small.train(model.training)
    raise PrunekitError(
        f"cannot shrink {type(model).__name__}: " + "; ".join(r.splitlines()[0] for r in refusals)
    )
