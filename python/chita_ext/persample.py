"""Per-sample (per-row) gradients from one batched forward and backward, with module hooks.

The approach of Opacus and BackPACK: the weight gradient of a linear or convolution layer
for one sample is a product of that sample's input activations and its output gradients,
so one forward pass that keeps each hooked layer's input and one backward pass that
delivers each layer's output gradient give every row's gradient (see ``_layer_grads``).

Exact for any ``loss_fn``: the output gradient of row r is ``d loss_fn(out_r, y_r) / d out_r``
(``out_r`` the model outputs of the row's m samples), computed with a small ``vmap(grad)``
over the loss alone; one backward of the outputs with those gradients then reaches every
layer. Samples must be independent (BatchNorm in eval mode, which the caller sets).

Parameters the hooks cannot serve (other layer types, a module called more than once per
forward, a parameter shared between modules or also used outside its module) get the
generic ``torch.func`` path (:func:`vmap_rows`), restricted to those parameters.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ._layer_grads import Workspace, conv_grads, linear_grads

HOOKED_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_STOCK_FORWARD = {t: t.forward for t in HOOKED_TYPES}


@dataclass
class HookedLayer:
    """One module served by the hooks, and which of its parameters are selected."""

    name: str
    module: nn.Module
    index: dict  # "weight"/"bias" -> position in the selection
    # per-forward state
    calls: int = 0
    inp: torch.Tensor = None
    version: int = 0
    fired: bool = False
    problem: str = field(default=None)
    shapes: tuple = None  # per-sample (input, output) shapes of the last forward


def _owners(model):
    """Parameter id -> list of (module name, module, local name), counting shared ones."""
    owners = {}
    for mname, mod in model.named_modules(remove_duplicate=False):
        for local, prm in mod._parameters.items():
            if prm is not None:
                owners.setdefault(id(prm), []).append((mname, mod, local))
    return owners


def split_selection(model, sel):
    """Which selected parameters the hooks can serve, by structure alone.

    Returns
    -------
    layers : list of HookedLayer
    fallback : dict
        Position in the selection -> why the hooks cannot serve it.
    """
    owners = _owners(model)
    layers, by_module, fallback = [], {}, {}
    for i, prm in enumerate(sel.params):
        own = owners.get(id(prm), [])
        if len(own) != 1:
            fallback[i] = ("shared by several modules" if own else "not owned by a module")
            continue
        mname, mod, local = own[0]
        ok_type = type(mod) in _STOCK_FORWARD and type(mod).forward is _STOCK_FORWARD[type(mod)]
        if not ok_type or local not in ("weight", "bias"):
            fallback[i] = f"{type(mod).__name__}.{local} has no per-sample hook"
            continue
        if id(mod) not in by_module:
            by_module[id(mod)] = HookedLayer(mname, mod, {})
            layers.append(by_module[id(mod)])
        by_module[id(mod)].index[local] = i
    return layers, fallback


class DictSink:
    """Collects a chunk's per-row gradients as ``{position: (c, *shape)}`` tensors (copies)."""

    def __init__(self, sel):
        self.shapes = [tuple(t.shape) for t in sel.params]
        self.out = {}

    def start(self, i0, c):
        self.out = {}

    def rows(self, i, G):
        self.out[i] = G.reshape(G.shape[0], *self.shapes[i]).clone()

    def outer(self, i, g, a):
        self.out[i] = (g[:, :, None] * a[:, None, :]).reshape(g.shape[0], *self.shapes[i])

    def zeros(self, i, c, like):
        self.out[i] = like.new_zeros((c, *self.shapes[i]))


class _LayerEmit:
    """Binds a layer's local parameter names to selection positions for a sink."""

    def __init__(self, sink, index):
        self.sink, self.index = sink, index

    def rows(self, local, G):
        self.sink.rows(self.index[local], G)

    def outer(self, local, g, a):
        self.sink.outer(self.index[local], g, a)


class HookedPass:
    """Runs one forward + backward with hooks and sends each row's gradients to a sink.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode (samples independent).
    loss_fn : callable
        ``loss_fn(outputs, targets)`` -> scalar; the row loss is ``loss_fn`` on a row's m
        samples.
    layers : list of HookedLayer
    """

    def __init__(self, model, loss_fn, layers):
        self.model, self.loss_fn, self.layers = model, loss_fn, layers
        self.ws = Workspace()
        self._row_grad = vmap(grad(lambda o, t: loss_fn(o, t)))

    def run(self, x, y, c: int, m: int, sink, *, scale: float = 1.0, strict: bool = True,
            saved=None):
        """Row gradients of the chunk ``x`` (c m samples) into ``sink``, times ``scale``.

        ``sink`` has ``rows(i, G)``, ``outer(i, g, a)`` and ``zeros(i, c, like)`` (i the
        position in the selection). With ``strict=False`` a layer that breaks an
        assumption (called twice, batch not in dim 0, input changed in place) is only
        marked (``layer.problem``) and gets no rows; otherwise that raises RuntimeError.
        ``saved`` (a :class:`count_saved`) is entered around the forward only.
        """
        n = c * m
        for lay in self.layers:
            lay.calls, lay.inp, lay.fired, lay.problem = 0, None, False, None
        roots = {}

        def forward_hook(lay, mod, inputs, output):
            lay.calls += 1
            inp = inputs[0] if inputs else None
            if lay.calls > 1:
                lay.problem = "called more than once per forward"
            elif not (isinstance(inp, torch.Tensor) and isinstance(output, torch.Tensor)
                      and inp.dim() > 0 and inp.shape[0] == n and output.shape[0] == n):
                lay.problem = "input/output batch is not dimension 0"
            if lay.problem:
                lay.inp = None
                return None
            lay.inp, lay.version = inp.detach(), inp._version
            lay.shapes = (tuple(inp.shape[1:]), tuple(output.shape[1:]))
            replaced = None
            if not output.requires_grad:  # first layer on this path: hang it on a zero leaf
                key = (output.dtype, output.device)
                if key not in roots:
                    roots[key] = torch.zeros((), dtype=output.dtype, device=output.device,
                                             requires_grad=True)
                output = replaced = output + roots[key]
            output.register_hook(lambda gout: backward_hook(lay, gout))
            return replaced

        def backward_hook(lay, gout):
            if lay.problem or lay.inp is None:
                return None
            if lay.inp._version != lay.version:
                lay.problem = "its input is modified in place after the layer"
            else:
                emit = _LayerEmit(sink, lay.index)
                fn = linear_grads if isinstance(lay.module, nn.Linear) else conv_grads
                with torch.no_grad():
                    if fn is linear_grads:
                        fn(lay.module, lay.inp, gout, c, "weight" in lay.index,
                           "bias" in lay.index, emit, self.ws)
                    else:
                        fn(lay.module, lay.inp, gout, c, m, "weight" in lay.index,
                           "bias" in lay.index, emit, self.ws)
                lay.fired = True
            lay.inp = None
            return None

        handles = [lay.module.register_forward_hook(
            lambda mod, i, o, lay=lay: forward_hook(lay, mod, i, o)) for lay in self.layers]
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        try:
            for p, _ in flags:  # no parameter gradients: only the layers' output gradients
                p.requires_grad_(False)
            with torch.enable_grad():
                with saved if saved is not None else contextlib.nullcontext():
                    out = self.model(x)
                if not (isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] == n):
                    raise NotImplementedError("model output is not one tensor with the batch "
                                              "in dimension 0")
                if out.requires_grad and roots:
                    dout = self._output_grads(out.detach(), y, c, m)
                    if scale != 1.0:
                        dout.mul_(scale)
                    torch.autograd.grad(out, list(roots.values()), dout, allow_unused=True)
        finally:
            for h in handles:
                h.remove()
            for p, flag in flags:
                p.requires_grad_(flag)
        for lay in self.layers:
            lay.inp = None
            if lay.problem and strict:
                raise RuntimeError(f"per-sample hooks: layer {lay.name!r} {lay.problem}; "
                                   "pass method='vmap'")
            if not lay.fired and not lay.problem:  # no path to the loss: zero gradient
                like = lay.module.weight
                for i in lay.index.values():
                    sink.zeros(i, c, like)

    def _output_grads(self, out, y, c, m):
        """d(row loss)/d(outputs), ``(c m, ...)``: ``vmap(grad)`` of ``loss_fn`` per row."""
        o = out.reshape(c, m, *out.shape[1:])
        t = y.reshape(c, m, *y.shape[1:])
        return self._row_grad(o, t).reshape(out.shape)


def vmap_rows(model, loss_fn, names, x, y, c: int, m: int):
    """Per-row gradients of the named parameters with ``vmap(grad(...))`` (generic path).

    Returns a tuple of ``(c, *shape)`` tensors in the order of ``names``.
    """
    def loss_of(pvals, xr, yr):
        out = functional_call(model, dict(zip(names, pvals)), (xr,))
        return loss_fn(out, yr)

    named = dict(model.named_parameters())
    pvals = tuple(named[n].detach() for n in names)
    x = x.reshape(c, m, *x.shape[1:])
    y = y.reshape(c, m, *y.shape[1:])
    with torch.no_grad():
        return vmap(grad(loss_of), in_dims=(None, 0, 0))(pvals, x, y)


def verify_against_autograd(model, loss_fn, sel, got: dict, x, y, positions,
                            rtol: float = 1e-3):
    """Positions whose hooked per-sample gradients differ from autograd's on x (one row each).

    ``got`` maps position -> ``(len(x), *shape)``. Catches what structure cannot show: a
    parameter also used outside its module, a forward that mixes samples. Returns
    ``{position: relative error}`` for the ones that fail.
    """
    prms = [sel.params[i] for i in positions]
    flags = [(p, p.requires_grad) for p in prms]
    ref = []
    try:
        for p in prms:
            p.requires_grad_(True)
        for r in range(x.shape[0]):
            with torch.enable_grad():
                loss = loss_fn(model(x[r:r + 1]), y[r:r + 1])
                g = torch.autograd.grad(loss, prms, allow_unused=True)
            ref.append([torch.zeros_like(p) if gi is None else gi for p, gi in zip(prms, g)])
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    norms = [math.sqrt(sum(float(ref[r][j].double().square().sum()) for r in range(len(ref))))
             for j in range(len(prms))]
    floor = 1e-6 * max(norms, default=0.0)
    bad = {}
    for j, i in enumerate(positions):
        diff = math.sqrt(sum(float((got[i][r].double() - ref[r][j].double()).square().sum())
                             for r in range(len(ref))))
        if diff > rtol * norms[j] + floor:
            bad[i] = diff / max(norms[j], 1e-300)
    return bad


class count_saved:
    """Context manager: bytes of per-sample tensors autograd saves (one count per storage).

    Only tensors whose first dimension is the batch ``n`` count (not the weights).
    """

    def __init__(self, n: int):
        self.n, self._seen = n, {}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t):
        if t.dim() > 0 and t.shape[0] == self.n:
            st = t.untyped_storage()
            self._seen[st.data_ptr()] = st.nbytes()
        return t

    @property
    def nbytes(self) -> int:
        """Bytes counted so far."""
        return sum(self._seen.values())

    def __enter__(self):
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


METHODS = ("auto", "hooks", "vmap")


class PerSampleEngine:
    """Chooses, per selected parameter, hooks or the generic path, and runs both per chunk.

    Parameters
    ----------
    model, loss_fn
        As for :func:`chita_ext.collect_gradients` (model in eval mode).
    sel : PrunableParams
    method : {"auto", "hooks", "vmap"}
        ``"auto"``: hooks for every parameter they serve, ``vmap(grad)`` for the rest;
        ``"hooks"``: raise ValueError when some parameter cannot be hooked;
        ``"vmap"``: the generic path for all.

    Attributes
    ----------
    fallback : dict
        Selection position -> why it takes the generic path.
    """

    def __init__(self, model, loss_fn, sel, method: str = "auto"):
        if method not in METHODS:
            raise ValueError(f"method={method!r}; pass one of {METHODS}")
        self.model, self.loss_fn, self.sel, self.method = model, loss_fn, sel, method
        if method == "vmap":
            self.layers, self.fallback = [], {i: "method='vmap'" for i in range(len(sel.names))}
        else:
            self.layers, self.fallback = split_selection(model, sel)
        self._check_hooks_only()
        self.hooks = HookedPass(model, loss_fn, self.layers)
        self.act_bytes = 0
        self.probed = not self.layers

    def _check_hooks_only(self):
        if self.method == "hooks" and self.fallback:
            why = "; ".join(f"{self.sel.names[i]}: {r}" for i, r in list(self.fallback.items())[:4])
            raise ValueError(f"method='hooks' cannot serve {len(self.fallback)} parameter(s) "
                             f"({why}); pass method='auto' (generic path for those) or 'vmap'")

    def _drop(self, lay, locals_, reason):
        for local in locals_:
            self.fallback[lay.index.pop(local)] = reason

    def probe(self, x, y) -> None:
        """Check the hooks on a few samples (one per row) against autograd; size activations.

        Layers that break an assumption, or whose gradients differ from autograd's, move to
        the generic path.
        """
        self.probed = True
        if not self.layers:
            return
        n = x.shape[0]
        emit = DictSink(self.sel)
        try:
            saved = count_saved(n)
            self.hooks.run(x, y, n, 1, emit, strict=False, saved=saved)
        except NotImplementedError as exc:
            for lay in self.layers:
                self._drop(lay, list(lay.index), str(exc))
        else:
            # autograd's saved tensors plus the layer inputs the hooks keep (an upper bound:
            # those are often the same storages)
            self.act_bytes = saved.nbytes // n + sum(
                _nbytes(lay.shapes[0], lay.module.weight) for lay in self.layers if lay.shapes)
            for lay in self.layers:
                if lay.problem:
                    self._drop(lay, list(lay.index), lay.problem)
            ok = [i for lay in self.layers for i in lay.index.values()]
            bad = verify_against_autograd(self.model, self.loss_fn, self.sel, emit.out, x, y, ok)
            for lay in self.layers:
                wrong = [loc for loc, i in lay.index.items() if i in bad]
                self._drop(lay, wrong, "hooked gradient differs from autograd (used outside "
                                       "its module?)")
        self.layers = [lay for lay in self.layers if lay.index]
        self.hooks.layers = self.layers
        self._check_hooks_only()

    @property
    def fallback_names(self):
        """Names of the parameters on the generic path, in selection order."""
        return [self.sel.names[i] for i in sorted(self.fallback)]

    def chunk_rows(self, budget: int, m: int, rows: int) -> int:
        """Rows per chunk keeping activations and per-row scratch under ``budget`` bytes."""
        return int(max(1, min(rows, budget // max(self.row_bytes(m), 1))))

    def row_bytes(self, m: int) -> int:
        """Bytes one row of m samples takes in a chunk: its activations plus one layer's
        scratch (hooks), its per-row gradients (vmap); measured by :meth:`probe`."""
        per_row = 0
        if self.layers:
            scratch = 0
            for lay in self.layers:
                w = lay.module.weight
                item = w.element_size()
                extra = 0
                if lay.shapes and not isinstance(lay.module, nn.Linear):
                    extra = m * math.prod(lay.shapes[0]) * math.prod(lay.module.kernel_size)
                scratch = max(scratch, item * (w.numel() + extra))
            # act_bytes counts the kept layer inputs on top of autograd's saved tensors,
            # mostly the same storages: that margin covers the gradients in flight
            # (measured: MobileNetV1, 8 rows of 58 MB estimated took 51 MB each)
            per_row += m * self.act_bytes + scratch
        if self.fallback:
            p_fb = sum(self.sel.params[i].numel() for i in self.fallback)
            per_row += 2 * 4 * p_fb
        return int(per_row)

    def run(self, x, y, c: int, m: int, sink, scale: float = 1.0) -> None:
        """Row gradients (times ``scale``) of the chunk ``x`` (c m samples) into ``sink``."""
        if self.layers:
            self.hooks.run(x, y, c, m, sink, scale=scale)
        if self.fallback:
            order = sorted(self.fallback)
            g = vmap_rows(self.model, self.loss_fn, [self.sel.names[i] for i in order], x, y, c, m)
            for i, gi in zip(order, g):
                gi = gi.reshape(c, -1)
                sink.rows(i, gi * scale if scale != 1.0 else gi)


def _nbytes(shape, like):
    return math.prod(shape) * like.element_size()
