"""A Hugging Face GPT-2 (small, randomly initialised: nothing is downloaded) pruned with
gradual magnitude pruning in a plain language-model training loop.

    python examples/transformers_gpt2.py [--sparsity 0.5] [--steps 40]

GPT-2's linear layers are transformers' ``Conv1D`` (weight stored ``(in, out)``); prunekit
prunes them like ``nn.Linear``. The token embedding and the output layer tied to it are
left dense. After ``finalize`` the model is a plain transformers model:
``save_pretrained`` / ``from_pretrained`` round-trip it.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

import prunekit

try:
    import transformers
except ImportError:
    raise SystemExit(
        "this example needs transformers: pip install 'prunekit[transformers]'"
    ) from None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=128, n_positions=32, n_embd=64, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    # a toy corpus: repeating sequences the model can learn in a few dozen steps
    tokens = (torch.arange(32)[None, :] * 3 + torch.arange(64)[:, None]) % 128
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    pruner = prunekit.Pruner(model, "gmp", args.sparsity, steps=args.steps, optimizer=optimizer)
    model.train()
    for step in range(args.steps):
        batch = tokens[torch.randint(0, 64, (16,))]
        loss = model(input_ids=batch, labels=batch).loss + pruner.penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pruner.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(
                f"step {step:3d}  loss {loss.item():.3f}  sparsity {prunekit.sparsity(model):.3f}"
            )
    pruner.finalize()

    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        again = transformers.GPT2LMHeadModel.from_pretrained(d)
    model.eval()
    again.eval()
    with torch.no_grad():
        same = torch.equal(model(tokens[:2]).logits, again(tokens[:2]).logits)
    print(f"pruned Conv1D sparsity {prunekit.sparsity(model):.3f}; reloaded outputs equal: {same}")


if __name__ == "__main__":
    main()
