"""The 2-D side of image-to-LiDAR distillation: a frozen ResNet-50 with dilated last stages
(output stride 4) and a trainable 1x1-convolution head, upsampled x4 to full resolution and
L2-normalised per pixel.

The ResNet follows torchvision's layout and parameter names exactly (``conv1``, ``bn1``,
``layer1.0.conv1`` ... ``layer4.2.bn3``, ``downsample.0/1``), so weights load from a torchvision
state dict file or from a MoCo checkpoint (``state_dict`` with ``module.encoder_q.`` keys), always
from a local file: nothing is downloaded and torchvision is not needed.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ImageNet statistics, which every ResNet checkpoint we load was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (dilated) -> 1x1 to ``planes * 4`` channels, plus the shortcut."""

    def __init__(self, inplanes: int, planes: int, *, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class DilatedResNet50(nn.Module):
    """ResNet-50 trunk whose stages 2-4 trade their stride for dilation (output stride 4, 2048
    channels), as torchvision's ``replace_stride_with_dilation=[True, True, True]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes, self.dilation = 64, 1
        self.layer1 = self._make_layer(64, 3, dilate=False)
        self.layer2 = self._make_layer(128, 4, dilate=True)
        self.layer3 = self._make_layer(256, 6, dilate=True)
        self.layer4 = self._make_layer(512, 3, dilate=True)
        self.out_channels = 2048

    def _make_layer(self, planes: int, blocks: int, *, dilate: bool) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation *= 2
        layers = [Bottleneck(self.inplanes, planes, stride=1, dilation=previous)]
        self.inplanes = planes * 4
        layers += [
            Bottleneck(self.inplanes, planes, stride=1, dilation=self.dilation)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def read_resnet_weights(path: str | Path) -> dict[str, Tensor]:
    """ResNet-50 trunk weights from a torchvision state dict or a MoCo checkpoint, with the
    classifier (``fc``) dropped; raises naming the file when keys are missing or unexpected."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image encoder weights not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    prefixes = ("module.encoder_q.", "encoder_q.", "module.")
    trunk = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if not key.startswith("fc.") and not key.startswith("encoder_k."):
            trunk[key] = value
    with torch.device("meta"):  # the key names only: no 23.5 M parameters allocated
        expected = DilatedResNet50().state_dict()
    missing = sorted(set(expected) - set(trunk))
    unexpected = sorted(set(trunk) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a ResNet-50 checkpoint in torchvision or MoCo layout; missing "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
        )
    return trunk


class ImageEncoder(nn.Module):
    """Frozen dilated ResNet-50 + trainable 1x1 head: (B, 3, H, W) images in [0, 1] to
    L2-normalised (B, out_channels, H, W) pixel features (H, W multiples of 4).

    Args:
        out_channels: feature width, the 3-D network's output width (64 in SLidR).
        weights: local file with the trunk's weights; None keeps the random initialisation
            (only for tests and smoke runs: SLidR's image features must come pre-trained).
    """

    def __init__(self, *, out_channels: int = 64, weights: str | Path | None = None) -> None:
        super().__init__()
        self.trunk = DilatedResNet50()
        if weights is not None:
            self.trunk.load_state_dict(read_resnet_weights(weights))
        self.trunk.requires_grad_(False)
        self.head = nn.Conv2d(self.trunk.out_channels, out_channels, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> ImageEncoder:
        # The frozen trunk keeps its batch-norm statistics: it always runs in eval mode.
        super().train(mode)
        self.trunk.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            trunk = self.trunk((images - self.mean) / self.std)
        features = F.interpolate(self.head(trunk), scale_factor=4, mode="bilinear")
        return F.normalize(features, dim=1)
