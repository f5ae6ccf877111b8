"""Pre-activation bottleneck ResNets for CIFAR (He et al. 2016, "Identity mappings")."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import NormLayer, batch_norm, init_weights, register_backbone


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3(stride), BN-ReLU-conv1x1, plus a shortcut.

    `last_in_stage` marks bn3, the last BN of the block.
    """

    def __init__(self, in_channels: int, width: int, stride: int, norm_layer: NormLayer, last_in_stage: bool):
        super().__init__()
        inner = width // 4
        self.bn1 = norm_layer(in_channels, False)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn2 = norm_layer(inner, False)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, bias=False)
        self.bn3 = norm_layer(inner, last_in_stage)
        self.conv3 = nn.Conv2d(inner, width, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != width:
            self.shortcut = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # A projection shortcut reads the pre-activated input, as in He et al.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem conv3x3 (16), three stages of n bottlenecks (64/128/256 wide), final BN without ReLU.

    depth = 9n + 2. The final BN is the `last_in_stage` BN of the third stage.
    A 16-wide stem follows He et al. and the authors' code; `stem_width` changes it. Each bottleneck is a quarter
    of its output wide inside, as He et al.'s; the authors' are as wide as their input (the README lists it).
    """

    widths = (64, 128, 256)

    def __init__(self, depth: int, in_channels: int = 3, norm_layer: NormLayer = batch_norm,
                 stem_width: int = 16):
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError(f"depth must be 9n+2, got {depth}")
        n = (depth - 2) // 9
        self.stem = nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)
        blocks, channels = [], stem_width
        for stage, width in enumerate(self.widths):
            for i in range(n):
                last = i == n - 1 and stage < len(self.widths) - 1
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(PreActBottleneck(channels, width, stride, norm_layer, last))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = norm_layer(channels, True)
        self.out_features, self.num_stages = channels, len(self.widths)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_bn(self.blocks(self.stem(x))).mean(dim=(2, 3))


@register_backbone
def resnet29(in_channels: int = 3, norm_layer: NormLayer = batch_norm, **kwargs) -> PreActResNet:
    return PreActResNet(29, in_channels, norm_layer, **kwargs)


@register_backbone
def resnet56(in_channels: int = 3, norm_layer: NormLayer = batch_norm, **kwargs) -> PreActResNet:
    return PreActResNet(56, in_channels, norm_layer, **kwargs)
