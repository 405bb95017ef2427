"""The LM run: (train dense | load hf:) -> prune the blocks -> (recovery) -> measure -> save.

The same shape as the image pipeline (``prunekit.pipeline.run``) with tokens for
images and perplexity for accuracy; ``prunekit prune`` dispatches here when the model
is a language model (``gpt-tiny``, ``hf:PATH``). A run directory holds ``result.json``
and the pruned model in ``transformers`` format under ``hf/`` (``from_pretrained``
loads it; a ``hf:`` model's tokenizer is saved beside it).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..registry import PrunekitError
from ..storage.atomic import atomic_write_json
from ..storage.outdir import check_out_dir
from .blocks import prunable_linears
from .metrics import perplexity, tokens_per_second
from .models import build_lm, is_lm_model
from .prune import LMPruneSpec, check_spec, prune_lm
from .struct_run import (
    StructSpec,
    interleaved_throughput,
    is_structured,
    model_bytes,
    struct_spec,
)
from .structured import model_inputs, prune_heads
from .text import TokenData, Tokenizer, is_text_dataset, load_tokens

RESULT_SCHEMA = "prunekit.result/v1"


@dataclass
class LMConfig:
    """One LM run. ``sparsity``: None = 0.5, or the N:M pattern's ``1 - n/m``.
    ``method_args``: ``n``/``m`` (N:M), ``owl``, ``owl_lambda``,
    ``owl_m``, ``percdamp``, ``blocksize``. ``train_steps``: dense AdamW steps of
    ``batch_size`` random windows (gpt-tiny; a ``hf:`` model is used as loaded).
    ``recovery_steps``: optional masked fine-tuning after pruning (0 = one-shot).
    ``eval_windows``: windows scored per split, evenly spaced over it (200 x 128 =
    25,600 tokens; None = the whole split)."""

    model: str = "gpt-tiny"
    dataset: str = "python-stdlib"
    method: str = "magnitude"
    sparsity: float | None = None
    granularity: str | None = None
    method_args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    context: int = 128
    train_steps: int = 400
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_steps: int = 40
    calib_samples: int = 64
    calib_batch: int = 8
    recovery_steps: int = 0
    recovery_lr: float = 3e-4
    eval_windows: int | None = 200
    blocks: int = 100
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_chars: int | None = None
    throughput_repeats: int = 5

    def __post_init__(self) -> None:
        if self.sparsity is not None and not 0.0 <= float(self.sparsity) < 1.0:
            raise PrunekitError(f"sparsity must be in [0, 1), got {self.sparsity}")
        for name in ("context", "batch_size", "calib_samples", "calib_batch", "throughput_repeats"):
            if int(getattr(self, name)) < 1:
                raise PrunekitError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_steps", "recovery_steps", "warmup_steps"):
            if int(getattr(self, name)) < 0:
                raise PrunekitError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.granularity not in (None, "weight", "nm", "head"):
            raise PrunekitError(
                f"LM pruning takes granularity 'weight', 'nm' or 'head', got {self.granularity!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k, v in data.items() if k not in known and v is not None)
        if unknown:
            raise PrunekitError(
                f"option(s) {', '.join(unknown)} do not apply to language models; "
                f"LM options: {', '.join(sorted(known))}"
            )
        return cls(**{k: v for k, v in data.items() if k in known})

    def hash(self) -> str:
        """sha256 (16 hex digits) of the non-default fields, as RunConfig.hash."""
        out = {}
        for f in fields(self):
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            if getattr(self, f.name) != default:
                out[f.name] = getattr(self, f.name)
        blob = json.dumps(out, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def spec(self) -> LMPruneSpec | StructSpec:
        """The pruning spec; N:M when ``granularity="nm"`` or n/m are given; heads and
        MLP units (``struct_run.StructSpec``) for a structured method / ``"head"``."""
        if is_structured(self.method, self.granularity):
            return struct_spec(self.method, self.sparsity, self.method_args)
        args = dict(self.method_args)
        n, m = args.pop("n", None), args.pop("m", None)
        if self.granularity == "nm" or n is not None or m is not None:
            n, m = int(n if n is not None else 2), int(m if m is not None else 4)
            if not 1 <= n < m:
                raise PrunekitError(f"N:M needs 1 <= N < M, got {n}:{m}")
            implied = 1 - n / m
            if self.sparsity is not None and abs(self.sparsity - implied) > 1e-9:
                raise PrunekitError(
                    f"the N:M pattern {n}:{m} fixes sparsity at {implied:g}; got {self.sparsity:g}"
                )
            args.update(n=n, m=m)
            sparsity = implied
        else:
            sparsity = 0.5 if self.sparsity is None else float(self.sparsity)
        known = {f.name for f in fields(LMPruneSpec)} - {"method", "sparsity", "exclude"}
        bad = sorted(set(args) - known)
        if bad:
            raise PrunekitError(
                f"LM method option(s) {', '.join(bad)} unknown; known: n, m, "
                + ", ".join(sorted(known - {"n", "m"}))
            )
        return LMPruneSpec(self.method, sparsity, exclude=tuple(self.exclude), **args)


def is_lm_config(values: dict[str, Any]) -> bool:
    """Whether a CLI/config mapping describes an LM run (by model or dataset name)."""
    return is_lm_model(str(values.get("model") or "")) or is_text_dataset(
        str(values.get("dataset") or "")
    )


@dataclass
class LMRun:
    model: nn.Module
    result: dict[str, Any]
    tokenizer: Tokenizer


def data_for(cfg: LMConfig, tokenizer: Tokenizer) -> TokenData:
    return load_tokens(
        cfg.dataset,
        tokenizer,
        context=cfg.context,
        seed=cfg.seed,
        blocks=cfg.blocks,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        max_chars=cfg.max_chars,
    )


def random_windows(ids: torch.Tensor, n: int, context: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` windows of ``context + 1`` tokens at random offsets of a stream."""
    starts = torch.randint(0, ids.numel() - context, (n,), generator=gen)
    return ids[starts.unsqueeze(1) + torch.arange(context + 1)]


def train_lm(
    model: nn.Module,
    train: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    context: int,
    lr: float,
    weight_decay: float,
    warmup: int,
    seed: int,
    after_step: Any = None,
) -> float:
    """AdamW on random windows, linear warm-up then cosine decay; returns seconds.
    ``after_step()`` runs after every optimizer step (re-applies masks in recovery)."""
    if steps == 0:
        return 0.0
    gen = torch.Generator().manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]
    other = [p for n, p in model.named_parameters() if p.dim() < 2 and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda t: (
            min(1.0, (t + 1) / max(warmup, 1))
            * 0.5
            * (1 + math.cos(math.pi * min(t, steps) / steps))
        ),
    )
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        w = random_windows(train, batch_size, context, gen)
        logits = model(input_ids=w[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten())
        if not torch.isfinite(loss):
            raise PrunekitError(
                f"LM training diverged at step {step} (loss {loss.item()}); lower --lr"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if after_step is not None:
            after_step()
    model.eval()
    return time.perf_counter() - t0


def prepare(cfg: LMConfig) -> tuple[nn.Module, Tokenizer, TokenData]:
    """A fresh (gpt-tiny, seeded) or loaded (hf:) model, its tokenizer and the data."""
    torch.manual_seed(cfg.seed)
    model, tok = build_lm(cfg.model, **cfg.model_args)
    data = data_for(cfg, tok)
    n_pos = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    if n_pos is not None and cfg.context > n_pos:
        raise PrunekitError(f"context {cfg.context} exceeds the model's {n_pos} positions")
    return model, tok, data


def train_dense(cfg: LMConfig) -> tuple[nn.Module, Tokenizer, TokenData, float]:
    model, tok, data = prepare(cfg)
    seconds = 0.0
    if not cfg.model.startswith("hf:"):
        seconds = train_lm(
            model,
            data.train,
            steps=cfg.train_steps,
            batch_size=cfg.batch_size,
            context=cfg.context,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup=cfg.warmup_steps,
            seed=cfg.seed,
        )
    return model.eval(), tok, data, seconds


def calibration(data: TokenData, cfg: LMConfig) -> torch.Tensor:
    """``calib_samples`` windows of ``context`` tokens at seeded random offsets of the
    training split (the paper setting: random segments of the training corpus)."""
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    return random_windows(data.train, cfg.calib_samples, cfg.context - 1, gen)


def layer_stats(model: nn.Module) -> dict[str, dict[str, Any]]:
    out = {}
    for name, m in prunable_linears(model).items():
        w = m.weight
        nz = int((w != 0).sum())
        out[name] = {"params": w.numel(), "nonzero": nz, "sparsity": 1 - nz / w.numel()}
    return out


def measure(model: nn.Module, data: TokenData, cfg: LMConfig) -> dict[str, Any]:
    """Perplexity (validation, test), throughput, parameters and nonzeros."""
    ppl = {
        split: perplexity(model, data.split(split), cfg.context, max_windows=cfg.eval_windows)
        for split in ("validation", "test")
    }
    params = {id(p): p for p in model.parameters()}  # tied weights counted once
    total = sum(p.numel() for p in params.values())
    nonzero = sum(int((p != 0).sum()) for p in params.values())
    layers = layer_stats(model)
    block_total = sum(v["params"] for v in layers.values())
    block_zero = sum(v["params"] - v["nonzero"] for v in layers.values())
    return {
        "perplexity": ppl["test"],
        "val_perplexity": ppl["validation"],
        "achieved_sparsity": block_zero / block_total,
        "params_total": total,
        "params_nonzero": nonzero,
        "tokens_per_s": tokens_per_second(
            model, cfg.context, data.vocab_size, repeats=cfg.throughput_repeats
        ),
        "layers": layers,
    }


def save_hf(out: Path, model: nn.Module, tokenizer: Tokenizer) -> dict[str, int]:
    """The model (and a hf: model's tokenizer) under ``out/hf``; returns its bytes."""
    hf = out / "hf"
    model.save_pretrained(hf)
    if hasattr(tokenizer, "tok"):
        tokenizer.tok.save_pretrained(hf)  # type: ignore[attr-defined]
    raw = b"".join(p.read_bytes() for p in sorted(hf.glob("*.safetensors")))
    return {"size_bytes": len(raw), "size_bytes_gzip": len(gzip.compress(raw, 9))}


def run_lm(
    cfg: LMConfig,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    dense: tuple[nn.Module, Tokenizer, TokenData, float, dict[str, Any]] | None = None,
) -> LMRun:
    """The whole LM run. ``dense`` = (trained model, tokenizer, data, seconds, its
    measurements) lets a comparison train and measure the dense LM once; it is copied."""
    spec = cfg.spec()
    if isinstance(spec, StructSpec):  # whole heads and MLP units, removed physically
        return run_struct_lm(cfg, spec, out=out, overwrite=overwrite, dense=dense)
    if out is not None:
        check_out_dir(Path(out), cfg.hash(), overwrite=overwrite)
    t_start = time.perf_counter()
    if dense is None:
        probe, _tok = (
            build_lm(cfg.model, **cfg.model_args)
            if not cfg.model.startswith("hf:")
            else (None, None)
        )
        if probe is not None:  # bad N:M / exclusions fail before any training
            check_spec(probe, spec)
        model, tok, data, dense_s = train_dense(cfg)
        dense_metrics = measure(model, data, cfg)
    else:
        base, tok, data, dense_s, dense_metrics = dense
        model = copy.deepcopy(base)
    check_spec(model, spec)
    t0 = time.perf_counter()
    calib = calibration(data, cfg)
    report = prune_lm(model, spec, calib, batch_size=cfg.calib_batch)
    prune_s = time.perf_counter() - t0
    recovery_s = recover(model, data, cfg) if cfg.recovery_steps else 0.0
    metrics = measure(model, data, cfg)
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "task": "lm",
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": spec.method,
        "granularity": "nm" if spec.nm else "weight",
        "nm": f"{spec.n}:{spec.m}" if spec.nm else None,
        "scope": "owl" if spec.owl else "layer",
        "target_sparsity": spec.sparsity,
        **metrics,
        "perplexity_dense": dense_metrics["perplexity"],
        "val_perplexity_dense": dense_metrics["val_perplexity"],
        "perplexity_ratio": metrics["perplexity"] / dense_metrics["perplexity"],
        "tokens_per_s_dense": dense_metrics["tokens_per_s"],
        "block_sparsity": report["block_sparsity"],
        "owl_lambda": report["owl_lambda"],
        "calibration": {"samples": cfg.calib_samples, "context": cfg.context, "split": "train"},
        "data": {
            "source": data.source,
            "tokenizer": data.tokenizer,
            "vocab_size": data.vocab_size,
            "tokens": {s: int(data.split(s).numel()) for s in ("train", "validation", "test")},
        },
        "seed": cfg.seed,
        "train_seconds": {
            "dense": dense_s,
            "prune": prune_s,
            "recovery": recovery_s,
            "total": time.perf_counter() - t_start,
        },
        "versions": _versions(),
        "config_hash": cfg.hash(),
        "config": cfg.to_dict(),
    }
    if out is not None:
        out = Path(out)
        result.update(save_hf(out, model, tok))
        atomic_write_json(out / "result.json", result)
    return LMRun(model=model, result=result, tokenizer=tok)


def recover(model: nn.Module, data: TokenData, cfg: LMConfig) -> float:
    """Masked fine-tuning: the pruned zeros are re-zeroed after every step (the mask is
    the zero pattern right after pruning), so the sparsity is unchanged."""
    masks = {name: (m.weight != 0) for name, m in prunable_linears(model).items()}
    layers = prunable_linears(model)

    @torch.no_grad()
    def reapply() -> None:
        for name, keep in masks.items():
            layers[name].weight.mul_(keep)

    return train_lm(
        model,
        data.train,
        steps=cfg.recovery_steps,
        batch_size=cfg.batch_size,
        context=cfg.context,
        lr=cfg.recovery_lr,
        weight_decay=0.0,
        warmup=0,
        seed=cfg.seed + 11,
        after_step=reapply,
    )


def _versions() -> dict[str, Any]:
    import transformers

    from ..pipeline import versions

    return {**versions(), "transformers": transformers.__version__}


def dense_for(cfg: LMConfig) -> tuple[nn.Module, Tokenizer, TokenData, float, dict[str, Any]]:
    """Train (or load) and measure the dense LM once, for :func:`run_lm`'s ``dense``."""
    model, tok, data, seconds = train_dense(cfg)
    return model, tok, data, seconds, measure(model, data, cfg)


def reload(run_dir: str | Path) -> nn.Module:
    """The pruned model of a saved LM run (``from_pretrained`` on ``RUN/hf``)."""
    from transformers import AutoModelForCausalLM

    from .hf_shrunk import register

    register()  # a head-pruned GPT-2 (prunekit_gpt2) loads without remote code
    hf = Path(run_dir) / "hf"
    if not (hf / "config.json").is_file():
        raise PrunekitError(f"{run_dir} holds no language model (no hf/config.json)")
    return AutoModelForCausalLM.from_pretrained(hf, local_files_only=True).eval()


def evaluate_saved_lm(run_dir: str | Path) -> dict[str, Any]:
    """Reload a saved LM run (``from_pretrained``) and measure it again on its data."""
    run_dir = Path(run_dir)
    try:
        saved = json.loads((run_dir / "result.json").read_text())
        cfg = LMConfig.from_dict(saved["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PrunekitError(f"{run_dir / 'result.json'} is missing or corrupted: {e}") from None
    model = reload(run_dir)
    _, tok = (
        build_lm(cfg.model, **cfg.model_args)
        if not cfg.model.startswith("hf:")
        else (
            None,
            build_lm(f"hf:{run_dir / 'hf'}")[1],
        )
    )
    data = data_for(cfg, tok)
    return {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": saved.get("method"),
        "target_sparsity": saved.get("target_sparsity"),
        **measure(model, data, cfg),
    }


def run_struct_lm(
    cfg: LMConfig,
    spec: StructSpec,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    dense: tuple | None = None,
) -> LMRun:
    """The structured LM run (``struct_run``'s docstring): prune heads and MLP units, shrink,
    measure and save the small model."""
    from .structured import find_groups, pretrained_form

    if out is not None:
        check_out_dir(Path(out), cfg.hash(), overwrite=overwrite)
    t_start = time.perf_counter()
    if dense is None:
        base, tok, data, dense_s = train_dense(cfg)
        dense_metrics = measure(base, data, cfg)
    else:
        base, tok, data, dense_s, dense_metrics = dense
    find_groups(base)  # a model without known blocks fails before any work
    masked = copy.deepcopy(base)
    t0 = time.perf_counter()
    calib = calibration(data, cfg)
    small = prune_heads(
        masked,
        heads=spec.heads,
        neurons=spec.neurons,
        criterion=spec.criterion,
        data=calib,
        compensate=spec.compensate,
        scope=spec.scope,
        example_inputs=model_inputs(masked, calib[:2]),
    )
    report = small.prunekit_structured
    if type(small).__name__ == "GPT2LMHeadModel":
        small = pretrained_form(small)
    del masked
    prune_s = time.perf_counter() - t0
    recovery_s = recover(small, data, cfg) if cfg.recovery_steps else 0.0
    metrics = measure(small, data, cfg)
    timing = interleaved_throughput(
        base, small, cfg.context, data.vocab_size, repeats=max(15, cfg.throughput_repeats)
    )
    params_dense = sum({id(p): p.numel() for p in base.parameters()}.values())
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "task": "lm",
        "model": cfg.model,
        "dataset": cfg.dataset,
        "method": spec.method,
        "granularity": "head",
        "nm": None,
        "scope": spec.scope,
        "target_sparsity": spec.sparsity,
        **metrics,
        **timing,
        "perplexity_dense": dense_metrics["perplexity"],
        "val_perplexity_dense": dense_metrics["val_perplexity"],
        "perplexity_ratio": metrics["perplexity"] / dense_metrics["perplexity"],
        "params_total_dense": params_dense,
        "params_removed_fraction": 1 - metrics["params_total"] / params_dense,
        "structured": {
            **report,
            "compensate": spec.criterion == "flap" if spec.compensate is None else spec.compensate,
        },
        "block_sparsity": None,
        "owl_lambda": None,
        "calibration": {"samples": cfg.calib_samples, "context": cfg.context, "split": "train"},
        "data": {
            "source": data.source,
            "tokenizer": data.tokenizer,
            "vocab_size": data.vocab_size,
            "tokens": {s: int(data.split(s).numel()) for s in ("train", "validation", "test")},
        },
        "seed": cfg.seed,
        "train_seconds": {
            "dense": dense_s,
            "prune": prune_s,
            "recovery": recovery_s,
            "total": time.perf_counter() - t_start,
        },
        "versions": _versions(),
        "config_hash": cfg.hash(),
        "config": cfg.to_dict(),
    }
    result.update(model_bytes(small))
    result["size_bytes_dense"] = model_bytes(base)["size_bytes"]
    if out is not None:
        out = Path(out)
        result.update(save_hf(out, small, tok))
        atomic_write_json(out / "result.json", result)
    return LMRun(model=small, result=result, tokenizer=tok)
