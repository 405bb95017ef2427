"""A short masked LeNet-300-100 fine-tune, run by tests/test_distributed.py either alone
(``python ddp_worker.py OUT BATCH``) or under ``torchrun --nproc_per_node 2``.

Two phases on the ``synthetic`` dataset: ``gmp`` (cubic schedule: pruning events during
training, so masks change while DDP trains) and ``l0`` (gate logits trained outside the
model). Each rank writes ``OUT/rank{r}-w{world}.json`` with the hashes of its masks and
gates (recorded by a probe callback at every step) and whether pruned weights are zero;
rank 0 writes the final effective weights to ``OUT/w{world}-{method}.safetensors``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from prunekit import distributed
from prunekit.data import load_dataset
from prunekit.evaluation.cost import effective_tensors
from prunekit.models import create_model
from prunekit.pruning.criteria import Context
from prunekit.pruning.masks import effective, get_mask, masked_parameters
from prunekit.pruning.methods import get_method
from prunekit.pruning.phase import PruningPhase
from prunekit.training import TrainSettings, fit


class Probe:
    """Records, before every step, the hashes of the masks and of the phase's gates."""

    def __init__(self, phase: PruningPhase) -> None:
        self.phase = phase
        self.seen: list[dict] = []

    def on_step(self, step: int, model: torch.nn.Module) -> None:
        masks = {k: distributed._digest(v) for k, v in masked_parameters(model).items()}
        gates = [distributed._digest(t) for t in self.phase.synced_tensors()]
        self.seen.append({"step": step, "masks": masks, "gates": gates})


def main(out: Path, batch: int) -> None:
    torch.set_num_threads(1)
    # 601 examples -> 541 train: the last batch of an epoch is odd, so its slices differ.
    data = load_dataset("synthetic", limit=601, test_limit=50, seed=0, n_train=601, n_test=50)
    world, rank = distributed.world_size(), distributed.rank()
    report: dict = {"rank": rank, "world": world, "phases": {}}
    for method, sparsity in (("gmp", 0.8), ("l0", 0.5)):
        torch.manual_seed(0)
        model = create_model("lenet300", mean=float(data.mean), std=float(data.std))
        steps = 12
        phase = PruningPhase(
            get_method(method),
            sparsity,
            steps,
            ctx=Context(data=(data.val.x, data.val.y), generator=torch.Generator().manual_seed(2)),
        )
        probe = Probe(phase)
        losses = fit(
            model,
            data.train,
            steps=steps,
            settings=TrainSettings(lr=0.05, batch_size=batch),
            generator=torch.Generator().manual_seed(1),
            callbacks=[phase, probe],
        )
        zeros_ok = all(
            bool((effective(m)[get_mask(m) == 0] == 0).all())
            for m in model.modules()
            if get_mask(m) is not None
        )
        report["phases"][method] = {
            "probe": probe.seen,
            "losses": losses,
            "pruned_weights_zero": zeros_ok,
            "masked": len(masked_parameters(model)),
            "pruned": sum(
                int((get_mask(m) == 0).sum()) for m in model.modules() if get_mask(m) is not None
            ),
        }
        if distributed.is_main():
            tensors = {k: v.detach().contiguous() for k, v in effective_tensors(model).items()}
            save_file(tensors, str(out / f"w{world}-{method}.safetensors"))
    (out / f"rank{rank}-w{world}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
