"""CIFAR-style ResNet-20 (He et al., 2016, section 4.2), with 1x1 conv projection shortcuts.

Module names: ``normalize``, ``conv1, bn1, relu`` (stem), ``layer{1,2,3}.{0,1,2}`` blocks
each with ``conv1, bn1, relu1, conv2, bn2, shortcut, relu2`` (``shortcut`` is
``nn.Identity`` or ``nn.Sequential(conv, bn)``, so ``layer2.0.shortcut.conv``), then
``pool, flatten, fc``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from prunekit.models.common import MODELS, Normalize, check_common, check_int, check_ints

RECIPES = {
    "resnet20": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "epochs": 30},
}


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU.

    ``inner`` is conv1's output width: channel pruning can shrink it without touching the
    residual stream (``planes``).
    """

    def __init__(self, in_planes: int, inner: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(in_planes, inner, stride)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(inner, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(planes),
                )
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, three stages of ``blocks`` BasicBlocks (stride 2 into stages 2 and 3), GAP, fc."""

    def __init__(self, in_channels, widths, blocks, inner, num_classes, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        inner_widths = iter(inner)
        in_planes = widths[0]
        for stage, planes in enumerate(widths, start=1):
            layer = []
            for b in range(blocks):
                stride = 2 if stage > 1 and b == 0 else 1
                layer.append(BasicBlock(in_planes, next(inner_widths), planes, stride))
                in_planes = planes
            self.add_module(f"layer{stage}", nn.Sequential(*layer))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


@MODELS.register("resnet20")
def resnet20(
    *,
    in_channels: int = 3,
    input_size: int = 32,
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    widths: Sequence[int] = (16, 32, 64),
    blocks: int = 3,
    inner: Sequence[int] | None = None,
) -> ResNet:
    """ResNet-20 for 32x32 (CIFAR) or 28x28 (MNIST-like) inputs; ~0.27M parameters.

    ``widths``: residual-stream channels of the three stages (the stem has ``widths[0]``).
    ``blocks``: BasicBlocks per stage (3 gives 20 layers; 5 gives ResNet-32).
    ``inner``: conv1 output width of every block, in order layer1.0, layer1.1, ...,
    layer3.{blocks-1} (3 * blocks values); default: the stage width.
    """
    check_common("resnet20", in_channels, input_size, num_classes, mean, std)
    widths = check_ints("resnet20", "widths", widths, length=3)
    blocks = check_int("resnet20", "blocks", blocks)
    if inner is None:
        inner = [w for w in widths for _ in range(blocks)]
    inner = check_ints("resnet20", "inner", inner, length=3 * blocks)
    return ResNet(in_channels, widths, blocks, inner, num_classes, mean, std)
