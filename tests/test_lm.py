"""Language models (prunekit.lm) on tiny random GPT-2 configs: exact sparsity and N:M in
every block Conv1D, embeddings untouched, block-by-block calibration, save/reload,
perplexity by hand, text splits and one-line errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit
from prunekit.lm import LMConfig, reload, run_lm
from prunekit.lm.blocks import capture_inputs, find_blocks, prunable_linears, run_block
from prunekit.lm.metrics import perplexity
from prunekit.lm.models import gpt_tiny, load_hf
from prunekit.lm.prune import LMPruneSpec, prune_lm
from prunekit.lm.text import ByteTokenizer, load_tokens, read_text, split_blocks, windows
from prunekit.registry import PrunekitError

pytest.importorskip("transformers")  # the optional `lm` extra

TINY = dict(n_layer=2, n_embd=32, n_head=2, n_inner=64, n_positions=32)


def tiny_model(**kw: object) -> nn.Module:
    torch.manual_seed(0)
    return gpt_tiny(256, **{**TINY, **kw}).eval()


def calib(n: int = 6, length: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, length), generator=torch.Generator().manual_seed(1))


def untouched(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter outside the blocks' linear weights (embeddings, norms, biases)."""
    linear = {f"{n}.weight" for n in prunable_linears(model)}
    return {n: p.detach().clone() for n, p in model.named_parameters() if n not in linear}


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_exact_layer_sparsity_embeddings_untouched(method: str, sparsity: float) -> None:
    model = tiny_model()
    before = untouched(model)
    prune_lm(model, LMPruneSpec(method, sparsity), calib(), batch_size=4)
    layers = prunable_linears(model)
    assert len(layers) == 2 * 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block
    for name, m in layers.items():
        assert type(m).__name__ == "Conv1D"
        zeros = int((m.weight == 0).sum())
        assert zeros == round(sparsity * m.weight.numel()), name
    for name, p in model.named_parameters():
        if name in before:
            assert torch.equal(p, before[name]), f"{name} changed"
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8)])
def test_exact_nm_in_every_block_conv1d(method: str, n: int, m: int) -> None:
    model = tiny_model()
    prune_lm(model, LMPruneSpec(method, 1 - n / m, n=n, m=m), calib(), batch_size=4)
    for name, mod in prunable_linears(model).items():
        w = mod.weight.t()  # Conv1D stores (in, out): groups run along the inputs
        nonzero = (w != 0).reshape(w.shape[0], -1, m).sum(-1)
        assert bool((nonzero == n).all()), name


def test_sparsegpt_changes_kept_weights_wanda_does_not() -> None:
    dense = tiny_model()
    for method, changes in (("wanda", False), ("sparsegpt", True)):
        model = tiny_model()
        prune_lm(model, LMPruneSpec(method, 0.5), calib(), batch_size=3)
        w, w0 = model.transformer.h[1].mlp.c_fc.weight, dense.transformer.h[1].mlp.c_fc.weight
        kept = w != 0
        assert torch.equal(w[kept], w0[kept]) is not changes


def test_block_inputs_follow_the_pruned_blocks() -> None:
    """Block i is calibrated on what the (already pruned) blocks before it produce:
    the recorded inputs equal the pruned model's own hidden states."""
    model = tiny_model(n_layer=3)
    x = calib(4)
    seen: list[torch.Tensor] = []
    original = prune_lm.__globals__["sequential"]

    def spy(model_, calib_, prune_block, batch_size):
        def wrapped(i, block, inputs):
            seen.append(torch.cat([h for h, _, _ in inputs]).clone())
            prune_block(i, block, inputs)

        original(model_, calib_, wrapped, batch_size=batch_size)

    prune_lm.__globals__["sequential"] = spy
    try:
        prune_lm(model, LMPruneSpec("wanda", 0.5), x, batch_size=2)
    finally:
        prune_lm.__globals__["sequential"] = original
    with torch.no_grad():
        hidden = model(input_ids=x, output_hidden_states=True, use_cache=False).hidden_states
    assert len(seen) == 3
    for i in range(3):
        torch.testing.assert_close(seen[i], hidden[i], atol=1e-5, rtol=1e-5)


def test_capture_and_run_block_match_full_forward() -> None:
    model = tiny_model()
    x = calib(3)
    inputs = capture_inputs(model, x, batch_size=2)
    _, blocks = find_blocks(model)
    run_block(blocks[0], inputs)
    with torch.no_grad():
        hidden = model(input_ids=x, output_hidden_states=True, use_cache=False).hidden_states
    torch.testing.assert_close(torch.cat([h for h, _, _ in inputs]), hidden[1])


def test_owl_keeps_mean_sparsity_and_exact_layers() -> None:
    model = tiny_model(n_layer=3)
    report = prune_lm(model, LMPruneSpec("wanda", 0.7, owl=True, owl_lambda=0.1), calib())
    per_block = report["block_sparsity"]
    assert sum(per_block) / 3 == pytest.approx(0.7)
    assert max(per_block) - min(per_block) == pytest.approx(0.2)
    assert report["owl_lambda"] == 0.1
    _, blocks = find_blocks(model)
    for i, block in enumerate(blocks):
        for name, m in block.named_modules():
            if type(m).__name__ == "Conv1D":
                assert int((m.weight == 0).sum()) == round(per_block[i] * m.weight.numel()), name


def test_owl_lambda_is_capped_so_block_sparsities_stay_below_one() -> None:
    from prunekit.lm.prune import owl_lambda

    assert owl_lambda(LMPruneSpec("wanda", 0.7, owl=True)) == 0.08
    assert owl_lambda(LMPruneSpec("wanda", 0.9, owl=True)) == pytest.approx(0.05)
    model = tiny_model(n_layer=4)
    report = prune_lm(model, LMPruneSpec("sparsegpt", 0.9, owl=True), calib())
    assert all(0 <= s < 1 for s in report["block_sparsity"])
    assert sum(report["block_sparsity"]) / 4 == pytest.approx(0.9)


def test_saved_run_reloads_with_from_pretrained_same_logits(tmp_path: Path) -> None:
    text = tmp_path / "c.txt"
    text.write_text("".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(400)))
    cfg = LMConfig(
        dataset=f"text:{text}",
        method="sparsegpt",
        sparsity=0.5,
        model_args=TINY,
        context=32,
        train_steps=3,
        batch_size=4,
        calib_samples=4,
        calib_batch=2,
        eval_windows=4,
        throughput_repeats=1,
        blocks=10,
    )
    run = run_lm(cfg, out=tmp_path / "run")
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "hf").eval()
    x = calib(2)
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=x).logits, run.model(input_ids=x).logits)
    assert reload(tmp_path / "run").transformer.h[0].attn.c_attn.weight.eq(0).float().mean() == 0.5
    r = run.result
    assert r["achieved_sparsity"] == 0.5 and r["perplexity"] > 1 and r["perplexity_dense"] > 1
    assert r["perplexity_ratio"] == pytest.approx(r["perplexity"] / r["perplexity_dense"])
    assert 0 < r["params_nonzero"] < r["params_total"] and r["size_bytes"] > 0


class Uniform(nn.Module):
    """A 'model' whose logits are all zero: every token has probability 1/V."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False):
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, self.vocab)})()


def test_perplexity_by_hand() -> None:
    assert perplexity(Uniform(7), torch.arange(20) % 7, context=4) == pytest.approx(7.0)
    model = tiny_model()
    ids = torch.tensor([5, 200, 17, 17, 99, 3, 250, 8, 1, 64])  # 10 tokens, context 4
    with torch.no_grad():  # windows [0..4], [4..8]: predict tokens 1..8 (9 is left over)
        nll = []
        for start in (0, 4):
            logits = model(input_ids=ids[start : start + 4].unsqueeze(0)).logits[0]
            for k in range(4):
                p = torch.softmax(logits[k].double(), -1)[ids[start + k + 1]]
                nll.append(-math.log(float(p)))
    assert perplexity(model, ids, context=4) == pytest.approx(math.exp(sum(nll) / 8), rel=1e-6)


def test_windows_predict_every_token_once() -> None:
    w = windows(torch.arange(11), 5)
    assert w.tolist() == [[0, 1, 2, 3, 4, 5], [5, 6, 7, 8, 9, 10]]


def test_split_blocks_seeded_disjoint_and_complete() -> None:
    text = "".join(chr(65 + i % 26) * 3 for i in range(1000))
    a = split_blocks(text, blocks=20, seed=3)
    assert a == split_blocks(text, blocks=20, seed=3)
    assert a != split_blocks(text, blocks=20, seed=4)
    assert sum(len(v) for v in a.values()) == len(text)
    assert len(a["validation"]) == len(a["test"]) == len(text) // 10
    tok = ByteTokenizer()
    assert tok.decode(tok.encode("héllo ∑")) == "héllo ∑"


def test_python_stdlib_corpus_is_available_offline() -> None:
    data = load_tokens("python-stdlib", ByteTokenizer(), context=128)
    assert data.train.numel() > 5 * data.test.numel() > 0
    assert "import" in ByteTokenizer().decode(data.train[:20000])


def test_bad_text_inputs_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(PrunekitError, match=r"not UTF-8 .*0xe9 at offset 3"):
        read_text(bad)
    small = tmp_path / "small.txt"
    small.write_text("x = 1\n" * 300)  # 1800 characters: 180 per validation split
    with pytest.raises(PrunekitError, match="too small for context 256"):
        load_tokens(f"text:{small}", ByteTokenizer(), context=256)


def test_nm_indivisible_and_not_causal_lm_are_one_line_errors(tmp_path: Path) -> None:
    model = tiny_model(n_embd=20, n_head=2, n_inner=40)
    with pytest.raises(PrunekitError, match=r"M=8 does not divide the input size 20 .*c_attn"):
        prune_lm(model, LMPruneSpec("wanda", 0.5, n=4, m=8), calib())
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "bert")
    with pytest.raises(
        PrunekitError, match=r"is not a causal language model \(BertForSequenceClassification\)"
    ):
        load_hf(tmp_path / "bert")
    with pytest.raises(PrunekitError, match="no config.json"):
        load_hf(tmp_path)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(method="random"), "does not prune language models"),
        (dict(model="hf:/nonexistent", model_args={}), "no config.json"),
        (dict(dataset="text:/nonexistent.txt"), "cannot read text file"),
        (dict(method_args={"m": 4, "n": 4}), "N:M needs 1 <= N < M"),
        (dict(method_args={"owl": True}, granularity="nm"), "does not apply to N:M"),
        (dict(method_args={"damping": 0.1}), "option(s) damping unknown"),
    ],
)
def test_lm_run_bad_input_fails_before_writing(tmp_path: Path, kw: dict, message: str) -> None:
    cfg = LMConfig(**{"model_args": TINY, "context": 32, "train_steps": 1, **kw})
    with pytest.raises(PrunekitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_lm(cfg, out=tmp_path / "run")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "gpt-tiny", "--method", "magnitude", "--epochs", "3"],
            "do not apply to language models",
        ),
        (["--model", "gpt-tiny", "--nm", "2:4", "--sparsity", "0.7"], "fixes sparsity at 0.5"),
    ],
)
def test_cli_lm_errors_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "prunekit", "prune", *args, "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        # the prunekit under test, also when it is not the installed one
        env=dict(os.environ, COLUMNS="200", PYTHONPATH=str(Path(prunekit.__file__).parents[1])),
        timeout=300,
    )
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert not any(tmp_path.iterdir())


def test_capped_windows_are_spread_over_the_stream() -> None:
    w = windows(torch.arange(101), 10, max_windows=3)
    assert w[:, 0].tolist() == [0, 40, 90]


def test_lm_comparison_trains_once_stores_rows_and_resumes(tmp_path: Path) -> None:
    from prunekit.experiments.store import read_rows
    from prunekit.lm.compare import LMCompareConfig, compare_lm

    text = tmp_path / "c.txt"
    text.write_text("".join(f"def g{i}(y):\n    return y + {i}\n" for i in range(400)))
    base = dict(
        model="gpt-tiny",
        dataset=f"text:{text}",
        model_args=TINY,
        context=32,
        train_steps=2,
        batch_size=4,
        calib_samples=4,
        eval_windows=4,
        throughput_repeats=1,
        blocks=10,
    )
    cfg = LMCompareConfig(base=base, methods=["magnitude", "wanda+owl"], settings=["0.5", "2:4"])
    logs: list[str] = []
    outcome = compare_lm(cfg, tmp_path / "cmp", log=logs.append)
    assert outcome["planned"] == outcome["ran"] == 3  # OWL has no N:M cell
    assert sum("dense LM" in line for line in logs) == 1
    rows = read_rows(tmp_path / "cmp")
    assert sorted((r["method"], r["nm"] or str(r["target_sparsity"])) for r in rows) == [
        ("magnitude", "0.5"),
        ("magnitude", "2:4"),
        ("wanda+owl", "0.5"),
    ]
    assert len({r["perplexity_dense"] for r in rows}) == 1
    assert all(r["achieved_sparsity"] == pytest.approx(0.5, abs=0.01) for r in rows)
    assert "| magnitude |" in (tmp_path / "cmp" / "lm_report.md").read_text()
    assert compare_lm(cfg, tmp_path / "cmp", log=logs.append)["ran"] == 0


def test_hf_directory_with_its_own_tokenizer(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    text = "".join(f"for i{k} in range({k}):\n    print(i{k})\n" for k in range(500))
    corpus = tmp_path / "c.txt"
    corpus.write_text(text)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<eos>"],
    )
    bpe.train_from_iterator([text], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), **TINY)).save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    cfg = LMConfig(
        model=f"hf:{tmp_path / 'lm'}",
        dataset=f"text:{corpus}",
        method="wanda",
        granularity="nm",
        method_args={"n": 4, "m": 8},
        context=32,
        calib_samples=4,
        eval_windows=4,
        throughput_repeats=1,
        blocks=10,
    )
    r = run_lm(cfg, out=tmp_path / "run").result
    assert r["data"]["tokenizer"].startswith("hf:") and r["data"]["vocab_size"] == len(tok)
    assert r["data"]["tokens"]["train"] < 0.8 * len(text)  # BPE merges: fewer tokens than bytes
    assert r["achieved_sparsity"] == 0.5 and r["nm"] == "4:8"
    assert (tmp_path / "run" / "hf" / "tokenizer.json").is_file()
    assert reload(tmp_path / "run").config.vocab_size == len(tok)
