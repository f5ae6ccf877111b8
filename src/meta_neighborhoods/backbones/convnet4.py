"""The authors' 4-layer ConvNet for MNIST, MNIST-M, SVHN and PACS (192 features)."""

import torch
import torch.nn as nn

from .base import NormLayer, batch_norm, init_weights, register_backbone


class ConvNet4(nn.Module):
    """conv3x3-BN-ReLU x4 (24, 96, 192, 192 channels), max-pool after the first two.

    Each conv is a stage, so every BN is `last_in_stage`. The last BN has no ReLU.
    """

    widths = (24, 96, 192, 192)

    def __init__(self, in_channels: int = 3, norm_layer: NormLayer = batch_norm):
        super().__init__()
        layers = []
        for i, width in enumerate(self.widths):
            # Convs carry no bias: the BN that follows has its own shift.
            layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), norm_layer(width, True)]
            if i < len(self.widths) - 1:
                layers.append(nn.ReLU(inplace=True))
            if i < 2:
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.out_features, self.num_stages = in_channels, len(self.widths)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


@register_backbone
def convnet4(in_channels: int = 3, norm_layer: NormLayer = batch_norm) -> ConvNet4:
    return ConvNet4(in_channels, norm_layer)
