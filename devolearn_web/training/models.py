"""The three networks (untrained, no downloaded weights); they all return raw logits."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from devolearn_web.training.specs import LINEAGES, get_spec


def build_fpn_resnet18() -> nn.Module:
    """FPN on ResNet-18 (segmentation_models_pytorch), 1 input channel, 1 logit per pixel."""
    import segmentation_models_pytorch as smp

    return smp.FPN(encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=1)


def build_lineage_resnet18() -> nn.Module:
    """torchvision ResNet-18 with fc = Linear(512, 7): one logit per lineage A..Z."""
    from torchvision.models import resnet18

    network = resnet18(weights=None)
    network.fc = nn.Linear(512, len(LINEAGES))
    return network


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "membrane": build_fpn_resnet18,
    "nucleus": build_fpn_resnet18,
    "lineage": build_lineage_resnet18,
}


def build_unet_resnet34() -> nn.Module:
    """U-Net on ResNet-34, output at full resolution: a reference to measure by, never shipped."""
    import segmentation_models_pytorch as smp

    return smp.Unet(encoder_name="resnet34", encoder_weights=None, in_channels=1, classes=1)


# To tell how much of a model's error is its architecture's and how much the data's
# (docs/training.md); the keys are specs.REFERENCE_NETWORK_NAMES.
REFERENCE_NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "fpn-resnet18": build_fpn_resnet18,
    "unet-resnet34": build_unet_resnet34,
}


def build_model(name: str) -> nn.Module:
    """A freshly initialised network for the named model (see specs.MODEL_SPECS)."""
    get_spec(name)  # an unknown name raises with the list of valid names
    return BUILDERS[name]()


def build_network(name: str, network: str | None) -> nn.Module:
    """The named model's own network, or a reference network (segmentation models only)."""
    if network is None:
        return build_model(name)
    if get_spec(name).task != "segmentation":
        raise ValueError(f"--network is for the segmentation models, not {name}")
    if network not in REFERENCE_NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose from {sorted(REFERENCE_NETWORKS)}")
    return REFERENCE_NETWORKS[network]()


class WithSigmoid(nn.Module):
    """Wraps a logit network so its output is a probability (or a scaled count) in [0, 1]."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.network(x))


def input_shape(name: str, side: int, batch: int = 1) -> tuple[int, int, int, int]:
    """The network input shape (N, C, H, W) for the named model at a square side."""
    return (batch, get_spec(name).channels, side, side)
