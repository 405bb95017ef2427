"""The runtimes a deployed model runs in (:mod:`prunekit.inference.deploy`, step 4):
``eager``, ``jit-freeze``, ``jit``, ``compile``, ``onnxruntime`` (and ``auto``, which
times the others), the :class:`Deployed` module that wraps one, and which of them
this machine can build."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import fx, nn

from ..pruning.masks import clone

RUNTIMES = ("eager", "jit-freeze", "jit", "compile", "onnxruntime", "auto")


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
