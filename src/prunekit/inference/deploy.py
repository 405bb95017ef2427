"""Deploy a (pruned, shrunk) model for CPU inference: exact graph rewrites + a runtime.

``deploy(model, input_shape, runtime=...)`` returns an eval-mode :class:`Deployed`
module whose outputs match the model's (checked, ``atol``) and which runs faster:

1. optionally ``shrink`` (``round_to=k``): remove dead units, widths rounded up to ``k``;
2. ``fold_batchnorm``: ``BN(W x + b)`` becomes one layer (see :mod:`prunekit.surgery.fold`);
3. exact rewrites on the torch.fx graph (:func:`rewrite`):

   - ``maxpool(relu(x)) -> relu(maxpool(x))``: ReLU is monotone non-decreasing, so
     ``max_i relu(x_i) = relu(max_i x_i)`` exactly; ReLU then touches ``k*k`` times
     fewer elements (4x for LeNet-5's 2x2 pools) and the pool reads the conv's output
     directly;
   - ``Normalize`` folded into the first layer: for ``y = W (x - m) / s + b`` (per input
     channel ``m, s``), ``W' = W / s`` and ``b' = b - sum(W * m / s)``, exact when the
     conv pads nothing (a zero pad of the normalized input is *not* a zero pad of ``x``)
     or when ``m = 0``; a ``Flatten -> Linear`` consumer takes the stats broadcast over
     the input shape. One pass over the input fewer (sub, div).

4. a runtime (one for dense and pruned alike, so their comparison stays fair):

   - ``eager``: the rewritten ``fx.GraphModule``;
   - ``jit-freeze``: ``torch.jit.trace`` + ``torch.jit.freeze`` (weights become
     constants, no Python per layer; TorchScript is deprecated since torch 2.9 but
     still works);
   - ``jit``: ``jit-freeze`` + ``torch.jit.optimize_for_inference`` (oneDNN blocked
     layouts kept across convs, ``aten::mkldnn_max_pool2d``);
   - ``compile``: ``torch.compile`` (inductor, ``freezing=True``: weights prepacked for
     oneDNN, pointwise ops fused into C++ loops); compiled here, seconds per model;
   - ``onnxruntime``: exported (TorchScript exporter, batch dynamic) and run in an
     onnxruntime CPU session (needs ``prunekit[onnx]``);
   - ``auto``: builds every available runtime, times each at ``batch_size`` (interleaved
     medians, :func:`prunekit.evaluation.compare_latency`) and keeps the fastest.

Which runtime wins depends on the model, its widths and the batch size (measured in
``benchmarks/results/structured_speedup.md``), hence ``auto``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..evaluation.cost import _check_shape
from ..evaluation.latency import compare_latency
from ..models.common import Normalize
from ..pruning.masks import clone, finalize
from ..registry import PrunekitError

RUNTIMES = ("eager", "jit-freeze", "jit", "compile", "onnxruntime", "auto")

_MAXPOOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_MAXPOOL_FUNCTIONS = (F.max_pool1d, F.max_pool2d, F.max_pool3d)
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)


class Deployed(nn.Module):
    """A deployed model: ``forward(x)`` calls the runtime.

    The runtime object (a frozen ScriptModule, a compiled function, an onnxruntime
    session) is kept out of ``_modules`` so that ``.eval()``, ``.modules()`` and
    ``state_dict()`` see only ``source``, the rewritten eager GraphModule it was built
    from (its weights are the deployed weights; frozen runtimes hold their own copy).
    ``runtime`` names the runtime, ``info`` says what was done.
    """

    def __init__(self, source: nn.Module, fn: Any, runtime: str, info: dict[str, Any]) -> None:
        super().__init__()
        self.source = source
        self.__dict__["_fn"] = fn
        self.runtime = runtime
        self.info = info

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)

    def extra_repr(self) -> str:
        return f"runtime={self.runtime!r}"


class _OrtFunction:
    """An onnxruntime session called like a module: tensor in, tensor out."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], threads: int) -> None:
        from .export import _onnxruntime, onnx_bytes

        ort = _onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        # Spinning ORT threads would keep a core busy after each run and slow down
        # whatever runs next on a shared machine.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            onnx_bytes(model, input_shape), opts, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (y,) = self.session.run(None, {self.input: x.detach().cpu().numpy()})
        return torch.from_numpy(y)


# -- exact rewrites ---------------------------------------------------------------------
def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return len(node.args) == 1 and not node.kwargs.get("inplace", False)
    return False


def _is_maxpool(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return isinstance(m, _MAXPOOL_MODULES) and not m.return_indices
    if node.op == "call_function" and node.target in _MAXPOOL_FUNCTIONS:
        # return_indices is the 7th positional argument of F.max_poolNd
        return not node.kwargs.get("return_indices", False) and not (
            len(node.args) > 6 and node.args[6]
        )
    return False


def _swap_relu_maxpool(gm: fx.GraphModule) -> list[str]:
    swapped = []
    for relu in list(gm.graph.nodes):
        if not _is_relu(gm, relu) or len(relu.users) != 1:
            continue
        (pool,) = relu.users
        if not _is_maxpool(gm, pool) or pool.args[0] is not relu:
            continue
        pool.replace_input_with(relu, relu.args[0])
        with gm.graph.inserting_after(pool):
            new = gm.graph.call_function(torch.relu, (pool,))
        pool.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
        gm.graph.erase_node(relu)
        swapped.append(str(pool.target if pool.op == "call_module" else pool.name))
    return swapped


def _module_calls(gm: fx.GraphModule) -> dict[str, int]:
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    return calls


def _single_module_user(gm: fx.GraphModule, node: fx.Node, calls: dict[str, int]):
    if len(node.users) != 1:
        return None, None
    (user,) = node.users
    if user.op != "call_module" or calls[user.target] != 1 or user.args[0] is not node:
        return None, None
    return user, gm.get_submodule(user.target)


def _fold_normalize(gm: fx.GraphModule, input_shape: tuple[int, ...]) -> list[str]:
    """Fold ``Normalize`` modules applied to the graph input into the layer after them."""
    calls = _module_calls(gm)
    folded = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), Normalize):
            continue
        if calls[node.target] != 1 or not (
            isinstance(node.args[0], fx.Node) and node.args[0].op == "placeholder"
        ):
            continue  # the stats' broadcast shape is only known at the input
        norm = gm.get_submodule(node.target)
        try:
            m = torch.broadcast_to(norm.mean.detach(), input_shape)
            s = torch.broadcast_to(norm.std.detach(), input_shape)
        except RuntimeError:
            continue
        user, layer = _single_module_user(gm, node, calls)
        if isinstance(user, fx.Node) and isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                continue
            user, layer = _single_module_user(gm, user, calls)
            if not isinstance(layer, nn.Linear):
                continue
            _fold_affine_into(layer, m.reshape(-1), s.reshape(-1))
        elif isinstance(layer, nn.Linear) and len(input_shape) == 1:
            _fold_affine_into(layer, m, s)
        elif isinstance(layer, nn.Conv2d) and len(input_shape) == 3:
            if not _per_channel(m) or not _per_channel(s) or layer.groups != 1:
                continue
            mc, sc = m[:, 0, 0], s[:, 0, 0]
            pads = layer.padding != "valid" and any(p != 0 for p in _padding(layer))
            if pads and bool(mc.ne(0).any()):
                continue
            _fold_affine_into(layer, mc, sc)
        else:
            continue
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
        folded.append(str(node.target))
    return folded


def _per_channel(t: torch.Tensor) -> bool:
    """True when a (C, H, W) tensor is constant over H and W."""
    return bool(t.eq(t[:, :1, :1]).all())


def _padding(conv: nn.Conv2d) -> tuple[int, ...]:
    if conv.padding == "same":
        return tuple(k - 1 for k in conv.kernel_size)
    return tuple(conv.padding)


def _fold_affine_into(layer: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """``layer((x - mean) / std)`` -> ``layer'(x)``; mean/std per input feature/channel."""
    w = layer.weight.detach()
    shape = (1, -1, *[1] * (w.dim() - 2))
    w_new = w / std.reshape(shape)
    shift = (w_new * mean.reshape(shape)).flatten(1).sum(1)
    bias = layer.bias.detach() if layer.bias is not None else w.new_zeros(w.shape[0])
    layer.weight = nn.Parameter(w_new)
    layer.bias = nn.Parameter(bias - shift)


class _Tracer(fx.Tracer):
    """Keeps ``Normalize`` as one call_module node, so it can be found and folded."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Normalize) or super().is_leaf_module(m, qualname)


def rewrite(
    model: nn.Module, input_shape: tuple[int, ...], *, enabled: bool = True
) -> tuple[fx.GraphModule, dict]:
    """The exact rewrites (module docstring) on an fx trace of ``model`` (not modified);
    returns ``(graph_module, {"relu_maxpool_swapped": [...], "normalize_folded": [...]})``.
    ``enabled=False`` only traces (for measuring what the rewrites give)."""
    try:
        root = clone(model).eval()
        gm = fx.GraphModule(root, _Tracer().trace(root))
    except Exception as e:  # fx raises many types for untraceable code
        raise PrunekitError(f"deploy needs a torch.fx-traceable model: {e}") from None
    info = {
        "relu_maxpool_swapped": _swap_relu_maxpool(gm) if enabled else [],
        "normalize_folded": _fold_normalize(gm, input_shape) if enabled else [],
    }
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.eval(), info


# -- runtimes -------------------------------------------------------------------------
def _build(gm: fx.GraphModule, runtime: str, example: torch.Tensor, threads: int) -> Any:
    """The runtime's callable for ``gm``; ``example``: a batch of the deploy batch size."""
    shape = tuple(example.shape[1:])
    if runtime == "eager":
        return gm
    if runtime in ("jit", "jit-freeze"):
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.9+ marks TorchScript deprecated; it still runs and is measured
            # fastest for some models, so the notice is not repeated on every deploy.
            warnings.simplefilter("ignore", DeprecationWarning)
            fn = torch.jit.freeze(torch.jit.trace(clone(gm).eval(), example))
            if runtime == "jit":
                fn = torch.jit.optimize_for_inference(fn)
        return fn
    if runtime == "compile":
        # options= patches inductor's config for this function only (also on recompiles).
        # Static shapes: each new batch size compiles once more (torch keeps up to 8),
        # so the deploy batch is compiled here and deploy() pays that cost, not the
        # first user call.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # dynamo's own jit imports
            fn = torch.compile(clone(gm).eval(), dynamic=False, options={"freezing": True})
            fn(example)
        return fn
    if runtime == "onnxruntime":
        return _OrtFunction(gm, shape, threads)
    raise AssertionError(runtime)


def _have_cxx() -> bool:
    """Inductor (``compile``) writes C++ and needs a compiler on PATH."""
    import os
    import shutil

    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "c++", "clang++"))


def _available(runtime: str) -> bool:
    if runtime == "compile":
        return _have_cxx()
    if runtime != "onnxruntime":
        return True
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _max_abs_diff(fn: Any, reference: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """``(max |fn(x) - reference(x)|, max(1, max |reference(x)|))``."""
    with torch.no_grad():
        y = reference(x)
        return float((fn(x) - y).abs().max()), max(1.0, float(y.abs().max()))


def deploy(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    runtime: str = "auto",
    round_to: int | None = None,
    batch_size: int = 64,
    threads: int | None = None,
    atol: float = 1e-5,
    candidates: tuple[str, ...] | None = None,
    rewrites: bool = True,
) -> Deployed:
    """``model`` (not modified) as a :class:`Deployed` inference module (eval mode).

    ``input_shape``: one sample, e.g. ``(1, 28, 28)``. ``runtime``: one of
    :data:`RUNTIMES` (module docstring). ``round_to``: ``None`` uses the model as
    given (pass a model already shrunk by :func:`prunekit.surgery.shrink`); an int
    ``k >= 1`` shrinks it here first (dead units removed, widths rounded up to a
    multiple of ``k``). ``batch_size``, ``threads``: what ``auto`` times with
    (``threads`` also sets onnxruntime's thread count; default: torch's). ``candidates``:
    the runtimes ``auto`` may pick (default: all available). ``rewrites=False`` skips
    the exact rewrites (BN is still folded), to measure what they give.

    Outputs are checked against the eager model on a seeded uniform [0, 1) batch of
    ``(batch_size, *input_shape)``: ``max |deployed - model| > atol * max(1, max |model|)``
    raises :class:`PrunekitError` (folding and fusion change float summation order, so
    large logits get a proportional tolerance). ``deployed.info`` holds ``folded_batchnorm``,
    ``relu_maxpool_swapped``, ``normalize_folded``, ``max_abs_diff`` and, for ``auto``,
    ``latency_ms`` of every candidate.
    """
    from ..surgery import fold_batchnorm, shrink

    if not isinstance(model, nn.Module):
        raise PrunekitError(f"deploy needs an nn.Module, got {type(model).__name__}")
    if runtime not in RUNTIMES:
        raise PrunekitError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    floats = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in floats):
        raise PrunekitError("deploy targets float32 CPU inference: call model.float().cpu()")
    shape = _check_shape(input_shape)
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int)):
        raise PrunekitError(f"round_to must be None or an int >= 1, got {round_to!r}")
    if round_to is not None and round_to < 1:
        raise PrunekitError(f"round_to must be None or an int >= 1, got {round_to}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PrunekitError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if threads is not None and threads < 1:
        raise PrunekitError(f"threads must be >= 1, got {threads}")
    if not atol >= 0:
        raise PrunekitError(f"atol must be >= 0, got {atol}")
    names = tuple(r for r in RUNTIMES if r != "auto") if candidates is None else candidates
    unknown = [r for r in names if r not in RUNTIMES or r == "auto"]
    if unknown or not names:
        raise PrunekitError(f"candidates must be runtimes other than 'auto', got {names!r}")
    if runtime == "onnxruntime" and not _available(runtime):
        raise PrunekitError("runtime 'onnxruntime' needs onnxruntime: pip install 'prunekit[onnx]'")
    if runtime == "compile" and not _available(runtime):
        raise PrunekitError("runtime 'compile' needs a C++ compiler (g++) on PATH for inductor")

    reference = finalize(clone(model)).eval()
    x = torch.rand((batch_size, *shape), generator=torch.Generator().manual_seed(1))
    info: dict[str, Any] = {}
    work = reference
    if round_to is not None:
        work, shrink_info = shrink(work, x[:2], round_to=round_to)
        info["units"] = shrink_info["units"]
    try:
        work, info["folded_batchnorm"] = fold_batchnorm(work)
    except Exception as e:
        if isinstance(e, PrunekitError):
            raise
        raise PrunekitError(f"deploy needs a torch.fx-traceable model: {e}") from None
    gm, done = rewrite(work, shape, enabled=rewrites)
    info |= done
    n_threads = threads or torch.get_num_threads()

    if runtime == "auto":
        built = {r: _build(gm, r, x, n_threads) for r in names if _available(r)}
        wrapped = {r: Deployed(gm, fn, r, {}) for r, fn in built.items()}
        ms = compare_latency(
            wrapped,
            shape,
            batch_size,
            repeats=7,
            warmup=2,
            threads=threads,
            min_time_s=0.01,
        )
        chosen = min(ms, key=ms.__getitem__)
        fn = built[chosen]
        info["latency_ms"] = ms
    else:
        chosen, fn = runtime, _build(gm, runtime, x, n_threads)

    info["max_abs_diff"], scale = _max_abs_diff(fn, reference, x)
    if not info["max_abs_diff"] <= atol * scale:
        raise PrunekitError(
            f"deployed model ({chosen}) differs from the model by {info['max_abs_diff']:.3g}"
            f" (> {atol:g} * max(1, max |output|))"
        )
    return Deployed(gm, fn, chosen, info).eval()


def export_deployed(
    run_dir: str | Path, onnx_path: str | Path, *, round_to: int = 1, check: bool = True
) -> dict[str, Any]:
    """Export a saved run to ONNX after deploy's graph work: ``shrink`` (dead units
    removed, widths rounded up to ``round_to``), BatchNorm folded, the exact rewrites
    (:func:`rewrite`); checked in onnxruntime like :func:`prunekit.inference.export.export_onnx`.
    Returns its dict plus ``units``, ``folded_batchnorm``, ``relu_maxpool_swapped`` and
    ``normalize_folded``."""
    from ..surgery import fold_batchnorm
    from .export import export_onnx, load_shrunk

    model, shape, units = load_shrunk(run_dir, round_to)
    model, folded = fold_batchnorm(model)
    gm, rewrites = rewrite(model, shape)
    out = export_onnx(gm, onnx_path, shape, check=check)
    return {**out, "units": units, "folded_batchnorm": folded, **rewrites}


__all__ = ["RUNTIMES", "Deployed", "deploy", "export_deployed", "rewrite"]
