"""Per-row weight gradients of linear and convolution layers from their inputs and output grads.

For one sample, the weight gradient of ``y = W x (+ b)`` is ``sum_t g_t x_t^T`` over the
positions t that share W (sequence positions for Linear, output pixels for a convolution,
whose x_t is the input patch). A row of the gradient matrix is the gradient of the row loss
over m consecutive samples, so its weight gradient is that sum over the row's m samples and
all their positions: one batched matrix product (or one grouped-convolution backward) per
layer, exact in the model's dtype. ``g`` comes from one backward pass of the row losses.

Results go to an ``emit`` object with two methods:

- ``emit.rows(local, G)``: ``G`` is ``(c, numel)`` for parameter ``local`` ("weight" or
  "bias"); it may live in a reused scratch buffer, so ``emit`` copies it before returning;
- ``emit.outer(local, g, a)``: the row gradient is the outer product ``g_r a_r^T`` (one
  position per row), which a store can write in its own layout without a temporary.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: bmm (im2col) instead of a grouped-convolution backward for a k x k convolution when
#: its output has at most this many positions: late layers (many channels, few pixels)
#: where the grouped kernel is slow (measured on CPU, see bench/bench_gradients.py).
BMM_MAX_POSITIONS = 64


class Workspace:
    """Scratch buffers reused across layers and chunks.

    A fresh multi-megabyte tensor is first touched page by page (about 1 GB/s), which costs
    more than the matrix product that fills it; reusing one buffer per role avoids that.
    """

    def __init__(self):
        self._bufs = {}

    def get(self, role: str, shape, like: torch.Tensor) -> torch.Tensor:
        """A tensor of ``shape`` (uninitialised) with ``like``'s dtype and device."""
        n = math.prod(shape)
        buf = self._bufs.get(role)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(n, dtype=like.dtype, device=like.device)
            self._bufs[role] = buf
        return buf[:n].view(shape)

    def clear(self) -> None:
        """Release the buffers."""
        self._bufs.clear()


def linear_grads(mod, a, g, c: int, want_w: bool, want_b: bool, emit, ws: Workspace) -> None:
    """Row gradients of an ``nn.Linear``: ``a`` (N, *, in), ``g`` (N, *, out), N = c m."""
    k, o = mod.in_features, mod.out_features
    a = a.reshape(c, -1, k)  # (rows, m x positions, in)
    g = g.reshape(c, -1, o)
    if want_w:
        if a.shape[1] == 1:  # one sample, one position per row: a plain outer product
            emit.outer("weight", g[:, 0], a[:, 0])
        else:
            G = ws.get("G", (c, o, k), g)
            torch.bmm(g.transpose(1, 2), a, out=G)
            emit.rows("weight", G.view(c, -1))
    if want_b:
        emit.rows("bias", g.sum(1))


def _explicit_padding(mod, a):
    """Input padded as the module's forward pads it, and the padding left to the conv."""
    d = a.dim() - 2
    if mod.padding_mode != "zeros":
        return F.pad(a, mod._reversed_padding_repeated_twice, mode=mod.padding_mode), (0,) * d
    if mod.padding == "valid":
        return a, (0,) * d
    if mod.padding == "same":
        pads = [(dl * (k - 1) // 2, dl * (k - 1) - dl * (k - 1) // 2)
                for k, dl in zip(mod.kernel_size, mod.dilation)]
        if all(lo == hi for lo, hi in pads):
            return a, tuple(lo for lo, _ in pads)
        return F.pad(a, [v for lo, hi in reversed(pads) for v in (lo, hi)]), (0,) * d
    return a, tuple(mod.padding)


def conv_grads(mod, a, g, c: int, m: int, want_w: bool, want_b: bool, emit,
               ws: Workspace) -> None:
    """Row gradients of an ``nn.Conv1d/2d/3d``: ``a`` (N, C, *in), ``g`` (N, O, *out)."""
    o, groups = mod.out_channels, mod.groups
    positions = math.prod(g.shape[2:])
    if want_w:
        a, padding = _explicit_padding(mod, a)
        one_by_one = all(k == 1 for k in mod.kernel_size)
        if groups == 1 and (one_by_one or positions <= BMM_MAX_POSITIONS):
            G = _conv_weight_bmm(mod, a, g, c, m, padding, ws)
        else:
            G = _conv_weight_grouped(mod, a, g, c, m, padding, ws)
        emit.rows("weight", G.view(c, -1))
    if want_b:
        emit.rows("bias", g.reshape(c, m, o, positions).sum((1, 3)))


def _conv_weight_grouped(mod, a, g, c, m, padding, ws):
    """Fold the c rows into the channel (group) dimension: one grouped-conv weight backward.

    With input ``(m, c C, ...)``, output grad ``(m, c O, ...)`` and ``c G`` groups, the
    weight gradient ``(c O, C/G, *k)`` is each row's gradient, summed over its m samples by
    the batch reduction of the weight backward itself.
    """
    cin, o, groups = a.shape[1], mod.out_channels, mod.groups
    if m == 1:
        a2 = a.reshape(1, c * cin, *a.shape[2:])
        g2 = g.reshape(1, c * o, *g.shape[2:])
    else:
        a2 = a.reshape(c, m, cin, *a.shape[2:]).transpose(0, 1).reshape(m, c * cin, *a.shape[2:])
        g2 = g.reshape(c, m, o, *g.shape[2:]).transpose(0, 1).reshape(m, c * o, *g.shape[2:])
    # only the weight's shape matters for its gradient: an uninitialised scratch tensor
    w = ws.get("w", (c * o, cin // groups, *mod.kernel_size), g)
    d = len(mod.kernel_size)
    return torch.ops.aten.convolution_backward(
        g2, a2, w, None, list(mod.stride), list(padding), list(mod.dilation), False,
        [0] * d, c * groups, [False, True, False])[1]


def _conv_weight_bmm(mod, a, g, c, m, padding, ws):
    """im2col patches ``(c, C k..., m L)`` times output grads ``(c, O, m L)``: one bmm."""
    cin, o = a.shape[1], mod.out_channels
    if any(padding):
        a = F.pad(a, [p for p in reversed(padding) for _ in (0, 1)])
    ks, stride, dil = mod.kernel_size, mod.stride, mod.dilation
    out = g.shape[2:]
    d = len(ks)
    st = a.stride()
    patches = a.as_strided(
        (c, m, cin, *ks, *out),
        (st[0] * m, st[0], st[1], *(st[2 + i] * dil[i] for i in range(d)),
         *(st[2 + i] * stride[i] for i in range(d))))
    # (c, C, *k, m, *out): each row's patch matrix with its m samples side by side
    order = (0, 2, *range(3, 3 + d), 1, *range(3 + d, 3 + 2 * d))
    U = ws.get("U", (c, cin, *ks, m, *out), a)
    U.copy_(patches.permute(order))
    positions = m * math.prod(out)
    if m == 1:
        gg = g.reshape(c, o, positions)
    else:
        gg = g.reshape(c, m, o, -1).transpose(1, 2).reshape(c, o, positions)
    G = ws.get("G", (c, o, cin * math.prod(ks)), g)
    torch.bmm(gg, U.view(c, -1, positions).transpose(1, 2), out=G)
    return G
