"""The model zoo: shapes, parameter counts, normalization, rebuildability, tracing."""

from __future__ import annotations

import json

import pytest
import torch
from torch import fx

from prunekit.models import create_model, default_recipe, model_names
from prunekit.registry import PrunekitError

DEFAULT_INPUT = {
    "lenet300": (1, 28, 28),
    "lenet5": (1, 28, 28),
    "seedcnn": (1, 28, 28),
    "resnet20": (3, 32, 32),
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_zoo_names():
    assert model_names() == sorted(DEFAULT_INPUT)


@pytest.mark.parametrize("name", sorted(DEFAULT_INPUT))
def test_forward_shape_default_input(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    out = model(torch.rand(4, *DEFAULT_INPUT[name]))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_resnet20_both_inputs(shape):
    model = create_model("resnet20", in_channels=shape[0], input_size=shape[1]).eval()
    assert model(torch.rand(2, *shape)).shape == (2, 10)


def test_parameter_counts():
    # lenet300: 784*300+300 + 300*100+100 + 100*10+10
    assert n_params(create_model("lenet300")) == 235_500 + 30_100 + 1_010 == 266_610
    # lenet5: conv 1*20*25+20, conv 20*50*25+50, fc 800*500+500, fc 500*10+10
    assert n_params(create_model("lenet5")) == 520 + 25_050 + 400_500 + 5_010 == 431_080
    # seedcnn: conv 1*32*9+32, conv 32*64*9+64, fc 9216*512+512, fc 512*10+10
    assert n_params(create_model("seedcnn")) == 320 + 18_496 + 4_719_104 + 5_130 == 4_743_050
    # ResNet-20 with projection shortcuts: the usual 269,722 plus two 1x1 conv+BN
    assert n_params(create_model("resnet20")) == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)


def test_flatten_sizes_follow_input_size():
    assert create_model("lenet5").classifier.fc1.in_features == 800
    assert create_model("seedcnn").classifier.fc1.in_features == 9216
    assert create_model("lenet5", input_size=32).classifier.fc1.in_features == 50 * 5 * 5
    assert create_model("seedcnn", input_size=32).classifier.fc1.in_features == 64 * 14 * 14


@pytest.mark.parametrize("name", sorted(DEFAULT_INPUT))
def test_normalization_in_state_dict(name):
    c, h, _ = DEFAULT_INPUT[name]
    model = create_model(name, mean=0.5, std=0.25)
    state = model.state_dict()
    assert state["normalize.mean"].item() == 0.5
    assert state["normalize.std"].item() == 0.25
    x = torch.full((2, c, h, h), 0.5)
    assert torch.equal(model.normalize(x), torch.zeros_like(x))
    assert torch.equal(model.normalize(torch.full((1, c, h, h), 0.75)), torch.ones(1, c, h, h))


def test_per_channel_normalization():
    model = create_model("resnet20", mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5])
    x = torch.tensor([0.1, 0.2, 0.3]).reshape(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.equal(model.normalize(x), torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("name", sorted(DEFAULT_INPUT))
def test_rebuild_from_json_kwargs_is_identical(name):
    kwargs = json.loads(json.dumps({"num_classes": 5, "mean": 0.3, "std": 0.2}))
    torch.manual_seed(1)
    a = create_model(name, **kwargs).state_dict()
    torch.manual_seed(1)
    b = create_model(name, **kwargs).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_width_args_set_layer_shapes():
    m = create_model("lenet300", hidden=(30, 10))
    assert m.fc1.weight.shape == (30, 784)
    assert m.fc2.weight.shape == (10, 30)
    assert m.fc3.weight.shape == (10, 10)
    m = create_model("lenet5", channels=[6, 16], hidden=40)
    assert m.features.conv1.weight.shape == (6, 1, 5, 5)
    assert m.features.conv2.weight.shape == (16, 6, 5, 5)
    assert m.classifier.fc1.weight.shape == (40, 16 * 4 * 4)
    m = create_model("seedcnn", channels=[8, 12], hidden=20)
    assert m.features.conv2.weight.shape == (12, 8, 3, 3)
    assert m.classifier.fc1.weight.shape == (20, 12 * 12 * 12)
    m = create_model("resnet20", widths=[8, 16, 24], blocks=1)
    assert m.layer3[0].conv1.weight.shape == (24, 16, 3, 3)
    assert m.layer3[0].conv2.weight.shape == (24, 24, 3, 3)
    assert m.layer3[0].shortcut.conv.weight.shape == (24, 16, 1, 1)
    assert m.fc.weight.shape == (10, 24)


def test_resnet20_inner_widths():
    inner = [4, 5, 6, 7, 8, 9, 10, 11, 12]
    torch.manual_seed(0)
    model = create_model("resnet20", in_channels=1, input_size=28, inner=inner).eval()
    blocks = [b for layer in (model.layer1, model.layer2, model.layer3) for b in layer]
    assert [b.conv1.out_channels for b in blocks] == inner
    assert [b.conv2.out_channels for b in blocks] == [16] * 3 + [32] * 3 + [64] * 3
    assert model.layer1[2].bn1.num_features == 6
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_model_lists_known_names():
    with pytest.raises(PrunekitError, match="known: lenet300, lenet5, resnet20, seedcnn"):
        create_model("lenet")
    with pytest.raises(PrunekitError, match="lenet300"):
        default_recipe("nope")


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("lenet300", {"widths": [3]}, "unknown argument.*widths"),
        ("lenet5", {"input_size": 12}, "input_size=12 is too small"),
        ("seedcnn", {"input_size": 5}, "too small"),
        ("lenet5", {"channels": [20]}, "channels needs 2"),
        ("resnet20", {"inner": [16] * 8}, "inner needs 9"),
        ("resnet20", {"std": 0.0}, "std must be > 0"),
        ("resnet20", {"mean": [0.1, 0.2]}, "mean must be"),
        ("lenet300", {"hidden": [30, 1.5]}, "hidden must be an int"),
        ("seedcnn", {"num_classes": 0}, "num_classes must be >= 1"),
    ],
)
def test_bad_kwargs_raise(name, kwargs, message):
    with pytest.raises(PrunekitError, match=message) as err:
        create_model(name, **kwargs)
    assert repr(name) in str(err.value)


def test_minimum_input_sizes_build():
    assert create_model("lenet5", input_size=16)(torch.rand(1, 1, 16, 16)).shape == (1, 10)
    assert create_model("seedcnn", input_size=6)(torch.rand(1, 1, 6, 6)).shape == (1, 10)


def test_default_recipes():
    for name in model_names():
        recipe = default_recipe(name)
        assert {"lr", "momentum", "weight_decay", "batch_size"} <= set(recipe)
        json.dumps(recipe)
    default_recipe("lenet300")["lr"] = -1.0  # a copy: the default is untouched
    assert default_recipe("lenet300")["lr"] > 0


@pytest.mark.parametrize("name", sorted(DEFAULT_INPUT))
def test_fx_trace_matches(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    traced = fx.symbolic_trace(model)
    x = torch.rand(3, *DEFAULT_INPUT[name])
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(traced(x), expected)
        assert torch.equal(model(x), expected)  # deterministic forward
    buffers = {n.target for n in traced.graph.nodes if n.op == "get_attr"}
    assert {"normalize.mean", "normalize.std"} <= buffers
