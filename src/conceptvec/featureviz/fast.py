"""A private, faster copy of the model to optimise images with: batch norm folded, 1x1 convolutions on oneDNN.

The copy is frozen and in eval mode, the caller's model is only read. Batch norm is folded into the
preceding convolution where a torch.fx trace shows that it normalises that convolution's output
alone; on the CPU, 1x1 convolutions run on oneDNN in both directions (:class:`Conv1x1`) and 4-D
weights are channels-last. Each forward and input gradient equals the plain model's up to float
rounding. Tensors are (N, C, H, W) image batches, often channels-last in memory.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ..models.layers import is_script

# Which speed-ups fast_copy applies; the tests empty it to compare with the plain model (empty: no copy).
SPEEDUPS = frozenset({"fold_batchnorm", "onednn_1x1"})


class _OneByOne(torch.autograd.Function):
    """A 1x1 convolution (groups 1, no padding) on oneDNN, forward and input gradient.

    PyTorch sends a 1x1 convolution of a single image on one thread to its im2col/GEMM fallback
    (its heuristic: "THNN is faster when single-threaded"), which was measured 2x slower than
    oneDNN on resnet50's 1x1 convolutions here. The input gradient of a 1x1 convolution is the 1x1
    convolution of the output gradient with the transposed weight, so both directions run as
    oneDNN forward convolutions. The weights get no gradient (they are frozen during the run).
    """

    @staticmethod
    def forward(ctx, x, weight, weight_t, bias, stride):
        ctx.weight_t, ctx.stride, ctx.shape = weight_t, stride, x.shape
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, [0, 0], list(stride), [1, 1], 1)

    @staticmethod
    def backward(ctx, grad):
        g = torch.ops.aten.mkldnn_convolution(grad, ctx.weight_t, None, [0, 0], [1, 1], [1, 1], 1)
        if ctx.stride != (1, 1):
            # A strided 1x1 convolution reads every stride-th pixel; the others get no gradient.
            full = g.new_zeros(ctx.shape)
            if ctx.channels_last:
                full = full.contiguous(memory_format=torch.channels_last)
            full[:, :, :: ctx.stride[0], :: ctx.stride[1]] = g
            g = full
        return g, None, None, None, None


class Conv1x1(nn.Module):
    """Stands in for a frozen ``nn.Conv2d`` with a 1x1 kernel on the CPU; the same function, run by :class:`_OneByOne`.

    Parameters
    ----------
    conv : ``nn.Conv2d`` with a 1x1 kernel, groups 1, no padding
        Its tensors are taken over, not cloned (the convolution belongs to the private copy).

    ``forward`` maps (N, in_channels, H, W) to (N, out_channels, ceil(H / stride), ceil(W / stride));
    off the CPU, or for other dtypes or shapes, it is ``F.conv2d``.
    """

    weight_t: torch.Tensor  # a buffer (register_buffer below), which nn.Module's typing cannot tell from a submodule

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)
        self.register_buffer("weight_t", conv.weight.detach().transpose(0, 1).contiguous(), persistent=False)
        self.stride = tuple(conv.stride)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.ndim != 4:
            return F.conv2d(x, self.weight, self.bias, self.stride)
        return _OneByOne.apply(x, self.weight, self.weight_t, self.bias, self.stride)


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or getattr(m, "_backward_pre_hooks", None))


def _is_1x1(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.groups == 1 and m.padding_mode == "zeros"
            and m.padding in ((0, 0), "valid") and m.weight.dtype == torch.float32)


def conv_bn_pairs(module: nn.Module, layer: str) -> list[tuple[str, str]]:
    """(convolution, batch norm) module names where the norm is applied to the convolution's output alone.

    Read from a torch.fx trace of the forward: the convolution is called once and its output is used
    only by the norm, which is called once. Pairs that the layer's boundary separates, and hooked
    modules, are left alone (a hook on either would see something else). No trace, no pairs.

    Parameters
    ----------
    module : the model
    layer : the name of the layer whose output is wanted

    Returns
    -------
    list of (convolution name, batch norm name), in the order of the trace
    """
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # noqa: BLE001 - control flow that fx cannot trace: nothing is folded
        return []
    modules = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    inside = lambda name: name == layer or name.startswith(layer + ".")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(node.target, str) or len(node.args) != 1 or node.kwargs:
            continue
        bn, conv_node = modules.get(node.target), node.args[0]
        if type(bn) is not nn.BatchNorm2d or not isinstance(conv_node, torch.fx.Node) or conv_node.op != "call_module" \
                or not isinstance(conv_node.target, str):  # a call_module target is the module's name
            continue
        conv = modules.get(conv_node.target)
        if (type(conv) is nn.Conv2d and bn.track_running_stats and bn.running_mean is not None
                and len(conv_node.users) == 1 and calls[conv_node.target] == 1 and calls[node.target] == 1
                and inside(conv_node.target) == inside(node.target) and not _hooked(conv) and not _hooked(bn)):
            pairs.append((conv_node.target, node.target))
    return pairs


def fast_copy(module: nn.Module, layer: str, dev: torch.device) -> nn.Module | None:
    """A frozen eval-mode copy of ``module`` on ``dev`` that computes the same layer output faster; None if none is made.

    - Batch norm in eval mode is an affine map per channel: folded into the preceding convolution's
      weight and bias (the norm becomes an identity), it costs nothing forward or backward.
    - On the CPU, 1x1 convolutions run on oneDNN (:class:`Conv1x1`) and 4-D weights are
      channels-last (oneDNN's preferred layout).

    The caller's model is only read. The results equal the original model's up to float rounding
    (tested). None for a TorchScript module, a module that cannot be deep-copied, or with
    ``SPEEDUPS`` empty: the caller then runs its own model.

    Parameters
    ----------
    module : the model
    layer : the name of the layer whose output is wanted (no pair across its boundary is folded)
    dev : the device of the copy
    """
    if not SPEEDUPS or is_script(module):
        return None
    try:
        net = copy.deepcopy(module)
    except Exception:  # noqa: BLE001 - a module that cannot be copied runs as it is
        return None
    net.eval()
    net.to(dev)
    if "fold_batchnorm" in SPEEDUPS:
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        for conv_name, bn_name in conv_bn_pairs(net, layer):
            conv, bn = net.get_submodule(conv_name), net.get_submodule(bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):  # as conv_bn_pairs found them
                net.set_submodule(conv_name, fuse_conv_bn_eval(conv, bn))
                net.set_submodule(bn_name, nn.Identity())
    if dev.type == "cpu":
        if "onednn_1x1" in SPEEDUPS and torch.backends.mkldnn.is_available():
            for name, m in list(net.named_modules()):
                if _is_1x1(m) and not _hooked(m):
                    net.set_submodule(name, Conv1x1(m))
        net.to(memory_format=torch.channels_last)
        for m in net.modules():
            if isinstance(m, Conv1x1):
                m.weight_t = m.weight_t.contiguous(memory_format=torch.channels_last)
    for p in net.parameters():  # after the swaps: folded convolutions come with fresh parameters
        p.requires_grad_(False)
    return net
