"""Export a network to ONNX (ending in a sigmoid, float16-stored weights) and check parity."""

# The shipped network is the trained one with batch norms folded into the convolutions and every
# weight rounded to float16. The ONNX file must match that network within 1e-3 (it does to about
# 1e-6: it stores exactly those float16 values and computes in float32); how far folding and
# rounding moved the outputs from the trained float32 network is measured and reported beside it.

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from devolearn_web.training.models import WithSigmoid, input_shape

OPSET = 17
PARITY_TOLERANCE = 1e-3
# Initialisers smaller than this stay float32: they weigh nothing and some (resize scales)
# are read as constants by graph optimisers.
MIN_FLOAT16_ELEMENTS = 64
FLOAT16_MAX = float(np.finfo(np.float16).max)


def _dynamic_axes(network: nn.Module, example: torch.Tensor) -> dict:
    """Batch, height and width free: the app feeds 256x256, tests feed smaller images."""
    spatial = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad():
        output_rank = network(example).dim()
    return {"input": spatial, "output": spatial if output_rank == 4 else {0: "batch"}}


def export_to_onnx(network: nn.Module, path: Path, example: torch.Tensor, opset: int = OPSET):
    """Write `network` as float32 ONNX: input `input`, output `output`, dynamic batch axis."""
    network.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the torch.export one, which
        # needs onnxscript and takes minutes on 2 cores; its output here is the same graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Tracing turns shape checks (e.g. batch-norm's "more than one value") into constants;
        # the graph only needs the batch axis dynamic, which dynamic_axes declares.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            network,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=_dynamic_axes(network, example),
            do_constant_folding=True,
        )
    return path


def store_weights_as_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store large float32 initialisers as float16, each followed by a Cast back to float32."""
    # The file shrinks to about half while ONNX Runtime still computes in float32: it folds
    # the Casts into float32 constants when the session starts (same latency measured).
    graph = model.graph
    kept, halves, casts = [], [], []
    for initializer in graph.initializer:
        values = numpy_helper.to_array(initializer)
        convertible = (
            initializer.data_type == TensorProto.FLOAT
            and values.size >= MIN_FLOAT16_ELEMENTS
            and float(np.abs(values).max(initial=0.0)) <= FLOAT16_MAX
        )
        if not convertible:
            kept.append(initializer)
            continue
        stored_name = f"{initializer.name}__float16"
        halves.append(numpy_helper.from_array(values.astype(np.float16), stored_name))
        casts.append(
            helper.make_node(
                "Cast",
                [stored_name],
                [initializer.name],
                to=TensorProto.FLOAT,
                name=f"{initializer.name}__to_float32",
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept + halves)
    nodes = casts + list(graph.node)  # Casts first: the graph must stay topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """A copy of an eval-mode network with each BatchNorm2d folded into the Conv2d before it."""
    # Pairs are a Conv2d child immediately followed by a BatchNorm2d child of one module, which
    # is how ResNet blocks are built; export_network checks the folded network's outputs.
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(network).eval()
    for module in folded.modules():
        children = list(module.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return folded


@torch.no_grad()
def round_to_float16(network: nn.Module) -> nn.Module:
    """Round every floating parameter and buffer to the nearest float16 value (kept float32)."""
    for name, tensor in list(network.named_parameters()) + list(network.named_buffers()):
        if not tensor.is_floating_point():
            continue
        if float(tensor.abs().max()) > FLOAT16_MAX:
            raise ValueError(f"{name} exceeds the float16 range; export with --float32")
        tensor.copy_(tensor.half().float())
    return network


@dataclass(frozen=True)
class ExportReport:
    """How faithful an exported file is: to the shipped network, and to the float32 one."""

    parity_max_abs_difference: float  # ONNX vs the shipped (folded, rounded) network
    # Shipped vs trained network: the cost of folding batch norms and float16 weights.
    shipped_vs_trained_max_abs_difference: float
    shipped_vs_trained_mean_abs_difference: float
    size_bytes: int

    def to_dict(self) -> dict:
        return {
            "parity_max_abs_difference": self.parity_max_abs_difference,
            "shipped_vs_trained_max_abs_difference": self.shipped_vs_trained_max_abs_difference,
            "shipped_vs_trained_mean_abs_difference": self.shipped_vs_trained_mean_abs_difference,
            "size_bytes": self.size_bytes,
        }


def onnx_probabilities(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Run an ONNX file on the CPU with ONNX Runtime: float32 in, float32 out."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": inputs.astype(np.float32)})[0]


@torch.no_grad()
def pytorch_outputs(network: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """The network's float32 outputs for float32 inputs (N x C x H x W), in eval mode."""
    return network.eval()(torch.from_numpy(inputs.astype(np.float32))).numpy()


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute elementwise difference of two output arrays."""
    return float(np.abs(a - b).max())


def export_network(
    logit_network: nn.Module,
    model_name: str,
    path: Path,
    parity_inputs: np.ndarray,
    side: int = 256,
    float16_storage: bool = True,
    append_sigmoid: bool = True,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportReport:
    """Export logits + sigmoid to `path`; ValueError (no file) if parity exceeds `tolerance`."""
    trained = WithSigmoid(logit_network) if append_sigmoid else logit_network
    trained_outputs = pytorch_outputs(trained, parity_inputs)
    shipped = fold_batch_norms(trained)
    folding_error = max_difference(pytorch_outputs(shipped, parity_inputs), trained_outputs)
    if folding_error > 1e-4:
        raise ValueError(f"folding batch norms changed the outputs by {folding_error:.2e}")
    if float16_storage:
        round_to_float16(shipped)
    shipped_outputs = pytorch_outputs(shipped, parity_inputs)
    partial = path.with_name(path.name + ".partial")
    export_to_onnx(shipped, partial, torch.zeros(input_shape(model_name, side)))
    if float16_storage:
        onnx.save(store_weights_as_float16(onnx.load(str(partial))), str(partial))
    difference = max_difference(onnx_probabilities(partial, parity_inputs), shipped_outputs)
    if not difference <= tolerance:
        partial.unlink()
        raise ValueError(
            f"ONNX and PyTorch outputs differ by {difference:.2e} (> {tolerance:.0e}); "
            "the export is not faithful"
        )
    rounding = np.abs(shipped_outputs - trained_outputs)
    os.replace(partial, path)
    return ExportReport(
        parity_max_abs_difference=difference,
        shipped_vs_trained_max_abs_difference=float(rounding.max()),
        shipped_vs_trained_mean_abs_difference=float(rounding.mean()),
        size_bytes=path.stat().st_size,
    )


def blend_weights(start: onnx.ModelProto, tuned: onnx.ModelProto, weight: float) -> onnx.ModelProto:
    """`tuned` with every float weight moved to start + weight x (tuned - start).

    A fine-tune that learns something new forgets some of what it knew; the straight line
    between its weights and its starting weights keeps much of the new and most of the old
    (WiSE-FT, Wortsman et al. 2022). Both files hold batch norms folded into their convolutions,
    frozen during the fine-tune, so each folded weight is a trained weight times a fixed scale.
    """
    starting = {item.name: numpy_helper.to_array(item) for item in start.graph.initializer}
    blended = copy.deepcopy(tuned)
    for item in blended.graph.initializer:
        value = numpy_helper.to_array(item)
        other = starting.pop(item.name, None)
        if other is None or other.shape != value.shape or other.dtype != value.dtype:
            raise ValueError(f"the two files are not the same network (weight {item.name!r})")
        if not np.issubdtype(value.dtype, np.floating):
            continue
        mixed = other.astype(np.float64) + weight * (value.astype(np.float64) - other)
        item.CopyFrom(numpy_helper.from_array(mixed.astype(value.dtype), item.name))
    if starting:
        raise ValueError(f"the two files are not the same network ({len(starting)} weights more)")
    return blended
