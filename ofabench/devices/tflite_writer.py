"""Write TFLite flatbuffers for the OFA op vocabulary straight from PyTorch modules.

No TensorFlow and no converter: the graph is assembled with the flatbuffer object API that
LiteRT ships (``ai_edge_litert.schema_py_generated``), one TFLite op per PyTorch op, batch norm
folded into the preceding convolution.

Conventions of the written models:

- ``input_shape`` is given as PyTorch gives it (NCHW); the TFLite model takes and returns
  **NHWC** tensors for 4-D shapes (other ranks are kept as they are). A classifier's ``[N, K]``
  output is identical to PyTorch's.
- Convolution weights are OHWI, depthwise weights ``[1, kh, kw, C * multiplier]``; every conv
  carries a float32 bias (zeros when PyTorch has none).
- Padding: PyTorch's symmetric padding becomes TFLite ``SAME`` where the two agree (stride 1 with
  odd kernels, stride 2 on odd inputs), ``VALID`` for no padding, and an explicit ``PAD`` followed
  by a ``VALID`` convolution otherwise (stride 2 on even inputs, where ``SAME`` pads one less row
  on top than PyTorch does).
- ReLU and ReLU6 are fused into the op they follow; h-swish is the ``HARD_SWISH`` op; h-sigmoid,
  which TFLite lacks, is ``ADD(x, 3)`` with a fused ReLU6 followed by ``MUL(., 1/6)``.
- Modules are converted as in eval mode (batch norm uses its running statistics, dropout is the
  identity).

Supported modules: ofabench's static :class:`~ofabench.supernet.static.MobileNetV3`,
:class:`~ofabench.supernet.static.MBConv` and :class:`~ofabench.supernet.static.SqueezeExcite`
(dedicated converters), ``nn.Sequential`` chains of ``Conv2d`` (plain, depthwise, grouped),
``BatchNorm2d``, ``ReLU``, ``ReLU6``, ``Hardswish``, ``Hardsigmoid``, ``AdaptiveAvgPool2d(1)``,
``Flatten``, ``Linear``, ``Dropout`` and ``Identity``, and any other module torch.fx can trace
into the vocabulary of :mod:`~ofabench.devices.tflite_graph` (torchvision's MobileNets,
MnasNet, EfficientNet, ResNets, ShuffleNetV2; other families' static subnets). Anything else
raises :class:`~ofabench.errors.ExportError` naming the op.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..errors import ExportError, require
from ..supernet.static import MBConv, MobileNetV3, SqueezeExcite

log = logging.getLogger("ofabench")

TFLITE_FILE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3
BUFFER_ALIGNMENT = 16
_EXTENDED_OPCODE = 127  # BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES


@cache
def _schema() -> ModuleType:
    """LiteRT's generated TFLite schema module (object API), imported on first use."""
    return require("ai_edge_litert.schema_py_generated", "tflite")


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph being written: its index and its (NHWC for 4-D) shape."""

    index: int
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[-1]


class TFLiteGraph:
    """One float32 subgraph under construction: tensors, constant buffers and operators."""

    def __init__(self) -> None:
        self.schema = _schema()
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [self.schema.BufferT()]  # buffer 0: the empty sentinel
        self.operators: list[Any] = []
        self.opcodes: dict[int, int] = {}
        self.producers: dict[int, tuple[str, Any]] = {}  # output tensor -> (op name, operator)

    # -- tensors -----------------------------------------------------------------------------
    def _tensor(self, name: str, shape: Sequence[int], dtype: str, buffer: int) -> Tensor:
        t = self.schema.TensorT()
        t.name = name
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = getattr(self.schema.TensorType, dtype)
        t.buffer = buffer
        self.tensors.append(t)
        return Tensor(len(self.tensors) - 1, tuple(int(s) for s in shape))

    def activation(self, name: str, shape: Sequence[int]) -> Tensor:
        """A runtime tensor (no data)."""
        return self._tensor(name, shape, "FLOAT32", 0)

    def constant(self, name: str, value: np.ndarray | Sequence[float]) -> Tensor:
        """A constant float32 (or int32, for integer arrays) tensor backed by a buffer."""
        array = np.asarray(value)
        dtype = "INT32" if array.dtype.kind in "iu" else "FLOAT32"
        array = np.ascontiguousarray(array, dtype=np.int32 if dtype == "INT32" else np.float32)
        buffer = _AlignedBufferT()
        buffer.data = np.frombuffer(array.tobytes(), dtype=np.uint8)
        self.buffers.append(buffer)
        return self._tensor(name, array.shape, dtype, len(self.buffers) - 1)

    # -- operators ---------------------------------------------------------------------------
    def _opcode(self, name: str) -> int:
        code = getattr(self.schema.BuiltinOperator, name)
        if code not in self.opcodes:
            self.opcodes[code] = len(self.opcodes)
        return self.opcodes[code]

    def op(
        self,
        name: str,
        inputs: Sequence[Tensor | None],
        out_shape: Sequence[int],
        options: Any = None,
        label: str = "",
    ) -> Tensor:
        """Append the builtin op ``name`` (e.g. ``"CONV_2D"``); return its new output tensor.
        ``None`` in ``inputs`` marks an omitted optional input."""
        out = self.activation(label or f"{name.lower()}_{len(self.operators)}", out_shape)
        op = self.schema.OperatorT()
        op.opcodeIndex = self._opcode(name)
        op.inputs = np.asarray([-1 if t is None else t.index for t in inputs], dtype=np.int32)
        op.outputs = np.asarray([out.index], dtype=np.int32)
        if options is not None:
            option_name = type(options).__name__.removesuffix("T")
            op.builtinOptionsType = getattr(self.schema.BuiltinOptions, option_name)
            op.builtinOptions = options
        self.operators.append(op)
        self.producers[out.index] = (name, op)
        return out

    def options(self, name: str, **fields: Any) -> Any:
        """An options object of the schema (``options("Conv2DOptions", strideH=2)``)."""
        opts = getattr(self.schema, f"{name}T")()
        for key, value in fields.items():
            if not hasattr(opts, key):
                raise ExportError(f"TFLite {name} has no field {key!r}")
            setattr(opts, key, value)
        return opts

    # -- serialisation -----------------------------------------------------------------------
    def serialize(
        self, inputs: Sequence[Tensor], outputs: Sequence[Tensor], description: str
    ) -> bytes:
        """The finished flatbuffer (file identifier ``TFL3``)."""
        import flatbuffers

        s = self.schema
        subgraph = s.SubGraphT()
        subgraph.name = "main"
        subgraph.tensors = self.tensors
        subgraph.operators = self.operators
        subgraph.inputs = np.asarray([t.index for t in inputs], dtype=np.int32)
        subgraph.outputs = np.asarray([t.index for t in outputs], dtype=np.int32)
        model = s.ModelT()
        model.version = TFLITE_SCHEMA_VERSION
        model.description = description
        model.subgraphs = [subgraph]
        model.buffers = self.buffers
        model.operatorCodes = [_operator_code(s, code) for code in self.opcodes]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
        return bytes(builder.Output())


def _operator_code(schema: ModuleType, code: int) -> Any:
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = code
    opcode.deprecatedBuiltinCode = min(code, _EXTENDED_OPCODE)
    opcode.version = 1
    return opcode


class _AlignedBufferT:
    """A ``BufferT`` whose data starts on a 16-byte boundary (as TFLite's converter writes them)."""

    data: np.ndarray | None = None

    def Pack(self, builder: Any) -> int:  # noqa: N802 - the flatbuffer object API's name
        schema = _schema()
        payload = self.data.tobytes()
        builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
        builder.head -= len(payload)
        builder.Bytes[builder.head : builder.head + len(payload)] = payload
        data = builder.EndVector()
        schema.BufferStart(builder)
        schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


# -- ops ------------------------------------------------------------------------------------------
FUSABLE_ACTIVATIONS = {None: "NONE", "relu": "RELU", "relu6": "RELU6"}


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``[O, I/g, kh, kw]`` and bias ``[O]`` of ``conv`` with ``bn`` folded in."""
    weight = to_numpy(conv.weight).astype(np.float64)
    bias = (
        to_numpy(conv.bias).astype(np.float64)
        if conv.bias is not None
        else np.zeros(weight.shape[0])
    )
    if bn is not None:
        scale, shift = batch_norm_affine(bn)
        weight = weight * scale[:, None, None, None]
        bias = bias * scale + shift
    return weight.astype(np.float32), bias.astype(np.float32)


def batch_norm_affine(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode batch norm as ``x * scale + shift`` (float64)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ExportError("cannot fold a BatchNorm2d without running statistics into TFLite")
    mean = to_numpy(bn.running_mean).astype(np.float64)
    var = to_numpy(bn.running_var).astype(np.float64)
    gamma = to_numpy(bn.weight).astype(np.float64) if bn.weight is not None else np.ones_like(mean)
    beta = to_numpy(bn.bias).astype(np.float64) if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _torch_pads(conv: nn.Conv2d) -> tuple[tuple[int, int], ...]:
    """PyTorch's (before, after) zero padding of each spatial axis."""
    if conv.padding_mode != "zeros":
        raise ExportError(f"Conv2d padding_mode {conv.padding_mode!r} is not supported; use zeros")
    if conv.padding == "valid":
        return ((0, 0), (0, 0))
    if conv.padding == "same":
        totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in conv.padding)


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """What TFLite's ``SAME`` padding adds before and after one axis."""
    effective = dilation * (kernel - 1) + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _conv_padding(g: TFLiteGraph, x: Tensor, conv: nn.Conv2d) -> tuple[Tensor, int, list[int]]:
    """The input (padded by a PAD op if needed), the TFLite padding that reproduces PyTorch's,
    and the output's height and width."""
    pads = _torch_pads(conv)
    axes = list(zip(x.shape[1:3], conv.kernel_size, conv.stride, conv.dilation))
    out_hw = [(n + sum(p) - d * (k - 1) - 1) // s + 1 for (n, k, s, d), p in zip(axes, pads)]
    if min(out_hw) < 1:
        raise ExportError(f"Conv2d {conv} leaves no output for an input of shape {list(x.shape)}")
    if all(p == (0, 0) for p in pads):
        return x, g.schema.Padding.VALID, out_hw
    if tuple(same_pads(*axis) for axis in axes) == pads:
        return x, g.schema.Padding.SAME, out_hw
    return pad(g, x, pads), g.schema.Padding.VALID, out_hw


def pad(g: TFLiteGraph, x: Tensor, pads: tuple[tuple[int, int], ...]) -> Tensor:
    """Zero-pad the two spatial axes of an NHWC tensor."""
    paddings = np.asarray([(0, 0), *pads, (0, 0)], dtype=np.int32)
    n, h, w, c = x.shape
    out_shape = (n, h + sum(pads[0]), w + sum(pads[1]), c)
    return g.op("PAD", [x, g.constant("paddings", paddings)], out_shape, g.options("PadOptions"))


def conv2d(
    g: TFLiteGraph,
    x: Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d | None = None,
    act: str | None = None,
) -> Tensor:
    """``act(bn(conv(x)))`` as one CONV_2D or DEPTHWISE_CONV_2D (BN folded; ReLU/ReLU6 fused;
    h-swish and h-sigmoid as ops after it)."""
    if len(x.shape) != 4:
        raise ExportError(f"Conv2d needs a 4-D input, got shape {list(x.shape)}")
    weight, bias = fold_batch_norm(conv, bn)
    fused = act if act in FUSABLE_ACTIVATIONS else None
    x, padding, out_hw = _conv_padding(g, x, conv)
    fields = {
        "padding": padding,
        "strideH": conv.stride[0],
        "strideW": conv.stride[1],
        "dilationHFactor": conv.dilation[0],
        "dilationWFactor": conv.dilation[1],
        "fusedActivationFunction": getattr(
            g.schema.ActivationFunctionType, FUSABLE_ACTIVATIONS[fused]
        ),
    }
    name, kernel, options = _conv_kind(g, conv, weight, fields)
    out_shape = (x.shape[0], *out_hw, conv.out_channels)
    out = g.op(name, [x, kernel, g.constant("bias", bias)], out_shape, options)
    return out if act == fused else activation(g, out, act)


def _conv_kind(
    g: TFLiteGraph, conv: nn.Conv2d, weight: np.ndarray, fields: dict[str, Any]
) -> tuple[str, Tensor, Any]:
    """The op name, weight tensor and options of a plain, depthwise or grouped convolution.

    A grouped convolution is a CONV_2D whose weights have ``in_channels / groups`` input
    channels: TFLite infers the groups from that depth (LiteRT's kernels run it; an older
    runtime without grouped support refuses the model when it loads it)."""
    in_c, out_c, groups = conv.in_channels, conv.out_channels, conv.groups
    if groups != 1 and groups == in_c and out_c % in_c == 0:  # [O, 1, kh, kw] -> [1, kh, kw, O]
        kernel = g.constant("dw_weights", weight.transpose(1, 2, 3, 0))
        options = g.options("DepthwiseConv2DOptions", depthMultiplier=out_c // in_c, **fields)
        return "DEPTHWISE_CONV_2D", kernel, options
    kernel = g.constant("conv_weights", weight.transpose(0, 2, 3, 1))  # OIHW -> OHWI
    return "CONV_2D", kernel, g.options("Conv2DOptions", **fields)


def activation(g: TFLiteGraph, x: Tensor, name: str | None) -> Tensor:
    """``relu``, ``relu6``, ``h_swish`` or ``h_sigmoid`` as TFLite ops (``None``: identity)."""
    if name is None:
        return x
    if name in ("relu", "relu6"):
        return g.op(name.upper(), [x], x.shape)
    if name == "h_swish":
        return g.op("HARD_SWISH", [x], x.shape, g.options("HardSwishOptions"))
    if name == "h_sigmoid":
        return hard_sigmoid(g, x)
    raise ExportError(
        f"activation {name!r} has no TFLite form here; supported: relu, relu6, h_swish, h_sigmoid"
    )


def hard_sigmoid(g: TFLiteGraph, x: Tensor) -> Tensor:
    """``relu6(x + 3) / 6`` as ADD (fused RELU6) then MUL: TFLite has no hard-sigmoid op."""
    relu6 = g.schema.ActivationFunctionType.RELU6
    shifted = g.op(
        "ADD",
        [x, g.constant("three", np.full((1,), 3.0))],
        x.shape,
        g.options("AddOptions", fusedActivationFunction=relu6),
    )
    return multiply(g, shifted, g.constant("one_sixth", np.full((1,), 1.0 / 6.0)))


def add(g: TFLiteGraph, a: Tensor, b: Tensor) -> Tensor:
    return g.op("ADD", [a, b], broadcast_shape(a, b), g.options("AddOptions"))


def multiply(g: TFLiteGraph, a: Tensor, b: Tensor) -> Tensor:
    return g.op("MUL", [a, b], broadcast_shape(a, b), g.options("MulOptions"))


def broadcast_shape(a: Tensor, b: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in np.broadcast_shapes(a.shape, b.shape))


def spatial_mean(g: TFLiteGraph, x: Tensor) -> Tensor:
    """Global average pool of an NHWC tensor, kept 4-D: MEAN over H, W with keep_dims."""
    axes = g.constant("mean_axes", np.asarray([1, 2], dtype=np.int32))
    n, _, _, c = x.shape
    return g.op("MEAN", [x, axes], (n, 1, 1, c), g.options("ReducerOptions", keepDims=True))


def flatten(g: TFLiteGraph, x: Tensor) -> Tensor:
    """``torch.flatten(x, 1)`` of an NHWC tensor (a TRANSPOSE to NCHW first unless H = W = 1)."""
    if len(x.shape) == 2:
        return x
    if len(x.shape) == 4 and x.shape[1:3] != (1, 1):
        perm = g.constant("perm", np.asarray([0, 3, 1, 2], dtype=np.int32))
        n, h, w, c = x.shape
        x = g.op("TRANSPOSE", [x, perm], (n, c, h, w), g.options("TransposeOptions"))
    new_shape = (x.shape[0], int(np.prod(x.shape[1:])))
    return g.op(
        "RESHAPE",
        [x, g.constant("shape", np.asarray(new_shape, dtype=np.int32))],
        new_shape,
        g.options("ReshapeOptions", newShape=list(new_shape)),
    )


def linear(g: TFLiteGraph, x: Tensor, fc: nn.Linear) -> Tensor:
    """A FULLY_CONNECTED layer on a 2-D input (weights ``[out, in]`` as PyTorch stores them)."""
    if len(x.shape) != 2:
        raise ExportError(f"Linear needs a 2-D input here (flatten first), got {list(x.shape)}")
    bias = to_numpy(fc.bias) if fc.bias is not None else np.zeros(fc.out_features, np.float32)
    inputs = [x, g.constant("fc_weights", to_numpy(fc.weight)), g.constant("fc_bias", bias)]
    return g.op(
        "FULLY_CONNECTED", inputs, (x.shape[0], fc.out_features), g.options("FullyConnectedOptions")
    )


# -- modules ---------------------------------------------------------------------------------------
def _act_of(name: str) -> str:
    """ofabench's activation names (``relu``, ``relu6``, ``h_swish``) as :func:`activation`
    names; another name is refused rather than guessed."""
    if name not in ("relu", "relu6", "h_swish"):
        raise ExportError(
            f"block activation {name!r} has no TFLite form; known: relu, relu6, h_swish"
        )
    return name


def convert_squeeze_excite(g: TFLiteGraph, se: SqueezeExcite, x: Tensor) -> Tensor:
    """MEAN -> 1x1 conv + ReLU -> 1x1 conv -> h-sigmoid -> MUL with ``x``."""
    gate = spatial_mean(g, x)
    gate = conv2d(g, gate, se.reduce, act="relu")
    gate = conv2d(g, gate, se.expand, act="h_sigmoid")
    return multiply(g, x, gate)


def convert_mbconv(g: TFLiteGraph, block: MBConv, x: Tensor) -> Tensor:
    """An inverted-residual block (see :class:`~ofabench.supernet.static.MBConv`)."""
    act = _act_of(block.act)
    h = x
    if block.expand_conv is not None:
        h = conv2d(g, h, block.expand_conv, block.expand_bn, act)
    h = conv2d(g, h, block.dw_conv, block.dw_bn, act)
    if block.se is not None:
        h = convert_squeeze_excite(g, block.se, h)
    h = conv2d(g, h, block.project_conv, block.project_bn)
    return add(g, h, x) if block.residual else h


def convert_mobilenet(g: TFLiteGraph, net: MobileNetV3, x: Tensor) -> Tensor:
    """A static subnet: stem, blocks, final expand, pool, feature mix, flatten, classifier."""
    stem_act, final_act, mix_act = (
        _act_of(a) if a else None for a in getattr(net, "acts", ("h_swish",) * 3)
    )
    x = conv2d(g, x, net.stem_conv, net.stem_bn, stem_act)
    for block in net.blocks:
        x = convert_mbconv(g, block, x)
    x = conv2d(g, x, net.final_expand_conv, net.final_expand_bn, final_act)
    x = spatial_mean(g, x)
    if getattr(net, "feature_mix_conv", None) is not None:
        x = conv2d(g, x, net.feature_mix_conv, act=mix_act)
    return linear(g, flatten(g, x), net.classifier)


def convert_sequential(g: TFLiteGraph, seq: nn.Sequential, x: Tensor) -> Tensor:
    """A chain of modules; ``Conv2d [BatchNorm2d] [activation]`` runs become one fused conv."""
    children = list(seq)
    i = 0
    while i < len(children):
        module = children[i]
        if isinstance(module, nn.Conv2d):
            bn = _next_of(children, i, (nn.BatchNorm2d,))
            i += bn is not None
            act_module = _next_of(children, i, tuple(ACTIVATION_MODULES))
            i += act_module is not None
            act = ACTIVATION_MODULES[type(act_module)] if act_module is not None else None
            x = conv2d(g, x, module, bn, act)
        else:
            x = convert_module(g, module, x)
        i += 1
    return x


def _next_of(children: list[nn.Module], i: int, kinds: tuple[type, ...]) -> nn.Module | None:
    following = children[i + 1] if i + 1 < len(children) else None
    return following if type(following) in kinds else None


def convert_batch_norm(g: TFLiteGraph, bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """A batch norm on its own (not after a conv): MUL by scale, ADD shift, per channel."""
    scale, shift = batch_norm_affine(bn)
    scaled = multiply(g, x, g.constant("bn_scale", scale))
    return add(g, scaled, g.constant("bn_shift", shift))


def convert_adaptive_pool(g: TFLiteGraph, pool: nn.AdaptiveAvgPool2d, x: Tensor) -> Tensor:
    if pool.output_size in (1, (1, 1)):
        return spatial_mean(g, x)
    from .tflite_graph import convert_traced  # other sizes: an average pool where exact

    return convert_traced(g, pool, x)


def convert_activation(g: TFLiteGraph, module: nn.Module, x: Tensor) -> Tensor:
    return activation(g, x, ACTIVATION_MODULES[type(module)])


ACTIVATION_MODULES: dict[type, str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "h_swish",
    nn.Hardsigmoid: "h_sigmoid",
}

Converter = Callable[[TFLiteGraph, Any, Tensor], Tensor]
CONVERTERS: dict[type, Converter] = {
    MobileNetV3: convert_mobilenet,
    MBConv: convert_mbconv,
    SqueezeExcite: convert_squeeze_excite,
    nn.Sequential: convert_sequential,
    nn.Conv2d: lambda g, m, x: conv2d(g, x, m),
    nn.BatchNorm2d: convert_batch_norm,
    nn.Linear: lambda g, m, x: linear(g, x, m),
    nn.Flatten: lambda g, m, x: flatten(g, x),
    nn.AdaptiveAvgPool2d: convert_adaptive_pool,
    nn.Dropout: lambda g, m, x: x,
    nn.Identity: lambda g, m, x: x,
    **dict.fromkeys(ACTIVATION_MODULES, convert_activation),
}


def supported_modules() -> list[str]:
    """Names of the module types :func:`module_to_tflite` converts (and any module torch.fx
    traces into them and the functions :func:`~ofabench.devices.tflite_graph.supported_ops`
    lists)."""
    from .tflite_graph import MODULE_RULES

    return sorted({kind.__name__ for kind in (*CONVERTERS, *MODULE_RULES)})


def convert_module(g: TFLiteGraph, module: nn.Module, x: Tensor) -> Tensor:
    """Append ``module`` applied to ``x`` to the graph: ofabench's own modules and plain
    ``nn.Sequential`` chains by their converters, other modules through their torch.fx graph
    (:mod:`~ofabench.devices.tflite_graph`)."""
    converter = CONVERTERS.get(type(module))
    if converter is not None:
        return converter(g, module, x)
    from .tflite_graph import convert_traced, converts

    if converts(module):
        return convert_traced(g, module, x)
    hint = ""
    if hasattr(module, "get_active_subnet"):
        hint = " (extract a static subnet with get_active_subnet() first)"
    raise ExportError(
        f"cannot convert {type(module).__name__} to TFLite{hint}; supported: "
        f"{', '.join(supported_modules())}"
    )


# -- entry points ----------------------------------------------------------------------------------
def tflite_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """The TFLite model's input shape for a PyTorch ``input_shape`` (NCHW -> NHWC for 4-D)."""
    shape = tuple(int(s) for s in input_shape)
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape


def module_to_tflite(
    model: nn.Module, input_shape: tuple[int, ...], description: str | None = None
) -> bytes:
    """A float32 TFLite flatbuffer computing ``model`` (eval mode) on an NHWC input.

    ``input_shape`` is PyTorch's (NCHW, e.g. ``(1, 3, 224, 224)``); the model's input is
    :func:`tflite_input_shape` of it and 4-D outputs are NHWC.
    """
    if any(int(s) < 1 for s in input_shape):
        raise ExportError(f"input shape must be positive, got {list(input_shape)}")
    g = TFLiteGraph()
    x = g.activation("input", tflite_input_shape(input_shape))
    with torch.no_grad():
        y = convert_module(g, model, x)
    if y.index == x.index:
        raise ExportError(f"{type(model).__name__} converts to an empty TFLite graph")
    text = description if description is not None else model_description(model, input_shape)
    content = g.serialize([x], [y], text)
    log.debug(
        "wrote %s as TFLite: %d ops, %d bytes", type(model).__name__, len(g.operators), len(content)
    )
    return content


def model_description(model: nn.Module, input_shape: Sequence[int], **extra: Any) -> str:
    """The JSON description string a written model carries (producer, source, shapes, extra)."""
    return json.dumps(
        {
            "producer": f"ofabench {__version__} tflite_writer",
            "source": type(model).__name__,
            "torch_input_shape": list(input_shape),
            "input_layout": "NHWC",
            **extra,
        }
    )


def write_tflite(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write :func:`module_to_tflite` of ``model`` to ``path`` atomically, with provenance (and
    ``metadata``) in the model's description string."""
    from ..provenance import atomic_open, provenance

    description = model_description(model, input_shape, provenance=provenance(**(metadata or {})))
    content = module_to_tflite(model, input_shape, description=description)
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        handle.write(content)
    return path
