"""Head / MLP-unit structured pruning (prunekit.lm.structured) on tiny random GPT-2 and
BERT configs: exact units removed per layer, shrunk == masked outputs, from_pretrained
of the saved shrunk GPT-2 (with and without prunekit), scores by hand, one-line errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit
from prunekit.lm.structured import (
    ChannelStats,
    UnitGroup,
    find_groups,
    pretrained_form,
    prune_structured,
    unit_scores,
    zero_units,
)
from prunekit.registry import PrunekitError

pytest.importorskip("transformers")


def gpt2(n_layer: int = 3) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=n_layer, n_embd=32, n_head=4, n_inner=64, vocab_size=64, n_positions=16,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg).eval()


def bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=16,
    )  # fmt: skip
    return BertModel(cfg).eval()


def ids(n: int = 4, length: int = 12) -> torch.Tensor:
    return torch.randint(0, 64, (n, length), generator=torch.Generator().manual_seed(1))


def out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        kw = {"use_cache": False} if hasattr(model, "transformer") else {}
        o = model(input_ids=x, **kw)
    return o.logits if hasattr(o, "logits") else o.last_hidden_state


@pytest.mark.parametrize("criterion", ["magnitude", "wanda", "flap"])
def test_gpt2_exact_units_per_layer_and_shrunk_equals_masked(criterion: str) -> None:
    model, x = gpt2(), ids()
    small = prunekit.prune_heads(model, heads=0.5, neurons=0.25, criterion=criterion, data=x)
    for block in small.transformer.h:
        assert block.attn.num_heads == 2 and block.attn.split_size == 16
        assert block.attn.c_attn.weight.shape == (32, 3 * 16)
        assert block.attn.c_proj.weight.shape == (16, 32)
        assert block.mlp.c_fc.weight.shape == (32, 48)  # round(0.25 * 64) = 16 removed
        assert block.mlp.c_proj.weight.shape == (48, 32)
    assert small.prunekit_structured["heads_per_layer"] == [2, 2, 2]
    assert small.prunekit_structured["mlp_per_layer"] == [48, 48, 48]
    assert small.prunekit_shrink["params_after"] < small.prunekit_shrink["params_before"]
    torch.testing.assert_close(out(small, ids(3, 10)), out(model, ids(3, 10)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("criterion", ["magnitude", "wanda", "flap"])
def test_bert_exact_units_per_layer_and_shrunk_equals_masked(criterion: str) -> None:
    model, x = bert(), ids()
    small = prunekit.prune_heads(model, heads=0.25, neurons=0.5, criterion=criterion, data=x)
    for layer in small.encoder.layer:
        s = layer.attention.self
        assert s.num_attention_heads == 3 and s.query.weight.shape == (24, 32)
        assert layer.attention.output.dense.weight.shape == (32, 24)
        assert layer.intermediate.dense.weight.shape == (24, 32)
        assert layer.output.dense.weight.shape == (32, 24)
    torch.testing.assert_close(out(small, x), out(model, x), atol=1e-5, rtol=0)


def test_zeroed_units_are_the_lowest_scored() -> None:
    model = gpt2(1)
    g = find_groups(model)[0]
    scores = unit_scores(g, "magnitude")
    report = prune_structured(model, heads=0.5, neurons=0.0)
    assert sorted(report.removed[g.name]) == sorted(torch.argsort(scores)[:2].tolist())
    w = model.transformer.h[0].attn.c_proj.weight  # Conv1D (in, out): rows = head inputs
    for h in range(4):
        assert bool(w[h * 8 : (h + 1) * 8].eq(0).all()) == (h in report.removed[g.name])


def test_saved_shrunk_gpt2_reloads_with_same_logits(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model, x = gpt2(2), ids()
    small = pretrained_form(prunekit.prune_heads(model, heads=0.75, neurons=0.5, data=x))
    small.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "prunekit_gpt2" and config["layer_heads"] == [1, 1]
    assert config["layer_inner"] == [32, 32] and (tmp_path / "hf_shrunk.py").is_file()
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(out(again, x), out(model, x), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_saved_shrunk_gpt2_loads_without_prunekit(tmp_path: Path) -> None:
    """``trust_remote_code`` in a process that never imports prunekit (the saved
    directory carries its model file)."""
    model, x = gpt2(2), ids()
    small = pretrained_form(prunekit.prune_heads(model, heads=0.5, neurons=0.5, data=x))
    small.save_pretrained(tmp_path / "hf")
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n"
        "assert 'prunekit' not in sys.modules\n"
        "x = torch.load(sys.argv[2])\n"
        "with torch.no_grad():\n"
        "    torch.save(m(input_ids=x, use_cache=False).logits, sys.argv[3])\n"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "hf"), str(tmp_path / "x.pt"),
         str(tmp_path / "y.pt")],
        check=True, env=env, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), out(model, x), atol=1e-5, rtol=0)


def tiny_group() -> tuple[UnitGroup, nn.Linear, nn.Linear, ChannelStats]:
    """Producer Linear(3, 4), output projection Linear(4, 2); 2 units of 2 channels."""
    up, down = nn.Linear(3, 4), nn.Linear(4, 2)
    with torch.no_grad():
        up.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 2], [1, 1, 1]]))
        down.weight.copy_(torch.tensor([[1.0, -2, 0, 3], [2, 0, -1, 1]]))
        down.bias.zero_()
    stats = ChannelStats()
    stats.update(torch.tensor([[1.0, 0, 2, -1], [3, 2, 2, 1], [2, 4, 2, 0]]))
    return UnitGroup("g", "head", [(up, 0)], down, 2, 2), up, down, stats


def test_scores_by_hand() -> None:
    g, _, _, stats = tiny_group()
    # magnitude: producer rows 1,1,4,3; output columns 5,4,1,10 (squared norms)
    mag = unit_scores(g, "magnitude")
    assert mag.tolist() == pytest.approx([math.sqrt(1 + 1 + 5 + 4), math.sqrt(4 + 3 + 1 + 10)])
    # wanda-sp: column |W| sums 3,2,1,4 times ||X_c|| = sqrt(14), sqrt(20), sqrt(12), sqrt(2)
    wanda = unit_scores(g, "wanda", stats)
    expect = [3 * math.sqrt(14) + 2 * math.sqrt(20), math.sqrt(12) + 4 * math.sqrt(2)]
    assert wanda.tolist() == pytest.approx(expect)
    # FLAP: sample variances 1,4,0,1 times column squared norms 5,4,1,10
    assert unit_scores(g, "flap", stats).tolist() == pytest.approx([1 * 5 + 4 * 4, 0 + 1 * 10])


def test_flap_compensation_by_hand() -> None:
    g, up, down, stats = tiny_group()
    zero_units(g, torch.tensor([1]), stats)
    # bias += W_o[:, 2:4] @ mean(X[:, 2:4]) = [[0, 3], [-1, 1]] @ [2, 0]
    assert down.bias.tolist() == pytest.approx([0.0, -2.0])
    assert down.weight[:, 2:].eq(0).all() and down.weight[:, :2].ne(0).any()
    assert up.weight[2:].eq(0).all() and up.bias[2:].eq(0).all()


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5, "many"])
def test_fraction_out_of_range_is_one_line(fraction: object) -> None:
    with pytest.raises(PrunekitError, match="heads must be a fraction") as e:
        prunekit.prune_heads(gpt2(1), heads=fraction)
    assert "\n" not in str(e.value)


def test_bad_inputs_are_one_line() -> None:
    cases = [
        (lambda: prunekit.prune_heads(nn.Sequential(nn.Linear(4, 4))), "no attention or MLP"),
        (lambda: prunekit.prune_heads(gpt2(1), criterion="flap"), "needs calibration data"),
        (lambda: prunekit.prune_heads(gpt2(1), criterion="taylor"), "unknown structured"),
        (
            lambda: prunekit.prune(
                nn.Sequential(nn.Linear(4, 4)), "magnitude", 0.5, granularity="head"
            ),
            "prunekit.prune_heads",
        ),  # fmt: skip
    ]
    for fn, message in cases:
        with pytest.raises(PrunekitError, match=message) as e:
            fn()
        assert "\n" not in str(e.value)


def test_one_unit_always_stays() -> None:
    model = gpt2(1)
    report = prune_structured(model, heads=0.99, neurons=0.99)
    assert report.per_layer("head") == [1] and report.per_layer("mlp") == [1]


def test_structured_lm_run_saves_the_shrunk_model(tmp_path: Path) -> None:
    from prunekit.lm import LMConfig, reload, run_lm

    text = tmp_path / "c.txt"
    text.write_text("".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(400)))
    cfg = LMConfig(
        dataset=f"text:{text}",
        method="flap",
        sparsity=0.5,
        method_args={"neurons": 0.25},
        model_args=dict(n_layer=2, n_embd=32, n_head=4, n_inner=64, n_positions=32),
        context=32,
        train_steps=3,
        batch_size=4,
        calib_samples=4,
        calib_batch=2,
        eval_windows=4,
        throughput_repeats=1,
        blocks=10,
        recovery_steps=1,
    )
    run = run_lm(cfg, out=tmp_path / "run")
    r = run.result
    assert r["granularity"] == "head" and r["structured"]["heads_per_layer"] == [2, 2]
    assert r["structured"]["mlp_per_layer"] == [48, 48] and r["structured"]["compensate"]
    assert r["params_total"] < r["params_total_dense"] and r["size_bytes"] < r["size_bytes_dense"]
    assert r["tokens_per_s"] > 0 and r["tokens_per_s_dense"] > 0 and r["speedup"] > 0
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["perplexity"] == pytest.approx(r["perplexity"])
    again = reload(tmp_path / "run")
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out(again, x), out(run.model, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(method="flap", method_args={"heads": 1.0}), "heads must be a fraction"),
        (dict(method="flap", method_args={"rank": 2}), "option\\(s\\) rank unknown"),
        (dict(method="sparsegpt", granularity="head"), "no head granularity"),
    ],
)
def test_structured_lm_options_one_line(kw: dict, message: str) -> None:
    from prunekit.lm import LMConfig

    with pytest.raises(PrunekitError, match=message) as e:
        LMConfig(**kw).spec()
    assert "\n" not in str(e.value)


def test_lm_comparison_runs_structured_cells(tmp_path: Path) -> None:
    from prunekit.experiments.store import read_rows
    from prunekit.lm.compare import LMCompareConfig, compare_lm, load_lm_config

    assert load_lm_config(None).struct_methods == ["magnitude-struct", "wanda-struct", "flap"]
    text = tmp_path / "c.txt"
    text.write_text("".join(f"def g{i}(y):\n    return y + {i}\n" for i in range(400)))
    base = dict(
        dataset=f"text:{text}",
        model_args=dict(n_layer=2, n_embd=32, n_head=4, n_inner=64, n_positions=32),
        context=32,
        train_steps=2,
        batch_size=4,
        calib_samples=4,
        eval_windows=4,
        throughput_repeats=1,
        blocks=10,
    )
    cfg = LMCompareConfig(
        base=base, methods=["magnitude"], settings=["0.5"],
        struct_methods=["magnitude-struct", "flap"], struct_settings=["0.5"],
    )  # fmt: skip
    outcome = compare_lm(cfg, tmp_path / "cmp", log=lambda _line: None)
    assert outcome["planned"] == outcome["ran"] == 3
    rows = {r["method"]: r for r in read_rows(tmp_path / "cmp")}
    assert rows["flap"]["granularity"] == "head" and rows["magnitude"]["granularity"] == "weight"
    assert rows["flap"]["structured"]["heads_per_layer"] == [2, 2]
    report = (tmp_path / "cmp" / "lm_report.md").read_text()
    assert "| flap | 0.5 |" in report and "| magnitude | 1" not in report.split("Structured")[1]


def test_global_allocation_by_hand() -> None:
    from prunekit.lm.structured import allocate

    a = UnitGroup("a", "head", [], nn.Linear(1, 1), 4, 1)
    b = UnitGroup("b", "head", [], nn.Linear(1, 1), 4, 1)
    # standardised: a = [-1.16, -0.39, 0.39, 1.16], b = [-0.5, -0.5, -0.5, 1.5]
    scores = {"a": torch.tensor([1.0, 2, 3, 4]), "b": torch.tensor([10.0, 10, 10, 40])}
    got = allocate([a, b], scores, 0.5, "global")
    assert got["a"].tolist() == [0] and got["b"].tolist() == [0, 1, 2]
    got = allocate([a, b], scores, 0.99, "global")  # the best unit of each group stays
    assert got["a"].tolist() == [0, 1, 2] and got["b"].tolist() == [0, 1, 2]
    assert allocate([a, b], scores, 0.5, "layer")["b"].tolist() == [0, 1]


def test_global_scope_uneven_layers_shrink_and_reload(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model, x = gpt2(3), ids()
    small = prunekit.prune_heads(
        model, heads=0.5, neurons=0.5, criterion="flap", data=x, scope="global"
    )
    rep = small.prunekit_structured
    assert sum(rep["heads_per_layer"]) == 6 and sum(rep["mlp_per_layer"]) == 96
    assert len(set(rep["mlp_per_layer"])) > 1  # blocks keep different widths
    assert [b.attn.num_heads for b in small.transformer.h] == rep["heads_per_layer"]
    assert [b.mlp.c_fc.nf for b in small.transformer.h] == rep["mlp_per_layer"]
    torch.testing.assert_close(out(small, x), out(model, x), atol=1e-5, rtol=0)
    pretrained_form(small).save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(out(again, x), out(model, x), atol=1e-5, rtol=0)
