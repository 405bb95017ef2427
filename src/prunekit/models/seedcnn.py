"""The spec's small CNN ("seedcnn").

Module names: ``normalize``, ``features.{conv1, relu1, conv2, relu2, pool}``, ``flatten``,
``classifier.{fc1, relu1, fc2}``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from prunekit.models.common import MODELS, Normalize, check_common, check_int, check_ints, too_small

RECIPES = {
    "seedcnn": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "epochs": 10},
}


class SeedCNN(nn.Sequential):
    """conv3x3 -> ReLU -> conv3x3 -> ReLU -> avgpool2 -> Linear -> ReLU -> Linear."""

    def __init__(self, in_channels, input_size, channels, hidden, num_classes, mean, std):
        c1, c2 = channels
        side = seedcnn_feature_side(input_size)
        super().__init__(
            OrderedDict(
                normalize=Normalize(mean, std),
                features=nn.Sequential(
                    OrderedDict(
                        conv1=nn.Conv2d(in_channels, c1, 3),
                        relu1=nn.ReLU(),
                        conv2=nn.Conv2d(c1, c2, 3),
                        relu2=nn.ReLU(),
                        pool=nn.AvgPool2d(2),
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


def seedcnn_feature_side(input_size: int) -> int:
    """Spatial side after two unpadded conv3x3 and one avgpool2 (12 for 28x28)."""
    return (input_size - 4) // 2


@MODELS.register("seedcnn")
def seedcnn(
    *,
    in_channels: int = 1,
    input_size: int = 28,
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    channels: Sequence[int] = (32, 64),
    hidden: int = 512,
) -> SeedCNN:
    """The spec's CNN. ``channels``: output channels of conv1, conv2; ``hidden``: width of fc1.

    The flatten size is ``channels[1] * s * s`` with ``s = (input_size - 4) // 2``, i.e.
    64*12*12 = 9216 for 28x28 inputs. (The original article's 64*16*16 does not match a
    28x28 input: two unpadded 3x3 convs give 24x24, pooled to 12x12.) input_size must be >= 6.
    """
    check_common("seedcnn", in_channels, input_size, num_classes, mean, std)
    channels = check_ints("seedcnn", "channels", channels, length=2)
    hidden = check_int("seedcnn", "hidden", hidden)
    if seedcnn_feature_side(input_size) < 1:
        raise too_small("seedcnn", input_size, 6)
    return SeedCNN(in_channels, input_size, channels, hidden, num_classes, mean, std)
