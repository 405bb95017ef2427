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

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..evaluation.cost import _check_shape
from ..evaluation.latency import compare_latency
from ..pruning.masks import clone, finalize
from ..registry import PrunekitError
from .rewrites import rewrite
from .runtimes import RUNTIMES, Deployed, _available, _build, _have_cxx, _max_abs_diff  # noqa: F401


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
