"""Build a one-layer caffe.Net from NetSpec with Input bottoms, and check it against its kernel."""
import os
import tempfile

import numpy as np

import caffe
from caffe import layers as L


def build_net(bottoms, make_layer, top_names, propagate_down=None, phase=caffe.TEST):
    """bottoms: {name: array}; make_layer(n, *bottom_tops) -> top or tuple of tops.

    The bottoms are Parameter layers (learnable blobs) and the first top carries loss_weight 1, so Caffe
    back-propagates into the bottoms and honours propagate_down (force_backward would override
    propagate_down, see Net::Init).
    Returns a caffe.Net (TEST phase unless phase says otherwise) with the bottoms filled with the arrays.
    """
    n = caffe.NetSpec()
    for name, value in bottoms.items():
        setattr(n, name, L.Parameter(parameter_param=dict(shape=dict(dim=list(value.shape)))))
    kwargs = {"loss_weight": [1.0] + [0.0] * (len(top_names) - 1)}
    if propagate_down is not None:
        kwargs["propagate_down"] = propagate_down
    tops = make_layer(*[getattr(n, k) for k in bottoms], **kwargs)
    tops = tops if isinstance(tops, tuple) else (tops,)
    for name, top in zip(top_names, tops):
        setattr(n, name, top)
    proto = str(n.to_proto())
    fd, path = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write(proto)
    try:
        net = caffe.Net(path, phase)
    finally:
        os.remove(path)
    for name, value in bottoms.items():
        bottom_blob(net, name).data[...] = value
    return net


def bottom_blob(net, name):
    """The blob behind a bottom made by build_net (a Parameter layer's parameter: data and diff)."""
    return net.params[name][0]


def run_backward(net, top_diffs):
    """Backward from given top diffs (loss tops: pass {} and Caffe uses the loss weight)."""
    net.backward(**top_diffs)


def finite_difference_check(net, bottoms, top_names, top_diffs, check_names, rng, step=1e-2, samples=25,
                            tol=2e-2):
    """float32 central differences of sum(top * top_diff) against the net's backward, on sampled elements."""
    def objective():
        net.forward()
        total = 0.0
        for name in top_names:
            g = top_diffs.get(name)
            total += float(np.sum(net.blobs[name].data.astype(np.float64) * (1.0 if g is None else g)))
        return total

    objective()
    run_backward(net, {k: v for k, v in top_diffs.items() if v is not None})
    analytic = {name: bottom_blob(net, name).diff.copy() for name in check_names}
    for name in check_names:
        data = bottom_blob(net, name).data
        flat = data.reshape(-1)
        for i in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
            old = float(flat[i])
            flat[i] = old + step
            fp = objective()
            flat[i] = old - step
            fm = objective()
            flat[i] = old
            numeric = (fp - fm) / (2 * step)
            a = float(analytic[name].reshape(-1)[i])
            scale = max(abs(a), abs(numeric), 1.0)
            assert abs(a - numeric) <= tol * scale, f"{name}[{i}]: analytic {a} vs numeric {numeric}"
    net.forward()
