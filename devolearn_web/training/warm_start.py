"""Start training from a shipped ONNX file: its weights back into the PyTorch network.

The exporter folds each batch norm into the convolution before it (weight W', bias b'), so the
file has no batch-norm parameters. They are rebuilt so that the network computes exactly what
the file computes, and trains as a network with batch norm again: each folded convolution keeps
W' (no bias), and its batch norm gets the mean m and variance v of W' * x over sample images,
with scale sqrt(v + eps) and shift m + b'. In evaluation that is (z - m) / sqrt(v + eps) *
sqrt(v + eps) + m + b' = z + b'; in training the batch statistics are close to m and v.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from devolearn_web.training.loop import network_device
from devolearn_web.training.quantize import float32_weights, network_inputs

STATISTICS_IMAGES = 256


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The file's initialisers by name, float16 storage undone (float32 arrays)."""
    model = float32_weights(onnx.load(str(path)))
    return {item.name: numpy_helper.to_array(item).copy() for item in model.graph.initializer}


def statistics_images(model: str, index_csv: Path, count: int = STATISTICS_IMAGES) -> torch.Tensor:
    """Training images, as the network sees them, for the rebuilt batch-norm statistics."""
    return torch.from_numpy(network_inputs(model, index_csv, "train", count))


def folded_pairs(network: nn.Module) -> list[tuple[str, str]]:
    """(convolution, batch norm) module names where a bias-free convolution feeds a batch norm
    registered right after it (torchvision's and timm's ResNets, smp's encoders)."""
    modules = list(network.named_modules())
    pairs = []
    for (name, module), (next_name, following) in zip(modules, modules[1:], strict=False):
        if (
            isinstance(module, nn.Conv2d)
            and module.bias is None
            and isinstance(following, nn.BatchNorm2d)
        ):
            pairs.append((name, next_name))
    return pairs


def load_onnx_weights(
    network: nn.Module, path: Path, images: torch.Tensor, prefix: str = "network."
) -> None:
    """Set `network`'s weights from the ONNX file it was exported to (same architecture).

    `images` (N, C, H, W float32, as the network sees them) give the batch-norm statistics;
    the exporter wraps the network (export.WithSigmoid), hence the `prefix` of the file's names.
    """
    weights = {
        name.removeprefix(prefix): value
        for name, value in onnx_weights(path).items()
        if name.startswith(prefix)
    }
    pairs = folded_pairs(network)
    modules = dict(network.named_modules())
    state = network.state_dict()
    folded_bias: dict[str, torch.Tensor] = {}
    for conv_name, norm_name in pairs:
        state[f"{conv_name}.weight"] = torch.from_numpy(weights.pop(f"{conv_name}.weight"))
        # On the network's device: the statistics below are measured there (a GPU run).
        folded_bias[norm_name] = torch.from_numpy(weights.pop(f"{conv_name}.bias")).to(
            network_device(network)
        )
    for key, value in weights.items():
        if key not in state:
            raise ValueError(f"{path} has a weight {key!r} that the network does not have")
        state[key] = torch.from_numpy(value).reshape(state[key].shape)
    network.load_state_dict(state)
    # First each batch norm only adds the folded bias (evaluation mode, statistics 0 and 1):
    # the network is then the file's network, and each norm's input is W' * x.
    for norm_name, bias in folded_bias.items():
        norm = modules[norm_name]
        with torch.no_grad():
            norm.weight.fill_(1.0)
            norm.bias.copy_(bias)
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
    mean, variance = _input_statistics(
        network, {name: modules[name] for name in folded_bias}, images
    )
    for norm_name, bias in folded_bias.items():
        norm = modules[norm_name]
        with torch.no_grad():
            norm.running_mean.copy_(mean[norm_name])
            norm.running_var.copy_(variance[norm_name])
            norm.weight.copy_(torch.sqrt(variance[norm_name] + norm.eps))
            norm.bias.copy_(mean[norm_name] + bias)


def _input_statistics(
    network: nn.Module, norms: dict[str, nn.BatchNorm2d], images: torch.Tensor, batch: int = 16
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-channel mean and variance of each named batch norm's input over `images`."""
    names = {id(norm): name for name, norm in norms.items()}
    sums: dict[str, list] = {}

    def record(module, inputs, _output):
        values = inputs[0].detach().double().transpose(0, 1).flatten(1)
        total = sums.setdefault(names[id(module)], [0, 0.0, 0.0])
        total[0] += values.shape[1]
        total[1] = total[1] + values.sum(dim=1)
        total[2] = total[2] + (values * values).sum(dim=1)

    handles = [norm.register_forward_hook(record) for norm in norms.values()]
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                network(images[start : start + batch])
    finally:
        for handle in handles:
            handle.remove()
        network.train(was_training)
    mean = {name: (s / count).float() for name, (count, s, _) in sums.items()}
    variance = {
        name: (squares / count - (s / count) ** 2).clamp(min=0).float()
        for name, (count, s, squares) in sums.items()
    }
    return mean, variance
