"""Convert any module ``torch.fx`` can trace to TFLite, node by node, with the project's writer.

The module is traced with :func:`torch.fx` (as in eval mode), its tensors' shapes are recorded
by running it once on a seeded random input (``ShapeProp``), and each node becomes TFLite ops of
:class:`~ofabench.devices.tflite_writer.TFLiteGraph`. Every converted tensor's shape is checked
against PyTorch's as it is made, so a layout mistake stops the conversion at the node that made
it instead of producing a wrong model.

Layout: 4-D tensors are NHWC in the TFLite graph (PyTorch's NCHW permuted), tensors of every
other rank keep PyTorch's layout. Ops that change rank or move axes (flatten, view, reshape,
permute, transpose, mean without keepdim) insert a TRANSPOSE where the two layouts disagree.

Fusion: a BatchNorm2d that is the only user of a Conv2d is folded into it; a ReLU/ReLU6 that is
the only user of a conv, fully connected, ADD, MUL or pool output becomes that op's fused
activation. A BatchNorm2d elsewhere is a MUL and an ADD.

The vocabulary (:func:`supported_ops` lists it): ``Conv2d`` (plain, depthwise with any channel
multiplier, grouped), ``BatchNorm2d``, ``ReLU``/``ReLU6``/``Hardswish``/``Hardsigmoid``/
``Sigmoid`` (``LOGISTIC``)/``SiLU`` (``LOGISTIC`` + ``MUL``) and their ``torch.nn.functional``
and tensor-method forms, ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d`` (output 1, equal to
the input, or an exact divisor of it), ``mean`` over axes, ``+``/``-``/``*``/``/`` (also
in place, with constants), ``flatten``/``Flatten``/``view``/``reshape``, ``permute``/
``transpose``/``contiguous``, ``cat``, ``chunk``/``split``, ``size``/``shape`` arithmetic,
``Linear`` on 2-D inputs, ``Dropout``/torchvision's ``StochasticDepth`` (identity in eval) and
``Identity``; ofabench's own static MobileNetV3 modules go through their dedicated converters.
Anything else raises :class:`~ofabench.errors.ExportError` naming the op and the node.
"""

from __future__ import annotations

import builtins
import logging
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import ExportError
from ..files import one_line
from . import tflite_writer as tw
from .tflite_writer import Tensor, TFLiteGraph

log = logging.getLogger("ofabench")

AXIS_OF_DIM = (0, 3, 1, 2)  # PyTorch dim of a 4-D tensor -> its TFLite (NHWC) axis
TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)
STOCHASTIC_DEPTH = "torchvision.ops.stochastic_depth.StochasticDepth"


# -- layout ---------------------------------------------------------------------------------------
def torch_shape(x: Tensor) -> tuple[int, ...]:
    """PyTorch's shape of a graph tensor (NCHW for 4-D)."""
    return tuple(x.shape[i] for i in TO_NCHW) if len(x.shape) == 4 else x.shape


def tflite_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The TFLite shape of a tensor PyTorch shapes as ``shape``."""
    shape = tuple(int(s) for s in shape)
    return tuple(shape[i] for i in TO_NHWC) if len(shape) == 4 else shape


def tflite_axis(dim: int, rank: int) -> int:
    """The TFLite axis holding PyTorch dim ``dim`` of a rank-``rank`` tensor."""
    if not -rank <= dim < rank:
        raise ExportError(f"dim {dim} is out of range for a {rank}-D tensor")
    dim %= rank
    return AXIS_OF_DIM[dim] if rank == 4 else dim


def _to_torch_order(rank: int) -> np.ndarray:
    return np.asarray(TO_NCHW if rank == 4 else range(rank))


def _to_tflite_order(rank: int) -> np.ndarray:
    return np.asarray(TO_NHWC if rank == 4 else range(rank))


def keeps_order(shape: Sequence[int], perm: Sequence[int]) -> bool:
    """Whether permuting a tensor of ``shape`` by ``perm`` only moves size-1 axes (the memory
    order stays, so a RESHAPE does it)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def transpose(g: TFLiteGraph, x: Tensor, perm: Sequence[int]) -> Tensor:
    """``x.permute(perm)`` in the TFLite graph: nothing for the identity, a RESHAPE when only
    size-1 axes move, else a TRANSPOSE."""
    perm = [int(p) for p in perm]
    shape = tuple(x.shape[p] for p in perm)
    if keeps_order(x.shape, perm):
        return reshape(g, x, shape)
    perm_tensor = g.constant("perm", np.asarray(perm, dtype=np.int32))
    return g.op("TRANSPOSE", [x, perm_tensor], shape, g.options("TransposeOptions"))


def reshape(g: TFLiteGraph, x: Tensor, shape: Sequence[int]) -> Tensor:
    """A RESHAPE to ``shape`` (in the graph's own layout), nothing if it is already that."""
    shape = tuple(int(s) for s in shape)
    if shape == x.shape:
        return x
    return g.op(
        "RESHAPE",
        [x, g.constant("shape", np.asarray(shape, dtype=np.int32))],
        shape,
        g.options("ReshapeOptions", newShape=list(shape)),
    )


def permute_torch(g: TFLiteGraph, x: Tensor, perm: Sequence[int]) -> Tensor:
    """``y = x.permute(perm)`` as PyTorch sees both tensors, as one TFLite transpose."""
    rank = len(x.shape)
    combined = _to_torch_order(rank)[np.asarray(perm)][_to_tflite_order(rank)]
    return transpose(g, x, combined)


def reshape_torch(g: TFLiteGraph, x: Tensor, torch_out: Sequence[int]) -> Tensor:
    """``x.reshape(torch_out)`` as PyTorch sees it: to PyTorch's layout, reshape, back; one
    RESHAPE when neither layout change moves data (e.g. flattening an ``[N, 1, 1, C]`` map)."""
    torch_out = tuple(int(s) for s in torch_out)
    if int(np.prod(torch_out)) != int(np.prod(x.shape)):
        raise ExportError(f"cannot reshape {list(torch_shape(x))} to {list(torch_out)}")
    to_torch = _to_torch_order(len(x.shape))
    h = x if keeps_order(x.shape, to_torch) else transpose(g, x, to_torch)
    to_tflite = _to_tflite_order(len(torch_out))
    if keeps_order(torch_out, to_tflite):
        return reshape(g, h, [torch_out[i] for i in to_tflite])
    return transpose(g, reshape(g, h, torch_out), to_tflite)


# -- tracing --------------------------------------------------------------------------------------
class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping every module the converter knows as one node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if type(m) in MODULE_RULES or _qualname(m) == STOCHASTIC_DEPTH:
            return True
        if type(m) in tw.CONVERTERS and type(m) is not nn.Sequential:
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _qualname(obj: Any) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def trace(model: nn.Module, torch_input_shape: Sequence[int]) -> fx.GraphModule:
    """``model`` traced by torch.fx (in eval mode), every node annotated with its output's
    ``tensor_meta`` from a run on a seeded random input of ``torch_input_shape``."""
    from torch.fx.passes.shape_prop import ShapeProp

    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        try:
            tracer = _Tracer()
            graph = tracer.trace(model)
        except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError...
            raise ExportError(
                f"torch.fx cannot trace {type(model).__name__} for TFLite: {one_line(exc)}"
            ) from exc
        module = fx.GraphModule(tracer.root, graph)
        example = torch.randn(*torch_input_shape, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                ShapeProp(module).propagate(example)
        except Exception as exc:  # whatever the model raises on this input
            raise ExportError(
                f"{type(model).__name__} fails on an input of shape {list(torch_input_shape)}: "
                f"{one_line(exc)}"
            ) from exc
        return module
    finally:
        for m, training in modes.items():
            m.training = training


# -- the converter --------------------------------------------------------------------------------
class GraphConverter:
    """Turns the nodes of a traced module into ops of one :class:`TFLiteGraph`."""

    def __init__(self, g: TFLiteGraph, module: fx.GraphModule) -> None:
        self.g = g
        self.gm = module
        self.modules = dict(module.named_modules())
        self.values: dict[fx.Node, Any] = {}
        self.holders: dict[int, list[fx.Node]] = {}  # tensor index -> nodes whose value it is

    def run(self, x: Tensor) -> Tensor:
        """Convert every node with ``x`` as the (single) input; return the output tensor."""
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ExportError(
                f"the traced module takes {len(placeholders)} inputs; TFLite export takes one"
            )
        for node in self.gm.graph.nodes:
            if node in self.values:  # already made by a fusion
                continue
            if node.op == "output":
                return self.output(node)
            value = x if node.op == "placeholder" else self.convert_node(node)
            self.bind(node, value)
        raise ExportError("the traced graph has no output")

    def output(self, node: fx.Node) -> Tensor:
        value = fx.node.map_arg(node.args[0], self.values.__getitem__)
        if isinstance(value, (tuple, list)) and len(value) == 1:
            value = value[0]
        if not isinstance(value, Tensor):
            kind = f"{len(value)} outputs" if isinstance(value, (tuple, list)) else repr(value)
            raise ExportError(f"the module returns {kind}; TFLite export takes one tensor output")
        return value

    def bind(self, node: fx.Node, value: Any) -> None:
        """Record ``value`` as ``node``'s, checking a tensor's shape against PyTorch's."""
        if isinstance(value, Tensor):
            meta = node.meta.get("tensor_meta")
            want = tuple(meta.shape) if hasattr(meta, "shape") else None
            if want is not None and torch_shape(value) != want:
                raise ExportError(
                    f"converting {describe(node)} gave shape {list(torch_shape(value))}, "
                    f"PyTorch has {list(want)} (an ofabench bug; please report it)"
                )
            if hasattr(meta, "dtype") and meta.dtype != torch.float32:
                raise ExportError(
                    f"{describe(node)} makes a {meta.dtype} tensor; TFLite export is float32 only"
                )
            self.holders.setdefault(value.index, []).append(node)
        self.values[node] = value

    def convert_node(self, node: fx.Node) -> Any:
        """:meth:`convert`, an unexpected failure read as an ExportError naming the node."""
        try:
            return self.convert(node)
        except ExportError:
            raise
        except Exception as exc:  # a rule meeting arguments it does not expect
            raise ExportError(
                f"converting {describe(node)} to TFLite failed: {type(exc).__name__}: "
                f"{one_line(exc)}"
            ) from exc

    def convert(self, node: fx.Node) -> Any:
        args = fx.node.map_arg(node.args, self.values.__getitem__)
        kwargs = fx.node.map_arg(node.kwargs, self.values.__getitem__)
        if node.op == "get_attr":
            return _attribute(self.gm, str(node.target))
        if node.op == "call_module":
            return self.call_module(node, args)
        if node.op == "call_function":
            rule = FUNCTION_RULES.get(node.target)
            if rule is None and node.target in PYTHON_OPS and not _holds_tensor(args, kwargs):
                return node.target(*args, **kwargs)  # shape arithmetic
        else:  # call_method
            rule = METHOD_RULES.get(str(node.target))
        if rule is None:
            raise unsupported(node)
        return rule(self, node, args, kwargs)

    def call_module(self, node: fx.Node, args: tuple) -> Any:
        module = self.modules[str(node.target)]
        x = self.tensor(args[0], node) if args else None
        rule = MODULE_RULES.get(type(module))
        if rule is not None:
            return rule(self, node, module, x)
        if _qualname(module) == STOCHASTIC_DEPTH:
            return x  # identity in eval mode
        if type(module) in tw.CONVERTERS:  # ofabench's own static modules
            return tw.convert_module(self.g, module, x)
        raise unsupported(node)

    # -- helpers the rules share ---------------------------------------------------------------
    def tensor(self, value: Any, node: fx.Node) -> Tensor:
        if not isinstance(value, Tensor):
            raise ExportError(f"{describe(node)} expects a tensor input, got {value!r}")
        return value

    def torch_out(self, node: fx.Node) -> tuple[int, ...]:
        """PyTorch's output shape of ``node``."""
        meta = node.meta.get("tensor_meta")
        if not hasattr(meta, "shape"):
            raise ExportError(f"{describe(node)} has no single tensor output")
        return tuple(int(s) for s in meta.shape)

    def sole_user(self, node: fx.Node, kind: type) -> fx.Node | None:
        """The only user of ``node`` when it is a ``call_module`` of a module of ``kind``."""
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            return None
        return users[0] if type(self.modules[str(users[0].target)]) is kind else None

    def fuse_activation(self, node: fx.Node, x: Tensor, name: str) -> bool:
        """Make ``name`` (RELU or RELU6) the fused activation of the op that wrote ``x``, when
        ``node`` is the only reader of ``x`` and that op has no activation yet."""
        _, producer = self.g.producers.get(x.index, ("", None))
        options = getattr(producer, "builtinOptions", None)
        none = self.g.schema.ActivationFunctionType.NONE
        if getattr(options, "fusedActivationFunction", None) != none:
            return False
        holders = self.holders.get(x.index, [])
        readers = {user for h in holders for user in h.users} - set(holders)
        if readers != {node}:
            return False
        options.fusedActivationFunction = getattr(self.g.schema.ActivationFunctionType, name)
        return True

    def non_negative(self, x: Tensor) -> bool:
        """Whether ``x`` is a ReLU's output (a RELU/RELU6 op or an op with one fused)."""
        name, producer = self.g.producers.get(x.index, ("", None))
        fused = getattr(getattr(producer, "builtinOptions", None), "fusedActivationFunction", None)
        kinds = self.g.schema.ActivationFunctionType
        return name in ("RELU", "RELU6") or fused in (kinds.RELU, kinds.RELU6)

    def activation(self, node: fx.Node, x: Tensor, name: str) -> Tensor:
        """An activation after ``x``: fused into its producer where TFLite can, else ops."""
        if name in ("relu", "relu6") and self.fuse_activation(node, x, name.upper()):
            return x
        if name == "sigmoid":
            return self.g.op("LOGISTIC", [x], x.shape)
        if name == "silu":
            return tw.multiply(self.g, x, self.g.op("LOGISTIC", [x], x.shape))
        return tw.activation(self.g, x, name)

    def operand(self, value: Any, like: Tensor, node: fx.Node) -> Tensor:
        """``value`` (graph tensor, constant tensor or number) as a graph tensor broadcastable
        with ``like`` in the TFLite layout."""
        if isinstance(value, Tensor):
            if len(value.shape) != len(like.shape) and 4 in (len(value.shape), len(like.shape)):
                raise ExportError(
                    f"{describe(node)} broadcasts a {len(value.shape)}-D tensor with a "
                    f"{len(like.shape)}-D one; TFLite export needs equal ranks for 4-D tensors"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
            raise ExportError(f"{describe(node)} has an operand {value!r}; expected a tensor")
        array = np.asarray(tw.to_numpy(value) if isinstance(value, torch.Tensor) else value)
        if len(like.shape) == 4 and 0 < array.ndim <= 4:
            array = array.reshape((1,) * (4 - array.ndim) + array.shape).transpose(TO_NHWC)
        elif array.ndim == 0:
            array = array.reshape(1)
        return self.g.constant("operand", array.astype(np.float32))


def describe(node: fx.Node) -> str:
    """How an error names a node: its op, its name and the module it is in."""
    if node.op == "call_module":
        module = node.graph.owning_module.get_submodule(str(node.target))
        return f"{type(module).__name__} (module {str(node.target)!r})"
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    inside = stack[-1][0] if stack and isinstance(stack[-1], tuple) and stack[-1][0] else ""
    return f"{_op_name(node)} (node {node.name!r}{f' in {inside!r}' if inside else ''})"


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        target = node.target
        return f"{getattr(target, '__module__', '') or ''}.{getattr(target, '__name__', target)}"
    return node.op


def unsupported(node: fx.Node) -> ExportError:
    return ExportError(
        f"cannot convert {describe(node)} to TFLite; supported: {', '.join(supported_ops())}"
    )


def _attribute(module: nn.Module, target: str) -> Any:
    value: Any = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


PYTHON_OPS = frozenset(
    {
        operator.add,
        operator.sub,
        operator.mul,
        operator.floordiv,
        operator.truediv,
        operator.mod,
        operator.neg,
        builtins.len,
    }  # fmt: skip
)


def _holds_tensor(*values: Any) -> bool:
    for value in values:
        if isinstance(value, Tensor):
            return True
        if isinstance(value, (tuple, list)) and _holds_tensor(*value):
            return True
        if isinstance(value, dict) and _holds_tensor(*value.values()):
            return True
    return False


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    """A call's argument by position or keyword."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


# -- rules: modules -------------------------------------------------------------------------------
ModuleRule = Callable[[GraphConverter, fx.Node, Any, Tensor], Any]


def conv_rule(c: GraphConverter, node: fx.Node, conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A conv, with the batch norm that alone reads it folded in."""
    bn_node = c.sole_user(node, nn.BatchNorm2d)
    bn = c.modules[str(bn_node.target)] if bn_node is not None else None
    out = tw.conv2d(c.g, x, conv, bn)
    if bn_node is not None:
        c.bind(node, out)
        c.bind(bn_node, out)
    return out


def batch_norm_rule(c: GraphConverter, node: fx.Node, bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    if len(x.shape) != 4:
        raise ExportError(f"BatchNorm2d needs a 4-D input, got {list(torch_shape(x))}")
    return tw.convert_batch_norm(c.g, bn, x)


def linear_rule(c: GraphConverter, node: fx.Node, fc: nn.Linear, x: Tensor) -> Tensor:
    return tw.linear(c.g, x, fc)


def identity_rule(c: GraphConverter, node: fx.Node, module: Any, x: Tensor) -> Tensor:
    return x


def flatten_rule(c: GraphConverter, node: fx.Node, module: Any, x: Tensor) -> Tensor:
    return reshape_torch(c.g, x, c.torch_out(node))


def activation_rule(name: str) -> ModuleRule:
    def rule(c: GraphConverter, node: fx.Node, module: Any, x: Tensor) -> Tensor:
        return c.activation(node, x, name)

    return rule


def max_pool_rule(c: GraphConverter, node: fx.Node, pool: nn.MaxPool2d, x: Tensor) -> Tensor:
    return pool2d(c, node, x, pool, "MAX_POOL_2D")


def avg_pool_rule(c: GraphConverter, node: fx.Node, pool: nn.AvgPool2d, x: Tensor) -> Tensor:
    if pool.divisor_override is not None:
        raise ExportError("AvgPool2d with divisor_override has no TFLite form; leave it None")
    return pool2d(c, node, x, pool, "AVERAGE_POOL_2D")


def adaptive_avg_pool_rule(
    c: GraphConverter, node: fx.Node, pool: nn.AdaptiveAvgPool2d, x: Tensor
) -> Tensor:
    """Output 1: a MEAN; output equal to the input: nothing; an exact divisor of the input: an
    average pool with kernel = stride = input / output."""
    if len(x.shape) != 4:
        raise ExportError(f"AdaptiveAvgPool2d needs a 4-D input, got {list(torch_shape(x))}")
    out_hw = c.torch_out(node)[2:]
    in_hw = x.shape[1:3]
    if out_hw == (1, 1):
        return tw.spatial_mean(c.g, x)
    if tuple(out_hw) == tuple(in_hw):
        return x
    if any(i % o for i, o in zip(in_hw, out_hw)):
        raise ExportError(
            f"AdaptiveAvgPool2d to {list(out_hw)} from {list(in_hw)} has no TFLite form; "
            "supported: output 1, the input's size, or an exact divisor of it"
        )
    steps = [i // o for i, o in zip(in_hw, out_hw)]
    return pool_op(c.g, x, "AVERAGE_POOL_2D", steps, steps, c.g.schema.Padding.VALID, out_hw)


def pool2d(c: GraphConverter, node: fx.Node, x: Tensor, pool: Any, name: str) -> Tensor:
    """A max or average pool matching PyTorch's padding and ``ceil_mode``: SAME or VALID where
    their windows are PyTorch's, else an explicit pad (-inf for max, zeros for an average that
    counts padding) and VALID."""
    if len(x.shape) != 4:
        raise ExportError(f"{type(pool).__name__} needs a 4-D input, got {list(torch_shape(x))}")
    kernel, stride, padding = (_pair(v) for v in (pool.kernel_size, pool.stride, pool.padding))
    if _pair(getattr(pool, "dilation", 1)) != (1, 1):
        raise ExportError(f"{type(pool).__name__} with dilation has no TFLite form")
    out_hw = c.torch_out(node)[2:]
    schema = c.g.schema
    if name == "AVERAGE_POOL_2D" and pool.count_include_pad and any(padding):
        x = tw.pad(c.g, x, tuple((p, p) for p in padding))  # padding counts: zeros, explicitly
        padding = (0, 0)
    axes = list(zip(x.shape[1:3], kernel, stride, padding, out_hw))
    if all(p == 0 and (n - k) // s + 1 == o for n, k, s, p, o in axes):
        return pool_op(c.g, x, name, kernel, stride, schema.Padding.VALID, out_hw)
    if all(tw.same_pads(n, k, s, 1)[0] == p and -(-n // s) == o for n, k, s, p, o in axes):
        return pool_op(c.g, x, name, kernel, stride, schema.Padding.SAME, out_hw)
    if name == "AVERAGE_POOL_2D":
        raise ExportError(
            f"AvgPool2d(kernel {kernel}, stride {stride}, padding {padding}, ceil_mode "
            f"{pool.ceil_mode}) on a {list(x.shape[1:3])} input has no TFLite form; "
            "use count_include_pad=True or a padding TFLite's SAME reproduces"
        )
    pads = tuple((p, max((o - 1) * s + k - n - p, 0)) for n, k, s, p, o in axes)
    # every window holds an input element, so zeros pad a ReLU's output as well as -inf would
    x = tw.pad(c.g, x, pads) if c.non_negative(x) else pad_with(c.g, x, pads, -np.inf)
    return pool_op(c.g, x, name, kernel, stride, schema.Padding.VALID, out_hw)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


def pool_op(
    g: TFLiteGraph,
    x: Tensor,
    name: str,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: int,
    out_hw: Sequence[int],
) -> Tensor:
    options = g.options(
        "Pool2DOptions",
        padding=padding,
        strideH=int(stride[0]),
        strideW=int(stride[1]),
        filterHeight=int(kernel[0]),
        filterWidth=int(kernel[1]),
    )
    return g.op(name, [x], (x.shape[0], *out_hw, x.shape[3]), options)


def pad_with(g: TFLiteGraph, x: Tensor, pads: tuple[tuple[int, int], ...], value: float) -> Tensor:
    """Pad the spatial axes of an NHWC tensor with ``value`` (PADV2)."""
    paddings = np.asarray([(0, 0), *pads, (0, 0)], dtype=np.int32)
    n, h, w, ch = x.shape
    out_shape = (n, h + sum(pads[0]), w + sum(pads[1]), ch)
    inputs = [x, g.constant("paddings", paddings), g.constant("pad_value", np.float32([value]))]
    return g.op("PADV2", inputs, out_shape, g.options("PadV2Options"))


# -- rules: functions and methods -----------------------------------------------------------------
Rule = Callable[[GraphConverter, fx.Node, tuple, dict], Any]

BINARY_OPS = {
    "ADD": operator.add,
    "SUB": operator.sub,
    "MUL": operator.mul,
    "DIV": operator.truediv,
}


def binary_rule(name: str) -> Rule:
    """``a <op> b`` for graph tensors, constant tensors and numbers (numbers alone: Python)."""

    def rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        a, b = args[0], _arg(args, kwargs, 1, "other")
        if _arg(args, kwargs, 2, "alpha", 1) != 1:
            raise ExportError(f"{describe(node)} with alpha != 1 is not supported")
        if not isinstance(a, Tensor) and not isinstance(b, Tensor):
            return BINARY_OPS[name](a, b)
        op = name
        if name == "DIV" and not isinstance(b, Tensor):  # x / c as x * (1 / c)
            op, b = "MUL", 1.0 / b
        like = a if isinstance(a, Tensor) else b
        a, b = c.operand(a, like, node), c.operand(b, like, node)
        options = c.g.options(f"{op.title()}Options")
        return c.g.op(op, [a, b], tw.broadcast_shape(a, b), options)

    return rule


def function_activation(name: str) -> Rule:
    def rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Tensor:
        return c.activation(node, c.tensor(args[0], node), name)

    return rule


def hardtanh_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Tensor:
    low, high = _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
    if (low, high) != (0.0, 6.0):
        raise ExportError(
            f"{describe(node)} clamps to [{low}, {high}]; only [0, 6] (ReLU6) is supported"
        )
    return c.activation(node, c.tensor(args[0], node), "relu6")


def identity_function(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    return args[0]


def reshape_function(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Tensor:
    """flatten / view / reshape: PyTorch's output shape, reached through PyTorch's layout."""
    return reshape_torch(c.g, c.tensor(args[0], node), c.torch_out(node))


def permute_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Tensor:
    x = c.tensor(args[0], node)
    rest = args[1:]
    dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
    dims = dims or kwargs.get("dims")
    rank = len(x.shape)
    return permute_torch(c.g, x, [int(d) % rank for d in dims])


def transpose_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Tensor:
    x = c.tensor(args[0], node)
    rank = len(x.shape)
    a, b = _arg(args, kwargs, 1, "dim0") % rank, _arg(args, kwargs, 2, "dim1") % rank
    perm = list(range(rank))
    perm[a], perm[b] = perm[b], perm[a]
    return permute_torch(c.g, x, perm)


def mean_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Tensor:
    """MEAN over PyTorch dims (their TFLite axes); the result reordered to PyTorch's layout
    when axes are dropped."""
    x = c.tensor(args[0], node)
    rank = len(x.shape)
    dims = _arg(args, kwargs, 1, "dim")
    keepdim = bool(_arg(args, kwargs, 2, "keepdim", False))
    if _arg(args, kwargs, 3, "dtype") is not None:
        raise ExportError(f"{describe(node)} with a dtype is not supported")
    dims = range(rank) if dims is None else [dims] if isinstance(dims, int) else dims
    axes = sorted({tflite_axis(int(d), rank) for d in dims})
    if not axes:
        raise ExportError(f"{describe(node)} reduces no axis")
    kept = [a for a in range(rank) if a not in axes]
    if keepdim:
        shape = tuple(1 if a in axes else x.shape[a] for a in range(rank))
    else:
        shape = tuple(x.shape[a] for a in kept)
    out = c.g.op(
        "MEAN",
        [x, c.g.constant("mean_axes", np.asarray(axes, dtype=np.int32))],
        shape,
        c.g.options("ReducerOptions", keepDims=keepdim),
    )
    if keepdim or rank != 4:
        return out
    # the kept NHWC axes hold PyTorch dims TO_NHWC[a]; PyTorch keeps them in dim order
    torch_dims = [TO_NHWC[a] for a in kept]
    return transpose(c.g, out, [torch_dims.index(d) for d in sorted(torch_dims)])


def cat_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Tensor:
    tensors = [c.tensor(t, node) for t in _arg(args, kwargs, 0, "tensors")]
    rank = len(tensors[0].shape)
    axis = tflite_axis(int(_arg(args, kwargs, 1, "dim", 0)), rank)
    shape = list(tensors[0].shape)
    shape[axis] = sum(t.shape[axis] for t in tensors)
    options = c.g.options("ConcatenationOptions", axis=axis)
    return c.g.op("CONCATENATION", tensors, shape, options)


def split_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> tuple:
    """chunk / split: one SLICE per piece, the pieces' sizes as PyTorch made them."""
    x = c.tensor(args[0], node)
    rank = len(x.shape)
    axis = tflite_axis(int(_arg(args, kwargs, 2, "dim", 0)), rank)
    metas = node.meta.get("tensor_meta")
    if not isinstance(metas, (tuple, list)):
        raise ExportError(f"{describe(node)} has no recorded pieces")
    pieces, start = [], 0
    for meta in metas:
        size = list(tflite_shape(meta.shape))
        begin = [0] * rank
        begin[axis] = start
        inputs = [
            x,
            c.g.constant("begin", np.asarray(begin, dtype=np.int32)),
            c.g.constant("size", np.asarray(size, dtype=np.int32)),
        ]
        pieces.append(c.g.op("SLICE", inputs, size, c.g.options("SliceOptions")))
        start += size[axis]
    return tuple(pieces)


def size_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    shape = torch.Size(torch_shape(c.tensor(args[0], node)))
    dim = _arg(args, kwargs, 1, "dim")
    return shape if dim is None else shape[dim]


def getitem_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Indexing a shape or the pieces of a split; indexing a tensor (slicing) is refused."""
    if isinstance(args[0], Tensor):
        raise ExportError(f"{describe(node)} indexes a tensor; slicing is not supported")
    return args[0][args[1]]


def getattr_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    value, name = args[0], args[1]
    if not isinstance(value, Tensor):
        return getattr(value, name)
    if name == "shape":
        return torch.Size(torch_shape(value))
    raise ExportError(f"{describe(node)} reads tensor attribute {name!r}; only .shape is supported")


def module_function(kind: type, rule: ModuleRule) -> Rule:
    """A functional form (``F.max_pool2d(x, ...)``) through the module rule of ``kind``, the
    module built from the same arguments."""

    def function_rule(c: GraphConverter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        try:
            module = kind(*args[1:], **kwargs)
        except TypeError as exc:
            raise ExportError(f"{describe(node)}: unsupported arguments ({exc})") from exc
        return rule(c, node, module, c.tensor(args[0], node))

    return function_rule


ACTIVATIONS = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "h_swish",
    nn.Hardsigmoid: "h_sigmoid",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
}
MODULE_RULES: dict[type, ModuleRule] = {
    nn.Conv2d: conv_rule,
    nn.BatchNorm2d: batch_norm_rule,
    nn.Linear: linear_rule,
    nn.MaxPool2d: max_pool_rule,
    nn.AvgPool2d: avg_pool_rule,
    nn.AdaptiveAvgPool2d: adaptive_avg_pool_rule,
    nn.Flatten: flatten_rule,
    nn.Dropout: identity_rule,
    nn.Dropout2d: identity_rule,
    nn.Identity: identity_rule,
    **{kind: activation_rule(name) for kind, name in ACTIVATIONS.items()},
}
FUNCTIONAL_ACTIVATIONS: dict[Any, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    F.relu6: "relu6",
    F.hardswish: "h_swish",
    F.hardsigmoid: "h_sigmoid",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.silu: "silu",
}
FUNCTION_RULES: dict[Any, Rule] = {
    **{f: function_activation(name) for f, name in FUNCTIONAL_ACTIVATIONS.items()},
    F.hardtanh: hardtanh_rule,
    operator.add: binary_rule("ADD"),
    operator.iadd: binary_rule("ADD"),
    torch.add: binary_rule("ADD"),
    operator.sub: binary_rule("SUB"),
    operator.isub: binary_rule("SUB"),
    torch.sub: binary_rule("SUB"),
    operator.mul: binary_rule("MUL"),
    operator.imul: binary_rule("MUL"),
    torch.mul: binary_rule("MUL"),
    operator.truediv: binary_rule("DIV"),
    torch.div: binary_rule("DIV"),
    torch.flatten: reshape_function,
    torch.reshape: reshape_function,
    torch.permute: permute_rule,
    torch.transpose: transpose_rule,
    torch.mean: mean_rule,
    torch.cat: cat_rule,
    torch.concat: cat_rule,
    torch.chunk: split_rule,
    torch.split: split_rule,
    F.dropout: identity_function,
    F.adaptive_avg_pool2d: module_function(nn.AdaptiveAvgPool2d, adaptive_avg_pool_rule),
    F.avg_pool2d: module_function(nn.AvgPool2d, avg_pool_rule),
    F.max_pool2d: module_function(nn.MaxPool2d, max_pool_rule),
    builtins.getattr: getattr_rule,
    operator.getitem: getitem_rule,
}
METHOD_RULES: dict[str, Rule] = {
    "relu": function_activation("relu"),
    "relu_": function_activation("relu"),
    "sigmoid": function_activation("sigmoid"),
    "add": binary_rule("ADD"),
    "add_": binary_rule("ADD"),
    "sub": binary_rule("SUB"),
    "mul": binary_rule("MUL"),
    "mul_": binary_rule("MUL"),
    "div": binary_rule("DIV"),
    "flatten": reshape_function,
    "view": reshape_function,
    "reshape": reshape_function,
    "permute": permute_rule,
    "transpose": transpose_rule,
    "contiguous": identity_function,
    "mean": mean_rule,
    "chunk": split_rule,
    "split": split_rule,
    "size": size_rule,
}


def supported_ops() -> list[str]:
    """What the graph converter converts: module types, functions, tensor methods."""
    names = {kind.__name__ for kind in MODULE_RULES} | {"StochasticDepth"}
    names |= {kind.__name__ for kind in tw.CONVERTERS}
    names |= {f"{getattr(f, '__module__', '') or ''}.{f.__name__}" for f in FUNCTION_RULES}
    names |= {f"Tensor.{m}" for m in METHOD_RULES}
    return sorted(n.replace("_operator.", "operator.") for n in names)


# -- entry point ----------------------------------------------------------------------------------
def converts(module: nn.Module) -> bool:
    """Whether :func:`convert_traced` takes ``module``: a module of the vocabulary, or one
    torch.fx traces into (not a ``torch.nn`` layer outside the vocabulary, such as GELU)."""
    return type(module) in MODULE_RULES or not _Tracer().is_leaf_module(module, "")


def convert_traced(g: TFLiteGraph, model: nn.Module, x: Tensor) -> Tensor:
    """Append ``model`` applied to ``x`` to ``g`` through its torch.fx graph."""
    if type(model) in MODULE_RULES or _qualname(model) == STOCHASTIC_DEPTH:
        model = nn.Sequential(model)  # a layer alone: one call_module node of the vocabulary
    module = trace(model, torch_shape(x))
    out = GraphConverter(g, module).run(x)
    log.debug("%s through torch.fx: %d nodes", type(model).__name__, len(module.graph.nodes))
    return out
