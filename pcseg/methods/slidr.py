"""SLidR image-to-LiDAR distillation: pre-train the 3-D backbone so that the mean feature of the
points in each image superpixel matches the mean feature of its pixels under a frozen 2-D
network, contrasted against every other superpixel of the batch (InfoNCE, temperature 0.07).

Both sides end in 64-d L2-normalised features; superpixel means are used as they are (SLidR does
not re-normalise them). Superpixels without points are dropped. The pre-trained backbone then
initialises fine-tuning or a linear probe through ``model.init_from``, which takes only the
backbone's weights from a pre-training checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcseg.data.collate import PointBatch
from pcseg.methods import METHODS
from pcseg.models.image_encoder import ImageEncoder
from pcseg.models.segmentor import Segmentor, sparse_input
from pcseg.ops import superpixel_pool


class ImageLidarModel(nn.Module):
    """A segmentor's backbone with a 64-d point projection, beside a 2-D encoder."""

    def __init__(self, segmentor: Segmentor, *, image_encoder: ImageEncoder, feature_dim: int):
        super().__init__()
        self.backbone = segmentor.backbone
        self.point_head = nn.Linear(self.backbone.out_channels, feature_dim)
        self.image_encoder = image_encoder

    def point_features(self, voxel_coords: Tensor, voxel_feat: Tensor, batch_size: int) -> Tensor:
        """(V, D) L2-normalised voxel features."""
        x = sparse_input(voxel_coords, voxel_feat, batch_size, levels=self.backbone.num_stages)
        return F.normalize(self.point_head(self.backbone(x)), dim=1)


def superpixel_contrastive_loss(
    point_feat: Tensor,
    pixel_feat: Tensor,
    pairing: Tensor,
    superpixels: Tensor,
    *,
    temperature: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """InfoNCE between point-side and pixel-side superpixel means.

    Args:
        point_feat: (N, D) point features. pixel_feat: (I, D, H, W) pixel features.
        pairing: int64 (P, 4) (point, image, row, col). superpixels: int64 (I, H, W).
        temperature: softmax temperature tau.

    Returns:
        The loss and logs (superpixels used, top-1 accuracy of matching them).
    """
    images, dim = pixel_feat.shape[:2]
    per_image = int(superpixels.max()) + 1 if superpixels.numel() else 1
    num_segments = images * per_image
    image_base = torch.arange(images, device=superpixels.device) * per_image
    pair_segment = (
        image_base[pairing[:, 1]] + superpixels[pairing[:, 1], pairing[:, 2], pairing[:, 3]]
    )
    k, count = superpixel_pool(point_feat, pairing[:, 0], pair_segment, num_segments)
    pixel_rows = pixel_feat.permute(0, 2, 3, 1).reshape(-1, dim)
    pixel_segment = (image_base[:, None] + superpixels.reshape(images, -1)).reshape(-1)
    everything = torch.arange(len(pixel_rows), device=pixel_rows.device)
    q, _ = superpixel_pool(pixel_rows, everything, pixel_segment, num_segments)
    used = count > 0
    k, q = k[used], q[used]
    if len(k) < 2:
        raise ValueError(
            f"only {len(k)} superpixel(s) hold points in this batch: nothing to contrast "
            "(check the cameras' calibration and the crop's min_pairings)"
        )
    logits = k @ q.T / temperature
    target = torch.arange(len(k), device=k.device)
    loss = F.cross_entropy(logits, target)
    accuracy = (logits.detach().argmax(1) == target).float().mean()
    return loss, {"superpixels": used.sum(), "match_accuracy": accuracy}


@METHODS.register("slidr")
class SLidR:
    """Superpixel-driven image-to-LiDAR distillation (pre-training; no labels are used).

    Args:
        temperature: InfoNCE temperature (0.07).
        feature_dim: width of the normalised point and pixel features (64).
        image_weights: local ResNet-50 weights (torchvision layout or a MoCo checkpoint); None
            keeps a random 2-D network, which distils only what random filters see.
    """

    views = 1
    pretrains_backbone = True

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        feature_dim: int = 64,
        image_weights: str | None = None,
    ) -> None:
        if temperature <= 0 or feature_dim < 1:
            raise ValueError(
                f"temperature must be > 0 and feature_dim >= 1, got {temperature}, {feature_dim}"
            )
        if image_weights is not None and not Path(image_weights).is_file():
            raise ValueError(f"image_weights: {image_weights} is not a file")
        self.temperature = float(temperature)
        self.feature_dim = int(feature_dim)
        self.image_weights = image_weights

    def wrap_model(self, model: Segmentor) -> ImageLidarModel:
        encoder = ImageEncoder(out_channels=self.feature_dim, weights=self.image_weights)
        return ImageLidarModel(model, image_encoder=encoder, feature_dim=self.feature_dim)

    def training_step(
        self, model: ImageLidarModel, batch: PointBatch, *, epoch: float = 0.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if batch.pairing is None or batch.images is None or batch.superpixels is None:
            raise ValueError(
                f"slidr needs camera data, which batch {batch.scene_ids} lacks: set "
                "data.train.cameras"
            )
        voxels = model.point_features(batch.voxel_coords, batch.voxel_feat, batch.batch_size)
        pixels = model.image_encoder(batch.images)
        loss, logs = superpixel_contrastive_loss(
            voxels[batch.inverse],
            pixels,
            batch.pairing,
            batch.superpixels,
            temperature=self.temperature,
        )
        return loss, {"loss": loss.detach(), **logs}


__all__ = ["ImageLidarModel", "SLidR", "superpixel_contrastive_loss"]
