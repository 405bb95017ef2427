"""deploy(): exact rewrites (ReLU/max-pool swap, Normalize folding), every runtime on
every zoo model dense and shrunk, round_to, auto, and refusals of bad input."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import prunekit
from prunekit import PrunekitError, create_model
from prunekit.evaluation import compare_latency
from prunekit.inference.deploy import RUNTIMES, Deployed, _have_cxx, deploy, rewrite
from prunekit.models.common import Normalize
from prunekit.surgery import shrink

SHAPES = {
    "lenet300": (1, 28, 28),
    "lenet5": (1, 28, 28),
    "seedcnn": (1, 28, 28),
    "resnet20": (3, 32, 32),
}
STATS = {  # non-trivial normalization, as a trained model has
    "lenet300": {"mean": 0.3, "std": 0.4},
    "lenet5": {"mean": 0.3, "std": 0.4},
    "seedcnn": {"mean": 0.3, "std": 0.4},
    "resnet20": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]},
}
FAST = ("eager", "jit-freeze", "jit", "onnxruntime")


@pytest.fixture(autouse=True)
def _one_thread():
    """On a loaded 2-core machine, 2 spinning OpenMP threads made a resnet20 deploy 25x
    slower (measured: 1.8 s instead of 0.07 s, eager); outputs do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def zoo(name: str, shrunk: bool) -> nn.Module:
    model = randomize_bn(create_model(name, **STATS[name])).eval()
    if shrunk:
        prunekit.prune(model, "l1-filter", 0.5, granularity="neuron")
        model, _ = shrink(model, torch.rand(2, *SHAPES[name]))
    return model.eval()


@torch.no_grad()
def assert_same(deployed: nn.Module, model: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.rand((5, *shape), generator=torch.Generator().manual_seed(7))
    assert torch.allclose(deployed(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shrunk", [False, True], ids=["dense", "shrunk"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_zoo_every_fast_runtime_matches_eager(name: str, shrunk: bool) -> None:
    pytest.importorskip("onnxruntime")
    model = zoo(name, shrunk)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for runtime in FAST:
        d = deploy(model, SHAPES[name], runtime=runtime, batch_size=4)
        assert isinstance(d, Deployed) and d.runtime == runtime and not d.training
        assert_same(d, model, SHAPES[name])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # input left alone


needs_cxx = pytest.mark.skipif(
    not _have_cxx(), reason="torch.compile needs g++ (apt-get install g++)"
)


@needs_cxx
def test_compile_runtime_matches_eager_lenet5() -> None:
    model = zoo("lenet5", shrunk=True)
    d = deploy(model, SHAPES["lenet5"], runtime="compile", batch_size=4)
    assert d.runtime == "compile"
    assert_same(d, model, SHAPES["lenet5"])


@pytest.mark.slow
@needs_cxx
@pytest.mark.parametrize("shrunk", [False, True], ids=["dense", "shrunk"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_zoo_compile_matches_eager(name: str, shrunk: bool) -> None:
    model = zoo(name, shrunk)
    assert_same(deploy(model, SHAPES[name], runtime="compile", batch_size=4), model, SHAPES[name])


# -- the rewrites ------------------------------------------------------------------------
def test_lenet5_relu_moves_after_each_max_pool_and_normalize_is_folded() -> None:
    model = zoo("lenet5", shrunk=False)
    gm, info = rewrite(model, SHAPES["lenet5"])
    assert info == {
        "relu_maxpool_swapped": ["features.pool1", "features.pool2"],
        "normalize_folded": ["normalize"],
    }
    order = [n.target if n.op == "call_module" else n.op for n in gm.graph.nodes]
    assert order[:5] == ["placeholder", "features.conv1", "features.pool1", "call_function",
                         "features.conv2"]  # fmt: skip
    assert not any(isinstance(m, Normalize) for m in gm.modules())
    assert_same(gm, model, SHAPES["lenet5"])


def test_normalize_fold_hand_computed() -> None:
    conv = nn.Conv2d(1, 1, 1)
    conv.weight.data.fill_(3.0)
    conv.bias.data.fill_(1.0)
    gm, info = rewrite(nn.Sequential(Normalize(0.5, 2.0), conv), (1, 2, 2))
    assert info["normalize_folded"] == ["0"]
    # 3 * (x - 0.5) / 2 + 1 = 1.5 x + 0.25
    assert gm.get_submodule("1").weight.item() == 1.5
    assert gm.get_submodule("1").bias.item() == 0.25


def test_normalize_fold_into_flatten_linear_broadcasts_per_channel_stats() -> None:
    lin = nn.Linear(2 * 1 * 2, 1, bias=False)
    lin.weight.data.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    model = nn.Sequential(Normalize([1.0, 2.0], [2.0, 4.0]), nn.Flatten(), lin)
    gm, info = rewrite(model, (2, 1, 2))
    assert info["normalize_folded"] == ["0"]
    # features 0,1 are channel 0 (m=1, s=2), features 2,3 channel 1 (m=2, s=4)
    assert gm.get_submodule("2").weight.tolist() == [[0.5, 1.0, 0.75, 1.0]]
    assert gm.get_submodule("2").bias.tolist() == [-(0.5 + 1.0) - (0.75 + 1.0) * 2]
    assert_same(gm, model, (2, 1, 2))


def test_normalize_fold_into_a_linear_on_vectors() -> None:
    lin = nn.Linear(3, 2)
    model = nn.Sequential(Normalize(0.25, 0.5), lin).eval()
    gm, info = rewrite(model, (3,))
    assert info["normalize_folded"] == ["0"]
    assert torch.equal(gm.get_submodule("1").weight, lin.weight * 2)
    assert_same(gm, model, (3,))


def test_padded_conv_folds_normalize_only_when_mean_is_zero() -> None:
    shape = SHAPES["resnet20"]
    _, info = rewrite(zoo("resnet20", shrunk=False), shape)  # per-channel mean != 0
    assert info["normalize_folded"] == []
    model = randomize_bn(create_model("resnet20", std=[0.2, 0.3, 0.25])).eval()
    gm, info = rewrite(model, shape)
    assert info["normalize_folded"] == ["normalize"]
    assert_same(gm, model, shape)


class TwoUsers(nn.Module):
    """The ReLU output also feeds the sum: moving it after the pool would change that."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(self.conv(x))
        return F.max_pool2d(r, 2).sum() + r.sum()


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.max_pool2d(torch.relu(self.conv(x)), 2)  # swapped
        b = F.avg_pool2d(F.relu(self.conv(x)), 2)  # avg does not commute with relu
        return a.flatten(1) + b.flatten(1)


def test_rewrites_can_be_switched_off() -> None:
    model = zoo("lenet5", shrunk=True)
    d = deploy(model, SHAPES["lenet5"], runtime="eager", rewrites=False, batch_size=2)
    assert d.info["relu_maxpool_swapped"] == [] and d.info["normalize_folded"] == []
    assert any(isinstance(m, Normalize) for m in d.source.modules())
    assert_same(d, model, SHAPES["lenet5"])


def test_swap_only_where_exact() -> None:
    _, info = rewrite(TwoUsers(), (1, 4, 4))
    assert info["relu_maxpool_swapped"] == []
    model = Functional().eval()
    gm, info = rewrite(model, (1, 4, 4))
    assert info["relu_maxpool_swapped"] == ["max_pool2d"]
    assert_same(gm, model, (1, 4, 4))
    _, info = rewrite(zoo("seedcnn", shrunk=False), SHAPES["seedcnn"])
    assert info["relu_maxpool_swapped"] == []  # seedcnn pools with AvgPool2d


def test_swap_is_exact_on_ties_and_negative_inputs() -> None:
    model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)).eval()
    gm, info = rewrite(model, (1, 2, 4))
    assert info["relu_maxpool_swapped"] == ["1"]
    x = torch.tensor([[[[-1.0, -2.0, 0.0, 3.0], [-3.0, -0.5, 3.0, 2.0]]]])
    assert torch.equal(gm(x), torch.tensor([[[[0.0, 3.0]]]]))
    assert torch.equal(gm(x), model(x))


# -- round_to, auto, integration -------------------------------------------------------
def test_round_to_shrinks_a_masked_model_here() -> None:
    model = randomize_bn(create_model("resnet20")).eval()
    prunekit.prune(model, "l1-filter", 0.75, granularity="neuron")
    d = deploy(model, SHAPES["resnet20"], runtime="eager", round_to=8, batch_size=4)
    assert all(n % 8 == 0 for layer, n in d.info["units"].items() if layer != "fc")
    convs = [m for m in d.source.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 8  # 16 * 0.25 = 4 alive, rounded up to 8
    assert d.info["folded_batchnorm"] and not any(
        isinstance(m, nn.BatchNorm2d) for m in d.source.modules()
    )
    assert_same(d, model, SHAPES["resnet20"])


def test_auto_times_the_candidates_and_keeps_one() -> None:
    model = zoo("lenet5", shrunk=True)
    d = deploy(model, SHAPES["lenet5"], runtime="auto", candidates=("eager", "jit"), batch_size=2)
    assert set(d.info["latency_ms"]) == {"eager", "jit"}
    assert d.runtime == min(d.info["latency_ms"], key=d.info["latency_ms"].get)
    assert_same(d, model, SHAPES["lenet5"])


def test_deployed_works_with_the_latency_harness() -> None:
    d = deploy(zoo("lenet300", shrunk=True), SHAPES["lenet300"], runtime="jit", batch_size=2)
    ms = compare_latency({"d": d}, SHAPES["lenet300"], 2, repeats=1, warmup=0)
    assert set(ms) == {"d"} and ms["d"] > 0
    assert d.train().training and not d.eval().training


def test_mismatch_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # the package attribute prunekit.deploy is the function; the module is in sys.modules
    dep = sys.modules["prunekit.inference.deploy"]
    monkeypatch.setattr(dep, "_build", lambda gm, *a: lambda x: gm(x) + 1e-3)
    with pytest.raises(PrunekitError, match="differs from the model by 0.001"):
        deploy(zoo("lenet300", shrunk=False), SHAPES["lenet300"], runtime="eager", batch_size=2)


# -- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'; known: eager, jit-freeze"),
        ({"round_to": 0}, "round_to must be None or an int >= 1, got 0"),
        ({"round_to": True}, "round_to must be None or an int >= 1, got True"),
        ({"round_to": 1.5}, "round_to must be None or an int >= 1, got 1.5"),
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"threads": 0}, "threads must be >= 1, got 0"),
        ({"atol": -1.0}, "atol must be >= 0"),
        ({"candidates": ("auto",)}, "candidates must be runtimes other than 'auto'"),
        ({"candidates": ()}, "candidates must be runtimes other than 'auto'"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(PrunekitError, match=message):
        deploy(create_model("lenet300"), (1, 28, 28), **kwargs)


def test_bad_model_and_shape() -> None:
    with pytest.raises(PrunekitError, match="deploy needs an nn.Module, got str"):
        deploy("lenet5", (1, 28, 28))  # type: ignore[arg-type]
    with pytest.raises(PrunekitError, match="deploy targets float32 CPU inference"):
        deploy(create_model("lenet300").double(), (1, 28, 28))
    with pytest.raises(PrunekitError, match="input shape must be positive integers"):
        deploy(create_model("lenet300"), (1, 0, 28))

    class Untraceable(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x  # data-dependent control flow

    with pytest.raises(PrunekitError, match="deploy needs a torch.fx-traceable model"):
        deploy(Untraceable(), (3,), runtime="eager")


def test_missing_onnxruntime_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(PrunekitError, match=r"pip install 'prunekit\[onnx\]'"):
        deploy(create_model("lenet300"), (1, 28, 28), runtime="onnxruntime")
    d = deploy(create_model("lenet300"), (1, 28, 28), candidates=("eager", "onnxruntime"),
               batch_size=2)  # fmt: skip
    assert set(d.info["latency_ms"]) == {"eager"}  # auto skips what is not installed


def test_runtimes_listed() -> None:
    assert RUNTIMES == ("eager", "jit-freeze", "jit", "compile", "onnxruntime", "auto")
    assert isinstance(rewrite(create_model("lenet300"), (1, 28, 28))[0], fx.GraphModule)


def test_cli_export_deploy_writes_the_rewritten_graph(tmp_path, capsys) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from prunekit.cli import main
    from prunekit.storage.modelfile import save_model

    model = zoo("lenet5", shrunk=False)
    prunekit.prune(model, "l1-filter", 0.5, granularity="neuron")
    spec = {"name": "lenet5", "kwargs": STATS["lenet5"], "input_shape": list(SHAPES["lenet5"])}
    save_model(tmp_path / "run", model, spec)
    with pytest.raises(SystemExit) as done:
        main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "d.onnx"), "--deploy"])
    assert done.value.code in (0, None)
    assert "1 Normalize; 2 ReLU moved after max-pool" in capsys.readouterr().out
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand((3, *SHAPES["lenet5"]), generator=torch.Generator().manual_seed(3))
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = prunekit.load(tmp_path / "run")(x)
    assert torch.allclose(torch.from_numpy(got), ref, rtol=0, atol=1e-5)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "d.onnx")).graph.node]
    assert "Sub" not in ops and "Div" not in ops  # Normalize folded into conv1
    assert ops.index("MaxPool") < ops.index("Relu")


def test_compile_without_a_compiler_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(PrunekitError, match="needs a C.. compiler"):
        deploy(zoo("lenet300", False), SHAPES["lenet300"], runtime="compile", batch_size=2)
