"""Gradient checks for Caffe layers and nets, to call from pytest (Python layers and stock layers alike).

Caffe's own ``GradientChecker`` is C++ only and cannot see Python layers. This module checks the analytic
backward of a layer (or of a whole net) against central differences through a real ``caffe.Net``:

    from pygeometry.testing import check_layer

    def test_my_layer_gradient():
        x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
        check_layer({"x": x}, module="my_layers", layer="Square", param_str="{}")   # raises GradientCheckError

What is checked, and how (see :func:`compare`):
    objective  J = sum over the checked tops t of sum(top_t * g_t), in float64. A top with a loss weight w
               (``loss_weight``) gets g_t = w, as Caffe does; the other tops get the fixed random g_t given
               in ``top_diffs`` (default: standard normal, seeded), set as the top's diff before the backward.
    numeric    (J(x + h e_i) - J(x - h e_i)) / 2h for sampled elements i of each checked bottom or parameter.
    analytic   the bottom's (or parameter's) diff after one ``net.backward``.
    tolerance  relative to each gradient's own size, never to 1: an element fails when
               |a - n| > noise + rtol * scale, with scale = max |gradient| over that blob (analytic and numeric),
               and noise = the rounding bound of the terms of J that the perturbation changed, over 2h (terms
               it did not change cancel exactly; a far-away sentinel value cannot widen it). The sampled elements
               must also agree as vectors: ||a - n|| <= rtol * ||n||. So a zero, halved or sign-flipped
               gradient fails however small the gradient is.
    kinks      as Caffe's GradientChecker does with ``kink``/``kink_range``, an element whose input value lies
               within ``kink_range`` of ``kink`` (or, with ``kink_period``, of any multiple of it: the integer
               kinks of bilinear interpolation) is not checked; and an element whose one-sided differences
               disagree (the forward is not smooth within +-h there: ReLU, L1, bilinear cell borders) is
               counted as a kink and skipped. At most ``max_kink_fraction`` of the samples may be skipped, so
               a broken layer cannot pass by being all kinks.

Use float64 bottoms and a small step for exact checks of layers that compute in their input dtype; Caffe
blobs are float32, so a layer inside a ``caffe.Net`` is checked in float32 with a larger step (default 1e-2).
For pure functions (no Caffe at all), :func:`check_function` does the same in float64.

Failures raise :class:`GradientCheckError` (an AssertionError, so pytest shows it as a plain failed assert)
with a report: which blob, which element (as an index tuple), analytic vs numeric, the worst relative error.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

# Caffe's glog prints every net it builds; a checker builds many. Quiet unless the user asked otherwise (only
# effective when this module is imported before caffe, as in a test file that imports it first).
os.environ.setdefault("GLOG_minloglevel", "2")

F32_EPS = float(np.finfo(np.float32).eps)


class GradientCheckError(AssertionError):
    """A gradient check failed; the message is the report (see :class:`GradientReport`)."""


@dataclasses.dataclass
class BlobReport:
    """The comparison for one checked blob (a bottom or a parameter)."""

    name: str
    shape: tuple
    checked: int = 0
    kinks: int = 0
    scale: float = 0.0
    tolerance: float = 0.0
    worst_index: tuple = ()
    worst_analytic: float = 0.0
    worst_numeric: float = 0.0
    worst_error: float = 0.0  # |a - n| / scale at the worst element
    norm_error: float = 0.0  # ||a - n|| / ||n|| over the checked elements
    failures: list = dataclasses.field(default_factory=list)  # (index, analytic, numeric)

    def ok(self, max_kink_fraction: float) -> bool:
        total = self.checked + self.kinks
        return not self.failures and (total == 0 or self.kinks <= max_kink_fraction * total)

    def lines(self, max_kink_fraction: float) -> list:
        status = "ok" if self.ok(max_kink_fraction) else "FAILED"
        out = [f"  {self.name} {self.shape}: {status}; {self.checked} elements checked, {self.kinks} at kinks; "
               f"gradient scale {self.scale:.3e}, tolerance {self.tolerance:.3e}; worst element {self.worst_index}: "
               f"analytic {self.worst_analytic:.6e} vs numeric {self.worst_numeric:.6e} "
               f"(relative error {self.worst_error:.3e}); ||a - n|| / ||n|| = {self.norm_error:.3e}"]
        total = self.checked + self.kinks
        if total and self.kinks > max_kink_fraction * total:
            out.append(f"    {self.kinks} of {total} sampled elements sit at kinks (more than "
                       f"{max_kink_fraction:.0%}): choose inputs away from them")
        for index, a, n in self.failures[:5]:
            out.append(f"    {self.name}{list(index)}: analytic {a:.6e} vs numeric {n:.6e}")
        if len(self.failures) > 5:
            out.append(f"    ... and {len(self.failures) - 5} more elements")
        return out


@dataclasses.dataclass
class GradientReport:
    """All blobs of one check. ``str(report)`` is the text a failure shows."""

    what: str
    blobs: list
    rtol: float
    step: float
    max_kink_fraction: float

    @property
    def ok(self) -> bool:
        return all(b.ok(self.max_kink_fraction) for b in self.blobs)

    def __str__(self) -> str:
        head = (f"gradient check of {self.what}: {'passed' if self.ok else 'FAILED'} "
                f"(central differences, step {self.step:g}, rtol {self.rtol:g})")
        return "\n".join([head] + [line for b in self.blobs for line in b.lines(self.max_kink_fraction)])

    def raise_if_failed(self):
        if not self.ok:
            raise GradientCheckError(str(self))
        return self


def _near_kink(value: float, kink, kink_range: float, kink_period) -> bool:
    if kink is None or kink_range <= 0:
        return False
    offset = value - kink
    if kink_period:
        offset = (offset + 0.5 * kink_period) % kink_period - 0.5 * kink_period
    return abs(offset) < kink_range


def compare(name: str, values: np.ndarray, analytic: np.ndarray, terms: Callable[[], np.ndarray], *, step: float,
            rtol: float, unit_roundoff: float, samples, rng, kink=None, kink_range: float = 0.0, kink_period=None,
            smoothness: float = 0.25, base_terms: np.ndarray = None) -> BlobReport:
    """Central differences of J = sum(terms()) with respect to `values` (perturbed in place and restored).

    Args:
        values: the array the objective reads (a blob's data), any shape; perturbed in place.
        analytic: its analytic gradient, same shape.
        terms: the objective's terms as a float64 vector (top * top gradient, element by element), so that the
            rounding noise of a difference can be bounded by the terms that changed: unit_roundoff * sum of
            their magnitudes (terms that did not change cancel exactly), over 2h.
        unit_roundoff: of the dtype the terms were computed in (float32 for Caffe blobs).
        samples: how many elements to check (None or >= size: all of them), chosen with rng.
        smoothness: an element is a kink when its one-sided differences differ by more than smoothness times
            the larger of them, plus their noise (the forward bends sharply within +-step; a smooth function,
            right or wrong, has nearly equal one-sided slopes), and the central difference disagrees with the
            analytic gradient.
    """
    report = BlobReport(name=name, shape=tuple(values.shape))
    flat = values.reshape(-1)
    if not np.shares_memory(flat, values):
        raise ValueError(f"{name}: the values to perturb must be contiguous (perturbed in place)")
    analytic = np.asarray(analytic, dtype=np.float64).reshape(-1)
    if flat.size == 0:
        return report
    v0 = terms() if base_terms is None else base_terms
    n = flat.size if samples is None or samples >= flat.size else int(samples)
    order = np.arange(flat.size) if n == flat.size else rng.choice(flat.size, size=n, replace=False)

    def noise(a, b):
        changed = a != b
        return 4 * unit_roundoff * float(np.sum(np.abs(a[changed]) + np.abs(b[changed])))

    rows = []
    for i in order:
        old = flat[i]
        if _near_kink(float(old), kink, kink_range, kink_period):
            report.kinks += 1
            continue
        flat[i] = old + step
        vp = terms()
        flat[i] = old - step
        vm = terms()
        flat[i] = old
        rows.append((int(i), analytic[i], float(np.sum(vp - vm)) / (2 * step), float(np.sum(vp - v0)) / step,
                     float(np.sum(v0 - vm)) / step, noise(vp, vm) / (2 * step),
                     (noise(vp, v0) + noise(v0, vm)) / step))
    if rows:
        report.scale = float(max(np.abs(analytic).max(), max(abs(r[2]) for r in rows)))
    kept = []
    for i, a, num, forward, backward, atol, side_noise in rows:
        tol = atol + rtol * report.scale
        report.tolerance = max(report.tolerance, tol)
        bend = abs(forward - backward)
        if bend > smoothness * max(abs(forward), abs(backward)) + side_noise and abs(a - num) > tol:
            report.kinks += 1  # not smooth within +-step here: no verdict on this element
            continue
        kept.append((i, a, num, atol))
        if abs(a - num) > tol:
            report.failures.append((tuple(int(v) for v in np.unravel_index(i, values.shape)), float(a), float(num)))
    report.checked = len(kept)
    if kept:
        k = np.array(kept)
        err = np.abs(k[:, 1] - k[:, 2])
        worst = int(np.argmax(err))
        report.worst_index = tuple(int(v) for v in np.unravel_index(int(k[worst, 0]), values.shape))
        report.worst_analytic, report.worst_numeric = float(k[worst, 1]), float(k[worst, 2])
        report.worst_error = float(err[worst] / report.scale) if report.scale > 0 else float(err[worst])
        norm_n = float(np.linalg.norm(k[:, 2]))
        norm_diff = float(np.linalg.norm(k[:, 1] - k[:, 2]))
        report.norm_error = norm_diff / norm_n if norm_n > 0 else norm_diff
        if norm_diff > rtol * norm_n + float(np.linalg.norm(k[:, 3])) and not report.failures:
            report.failures.append((report.worst_index, report.worst_analytic, report.worst_numeric))
    return report


# ---------------------------------------------------------------------------------------------- pure functions
def numeric_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of x (perturbed in place)."""
    g = np.zeros(x.shape, dtype=np.float64)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def check_function(forward: Callable[..., object], backward: Callable[..., object], inputs: Mapping[str, np.ndarray],
                   *, wrt: Sequence[str] = None, output_grads=None, step: float = 1e-6, rtol: float = 1e-6,
                   samples=None, seed: int = 0, kink=None, kink_range: float = 0.0, kink_period=None,
                   max_kink_fraction: float = 0.2) -> GradientReport:
    """Float64 check of a pure kernel: forward(**inputs) -> array or tuple; backward(output_grads, **inputs)
    -> {input name: gradient}.

    The objective is sum(output_k * output_grads[k]) over the outputs (default grads: seeded standard normal).
    Raises GradientCheckError with the report when a gradient disagrees.
    """
    rng = np.random.default_rng(seed)
    inputs = {k: np.array(v, dtype=np.float64) for k, v in inputs.items()}
    outs = forward(**inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    if output_grads is None:
        output_grads = tuple(rng.normal(size=np.shape(o)) for o in outs)
    output_grads = output_grads if isinstance(output_grads, tuple) else (output_grads,)

    def terms():
        result = forward(**inputs)
        result = result if isinstance(result, tuple) else (result,)
        return np.concatenate([(np.asarray(o, np.float64) * g).ravel() for o, g in zip(result, output_grads)])

    analytic = backward(output_grads if len(output_grads) > 1 else output_grads[0], **inputs)
    blobs = [compare(name, inputs[name], analytic[name], terms, step=step, rtol=rtol,
                     unit_roundoff=float(np.finfo(np.float64).eps), samples=samples, rng=rng, kink=kink, kink_range=kink_range, kink_period=kink_period)
             for name in (wrt or list(analytic))]
    name = getattr(forward, "__name__", "function")
    return GradientReport(name, blobs, rtol, step, max_kink_fraction).raise_if_failed()


# ---------------------------------------------------------------------------------------------- Caffe nets
def _load_net(proto_text: str, phase, weights=None):
    import caffe

    fd, path = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write(proto_text)
    try:
        return caffe.Net(path, phase, weights=weights) if weights else caffe.Net(path, phase)
    finally:
        os.remove(path)


def layer_net(bottoms: Mapping[str, np.ndarray], make_layer: Callable, tops: Sequence[str], *, propagate_down=None,
              loss_weight=None, phase=None):
    """A caffe.Net with one layer under test, its bottoms filled with the given arrays.

    Args:
        bottoms: {name: array}; each becomes a Parameter layer (a learnable blob), so Caffe back-propagates
            into it and honours propagate_down (force_backward would override propagate_down, see Net::Init).
            Read and write them with :func:`bottom_blob`.
        make_layer: make_layer(*bottom_tops, **kwargs) -> top or tuple of tops, a NetSpec layer (e.g. a
            ``pygeometry.netspec`` function, or ``lambda *b, **kw: L.Convolution(*b, ..., **kw)``).
        tops: names for the layer's tops.
        loss_weight: one weight per top (default: 1 for the first top, 0 for the others, so that Caffe runs
            the backward; a top with weight 0 still gets the diff you give it).
        propagate_down: one flag per bottom.
        phase: caffe.TEST (default) or caffe.TRAIN.
    """
    import caffe
    from caffe import layers as L

    n = caffe.NetSpec()
    for name, value in bottoms.items():
        setattr(n, name, L.Parameter(parameter_param=dict(shape=dict(dim=list(np.shape(value))))))
    weights = list(loss_weight) if loss_weight is not None else [1.0] + [0.0] * (len(tops) - 1)
    if len(weights) != len(tops):
        raise ValueError(f"loss_weight needs one value per top ({len(tops)}), got {weights}")
    if not any(weights):
        raise ValueError("loss_weight: at least one top needs a non-zero weight, or Caffe skips the backward "
                         "('does not need backward computation') and no gradient reaches the bottoms")
    kwargs = {"loss_weight": weights}
    if propagate_down is not None:
        kwargs["propagate_down"] = list(propagate_down)
    made = make_layer(*[getattr(n, k) for k in bottoms], **kwargs)
    made = made if isinstance(made, tuple) else (made,)
    for name, top in zip(tops, made):
        setattr(n, name, top)
    net = _load_net(str(n.to_proto()), caffe.TEST if phase is None else phase)
    for name, value in bottoms.items():
        bottom_blob(net, name).data[...] = value
    return net


def bottom_blob(net, name: str):
    """The blob behind a bottom made by :func:`layer_net` (a Parameter layer's parameter: data and diff)."""
    return net.params[name][0]


def python_layer(module: str, layer: str, param_str="", ntop: int = None):
    """make_layer for :func:`layer_net`/:func:`check_layer`: a Python layer by module, class and param_str
    (a dict is written as JSON)."""
    from caffe import layers as L

    text = json.dumps(param_str) if isinstance(param_str, Mapping) else str(param_str)

    def make(*bottoms, **kwargs):
        count = ntop or len(kwargs.get("loss_weight", [1]))
        return L.Python(*bottoms, python_param=dict(module=module, layer=layer, param_str=text), ntop=count,
                        **kwargs)
    make.__name__ = f"{module}.{layer}"
    return make


def stock_layer(type_name: str, ntop: int = None, **layer_params):
    """make_layer for a stock Caffe layer, e.g. ``stock_layer("Convolution", convolution_param=dict(...))``."""
    from caffe import layers as L

    def make(*bottoms, **kwargs):
        count = ntop or len(kwargs.get("loss_weight", [1]))
        return getattr(L, type_name)(*bottoms, ntop=count, **layer_params, **kwargs)
    make.__name__ = type_name
    return make


def _terms(net, grads: Mapping[str, np.ndarray]) -> np.ndarray:
    """The objective's terms after a forward: top * gradient for every element of every checked top."""
    net.forward()
    return np.concatenate([(net.blobs[t].data.astype(np.float64) * g).ravel() for t, g in grads.items()])


def check_net_gradients(net, check: Iterable, *, top_diffs: Mapping[str, np.ndarray] = None, step: float = 1e-2,
                        rtol: float = 2e-2, samples=25, seed: int = 0, kink=None, kink_range: float = 0.0,
                        kink_period=None, max_kink_fraction: float = 0.2, what: str = "net") -> GradientReport:
    """Check the backward of an existing caffe.Net against central differences of its objective.

    The objective is Caffe's: the sum over loss tops (blobs with a non-zero loss weight w) of w * sum(top),
    plus sum(top * top_diffs[top]) for the tops given in ``top_diffs`` (a given diff replaces a loss top's
    weight, as ``net.backward(**diffs)`` does).

    Args:
        check: what to compare: a name in ``net.params`` is that layer's first parameter (``(name, i)``: its
            i-th); other names are ``net.blobs`` (an input blob's diff needs ``force_backward: true``).
        samples: elements per checked blob (None: all).
    Returns the report; raises GradientCheckError when a gradient disagrees.
    """
    rng = np.random.default_rng(seed)
    net.forward()
    grads = {t: np.full(net.blobs[t].data.shape, float(w))
             for t, w in net.blob_loss_weights.items() if w != 0}
    for t, g in (top_diffs or {}).items():
        grads[t] = np.broadcast_to(np.asarray(g, dtype=np.float64), net.blobs[t].data.shape)
    if not grads:
        raise ValueError(f"{what}: nothing to differentiate (no loss top and no top_diffs)")
    base = _terms(net, grads)
    net.clear_param_diffs()
    for t, g in grads.items():  # Caffe keeps a loss top's diff (its weight) from setup: restore or replace it
        net.blobs[t].diff[...] = g
    net._backward(len(net.layers) - 1, 0)
    targets = []
    for item in check:
        name, index = (item, 0) if isinstance(item, str) else item
        if name in net.params:
            blob = net.params[name][index]
            label = name if len(net.params[name]) == 1 else f"{name}[{index}]"
        elif name in net.blobs:
            blob, label = net.blobs[name], name
        else:
            raise KeyError(f"{what}: no parameter or blob named {name!r}")
        targets.append((label, blob, blob.diff.copy()))
    blobs = [compare(label, blob.data, analytic, lambda: _terms(net, grads), step=step, rtol=rtol,
                     unit_roundoff=F32_EPS / 2, samples=samples, rng=rng, kink=kink, kink_range=kink_range,
                     kink_period=kink_period, base_terms=base)
             for label, blob, analytic in targets]
    net.forward()
    return GradientReport(what, blobs, rtol, step, max_kink_fraction).raise_if_failed()


def check_net(net_or_prototxt, inputs: Mapping[str, np.ndarray], check: Iterable, *, weights: str = None,
              top_diffs=None, phase=None, **options) -> GradientReport:
    """Check a whole net (a caffe.Net, a prototxt path, or a caffe.NetSpec) with respect to chosen input blobs
    and parameters. Input blobs get diffs only with force_backward, which is switched on here for a prototxt
    or NetSpec. ``inputs`` fills blobs by name before the check; options as in :func:`check_net_gradients`.
    """
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net = net_or_prototxt
    if not isinstance(net, caffe.Net):
        if isinstance(net, caffe.NetSpec):
            param = net.to_proto()
        else:
            param = caffe_pb2.NetParameter()
            with open(net_or_prototxt) as f:
                text_format.Merge(f.read(), param)
        param.force_backward = True
        net = _load_net(text_format.MessageToString(param), caffe.TEST if phase is None else phase, weights)
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    return check_net_gradients(net, check, top_diffs=top_diffs, what=options.pop("what", "net"), **options)


def check_layer(bottoms: Mapping[str, np.ndarray], make_layer: Callable = None, *, module: str = None,
                layer: str = None, param_str="", tops: Sequence[str] = None, check: Sequence[str] = None,
                loss_weight=None, propagate_down=None, top_diffs=None, phase=None, **options) -> GradientReport:
    """Check one layer's bottom gradients through a real caffe.Net against central differences.

    Args:
        bottoms: {name: array}, the layer's bottoms in order (Parameter layers, see :func:`layer_net`).
        make_layer: the layer (see :func:`python_layer`, :func:`stock_layer`, or a ``pygeometry.netspec``
            function), or give a Python layer by ``module``, ``layer`` and ``param_str``.
        tops: names for its tops (default one top, "top").
        loss_weight: a number for the first top, or one per top. A top with a non-zero weight is a loss top:
            its gradient is the weight, as in Caffe, so the check proves that the layer honours it. Default:
            weight 1 on the first top; when that top is not a scalar (not a loss), it gets a seeded random
            diff instead and the other tops a zero diff (pass ``top_diffs`` to choose them).
        check: the bottoms to compare (default: every bottom that ``propagate_down`` allows).
        options: step, rtol, samples, seed, kink, kink_range, kink_period, max_kink_fraction
            (see :func:`check_net_gradients`).
    Returns the report; raises GradientCheckError when a gradient disagrees.
    """
    if make_layer is None:
        if not (module and layer):
            raise ValueError("check_layer needs make_layer, or module= and layer= for a Python layer")
        make_layer = python_layer(module, layer, param_str)
    tops = list(tops or ["top"])
    if loss_weight is not None and np.ndim(loss_weight) == 0:
        loss_weight = [float(loss_weight)] + [0.0] * (len(tops) - 1)
    net = layer_net(bottoms, make_layer, tops, propagate_down=propagate_down, loss_weight=loss_weight, phase=phase)
    if top_diffs is None and loss_weight is None and net.blobs[tops[0]].data.size > 1:
        rng = np.random.default_rng(options.get("seed", 0) + 1)
        top_diffs = {t: (rng.normal(size=net.blobs[t].data.shape) if i == 0 else np.zeros(net.blobs[t].data.shape))
                     for i, t in enumerate(tops)}
    flags = list(propagate_down) if propagate_down is not None else [True] * len(bottoms)
    check = list(check) if check is not None else [b for b, f in zip(bottoms, flags) if f]
    return check_net_gradients(net, [(b, 0) for b in check], top_diffs=top_diffs,
                               what=options.pop("what", getattr(make_layer, "__name__", "layer")), **options)


# ---------------------------------------------------------------------------------------------- pytest helpers
@dataclasses.dataclass
class LayerCase:
    """One layer to check, for :func:`parametrize_layers`.

    Args:
        bottoms: {name: array}, or a function rng -> {name: array} (fresh arrays for every seed).
        make_layer / module, layer, param_str: the layer, as in :func:`check_layer`.
        options: further :func:`check_layer` keyword arguments (tops, loss_weight, step, kink, ...).
    """

    bottoms: object
    make_layer: Callable = None
    module: str = None
    layer: str = None
    param_str: object = ""
    options: dict = dataclasses.field(default_factory=dict)

    def check(self, seed: int = 0, **overrides) -> GradientReport:
        rng = np.random.default_rng(seed)
        bottoms = self.bottoms(rng) if callable(self.bottoms) else self.bottoms
        options = {**self.options, **overrides}
        return check_layer(bottoms, self.make_layer, module=self.module, layer=self.layer, param_str=self.param_str,
                           seed=seed, **options)


def parametrize_layers(cases: Mapping[str, LayerCase], argname: str = "layer_case"):
    """pytest.mark.parametrize over {id: LayerCase}: ``@parametrize_layers(CASES) def test(layer_case):
    layer_case.check()``."""
    import pytest

    return pytest.mark.parametrize(argname, list(cases.values()), ids=list(cases))
