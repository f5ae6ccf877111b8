"""DenseNet-BC for CIFAR (Huang et al. 2017): bottleneck layers and compressing transitions."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import NormLayer, batch_norm, init_weights, register_backbone


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1(4k), BN-ReLU-conv3x3(k); its k new maps are concatenated to the input."""

    def __init__(self, in_channels: int, growth_rate: int, norm_layer: NormLayer, last_in_stage: bool):
        super().__init__()
        inner = 4 * growth_rate
        self.bn1 = norm_layer(in_channels, False)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn2 = norm_layer(inner, last_in_stage)
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 shrinking channels by `compression`, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int, norm_layer: NormLayer):
        super().__init__()
        self.bn = norm_layer(in_channels, False)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(nn.Module):
    """Stem conv3x3 (2k), three dense blocks of (depth-4)/6 layers, final BN without ReLU.

    Each dense block is a stage: the second BN of its last layer is `last_in_stage`,
    except in the third block, where that role goes to the final BN.
    """

    def __init__(self, depth: int = 40, growth_rate: int = 12, compression: float = 0.5,
                 in_channels: int = 3, norm_layer: NormLayer = batch_norm):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        channels = 2 * growth_rate
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        for block in range(3):
            for i in range(n):
                last = i == n - 1 and block < 2
                layers.append(DenseLayer(channels, growth_rate, norm_layer, last))
                channels += growth_rate
            if block < 2:
                out_channels = int(channels * compression)
                layers.append(Transition(channels, out_channels, norm_layer))
                channels = out_channels
        layers.append(norm_layer(channels, True))
        self.features = nn.Sequential(*layers)
        self.out_features, self.num_stages = channels, 3
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


@register_backbone
def densenet40_bc(in_channels: int = 3, norm_layer: NormLayer = batch_norm, **kwargs) -> DenseNetBC:
    return DenseNetBC(depth=40, in_channels=in_channels, norm_layer=norm_layer, **kwargs)
