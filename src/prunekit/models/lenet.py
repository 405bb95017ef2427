"""LeNet-300-100 (an MLP) and LeNet-5-Caffe, the classic pruning benchmarks.

Module names (per-layer reports refer to these):

* ``lenet300``: ``normalize, flatten, fc1, relu1, fc2, relu2, fc3`` (one ``fc``/``relu``
  pair per hidden width; the last ``fc`` is the classifier).
* ``lenet5``: ``normalize``, ``features.{conv1, relu1, pool1, conv2, relu2, pool2}``,
  ``flatten``, ``classifier.{fc1, relu1, fc2}``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from prunekit.models.common import MODELS, Normalize, check_common, check_int, check_ints, too_small

RECIPES = {
    "lenet300": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "epochs": 10},
    "lenet5": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "epochs": 10},
}


class LeNet300(nn.Sequential):
    """Flatten -> Linear(C*H*W, h1) -> ReLU -> ... -> Linear(h_last, num_classes)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, mean, std):
        layers: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize(mean, std))
        layers["flatten"] = nn.Flatten()
        widths = [in_features, *hidden]
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False), start=1):
            layers[f"fc{i}"] = nn.Linear(a, b)
            layers[f"relu{i}"] = nn.ReLU()
        layers[f"fc{len(widths)}"] = nn.Linear(widths[-1], num_classes)
        super().__init__(layers)


class LeNet5(nn.Sequential):
    """LeNet-5-Caffe: conv5x5 -> ReLU -> maxpool2, twice, then two linear layers."""

    def __init__(self, in_channels, input_size, channels, hidden, num_classes, mean, std):
        c1, c2 = channels
        side = lenet5_feature_side(input_size)
        super().__init__(
            OrderedDict(
                normalize=Normalize(mean, std),
                features=nn.Sequential(
                    OrderedDict(
                        conv1=nn.Conv2d(in_channels, c1, 5),
                        relu1=nn.ReLU(),
                        pool1=nn.MaxPool2d(2),
                        conv2=nn.Conv2d(c1, c2, 5),
                        relu2=nn.ReLU(),
                        pool2=nn.MaxPool2d(2),
                    )
                ),
                flatten=nn.Flatten(),
                classifier=nn.Sequential(
                    OrderedDict(
                        fc1=nn.Linear(c2 * side * side, hidden),
                        relu1=nn.ReLU(),
                        fc2=nn.Linear(hidden, num_classes),
                    )
                ),
            )
        )


def lenet5_feature_side(input_size: int) -> int:
    """Spatial side after the two conv5x5 + maxpool2 stages (4 for 28x28)."""
    return ((input_size - 4) // 2 - 4) // 2


@MODELS.register("lenet300")
def lenet300(
    *,
    in_channels: int = 1,
    input_size: int = 28,
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    hidden: Sequence[int] = (300, 100),
) -> LeNet300:
    """LeNet-300-100. ``hidden``: widths of the hidden layers (fc1, fc2, ...)."""
    check_common("lenet300", in_channels, input_size, num_classes, mean, std)
    hidden = check_ints("lenet300", "hidden", hidden)
    return LeNet300(in_channels * input_size * input_size, hidden, num_classes, mean, std)


@MODELS.register("lenet5")
def lenet5(
    *,
    in_channels: int = 1,
    input_size: int = 28,
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    channels: Sequence[int] = (20, 50),
    hidden: int = 500,
) -> LeNet5:
    """LeNet-5-Caffe. ``channels``: output channels of conv1, conv2; ``hidden``: width of fc1.

    The flatten size is ``channels[1] * s * s`` with ``s = ((input_size-4)//2 - 4)//2``
    (800 for 28x28 inputs); input_size must be >= 16.
    """
    check_common("lenet5", in_channels, input_size, num_classes, mean, std)
    channels = check_ints("lenet5", "channels", channels, length=2)
    hidden = check_int("lenet5", "hidden", hidden)
    if lenet5_feature_side(input_size) < 1:
        raise too_small("lenet5", input_size, 16)
    return LeNet5(in_channels, input_size, channels, hidden, num_classes, mean, std)
