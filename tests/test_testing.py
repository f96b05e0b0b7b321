"""pygeometry.testing, the public gradient checker: it passes correct layers (kinks included), fails broken ones
with a readable report, honours propagate_down and loss_weight, and checks stock layers, whole nets and pure
functions. The user-facing example lives in examples/test_my_layers.py and the README runs the same way."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry.testing import (GradientCheckError, LayerCase, check_function, check_layer, check_net,
                                parametrize_layers, stock_layer)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))  # my_layers: a user's own layers, imported by Caffe by module name


def test_stock_relu_passes_with_inputs_on_its_kink():
    """A sixth of the inputs sit within the step of ReLU's kink at 0: they are counted as kinks, not failures."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 30)).astype(np.float32)
    x[:, :5] = rng.uniform(-5e-3, 5e-3, size=(4, 5))
    report = check_layer({"x": x}, stock_layer("ReLU"), samples=None)
    blob = report.blobs[0]
    assert blob.kinks > 0 and blob.checked + blob.kinks == 120 and blob.kinks <= 20


def test_kink_and_kink_range_skip_the_chosen_values():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 20)).astype(np.float32)
    report = check_layer({"x": x}, stock_layer("ReLU"), samples=None, kink=0.0, kink_range=0.5,
                          max_kink_fraction=0.6)
    assert report.blobs[0].kinks == int(np.sum(np.abs(x) < 0.5))


def test_a_layer_that_is_all_kinks_does_not_pass():
    x = np.random.default_rng(2).uniform(-4e-3, 4e-3, size=(2, 20)).astype(np.float32)
    with pytest.raises(GradientCheckError, match="at kinks .*choose inputs away from them"):
        check_layer({"x": x}, stock_layer("ReLU"), samples=None)


def test_a_wrong_gradient_fails_with_a_readable_report():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    with pytest.raises(GradientCheckError) as failure:
        check_layer({"x": x}, module="my_layers", layer="BuggySquare", param_str={"a": 2.0})
    text = str(failure.value)
    assert "gradient check of my_layers.BuggySquare: FAILED" in text
    assert re.search(r"worst element \(\d, \d, \d, \d\): analytic -?\d\.\d+e[+-]\d+ vs numeric", text)
    assert re.search(r"x\[\d, \d, \d, \d\]: analytic", text) and "relative error 5.000e-01" in text


def test_small_gradients_are_judged_against_their_own_size():
    """A loss gradient of ~1e-4 per element: halving it is a failure (a tolerance floored at 1 passed it)."""
    x = np.random.default_rng(3).normal(size=(2, 3, 4, 5)).astype(np.float32)
    check_layer({"x": x}, module="my_layers", layer="ScaledSquare", param_str={"a": 1e-4}, top_diffs=None)
    with pytest.raises(GradientCheckError):
        check_layer({"x": x}, module="my_layers", layer="BuggySquare", param_str={"a": 1e-4})


@pytest.mark.parametrize("loss_weight", [0.3, 2.0])
def test_loss_weight_is_applied(loss_weight):
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    report = check_layer({"a": a, "b": b}, stock_layer("EuclideanLoss"), tops=["loss"], loss_weight=loss_weight,
                         samples=None)
    assert report.ok and report.blobs[0].scale == pytest.approx(loss_weight * np.abs(a - b).max() / 4, rel=1e-3)


def test_propagate_down_false_bottoms_are_not_checked_and_not_written():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    report = check_layer({"a": a, "b": b}, stock_layer("EuclideanLoss"), tops=["loss"], propagate_down=[True, False])
    assert [blob.name for blob in report.blobs] == ["a"]


def test_whole_net_against_inputs_and_parameters(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[3, 4, 5, 6]))
    n.conv = L.Convolution(n.data, num_output=5, kernel_size=3, pad=1, weight_filler=dict(type="gaussian", std=0.3))
    n.pool = L.Pooling(n.conv, pool=1, kernel_size=2, stride=2)  # average pooling
    n.fc = L.InnerProduct(n.pool, num_output=2, weight_filler=dict(type="gaussian", std=0.3))
    n.target = L.Input(shape=dict(dim=[3, 2]))
    n.loss = L.EuclideanLoss(n.fc, n.target, loss_weight=0.5)
    path = tmp_path / "net.prototxt"
    path.write_text(str(n.to_proto()))
    rng = np.random.default_rng(6)
    inputs = {"data": rng.normal(size=(3, 4, 5, 6)), "target": rng.normal(size=(3, 2))}
    for spec in (str(path), n):
        report = check_net(spec, inputs, ["data", "conv", ("fc", 1)])
        assert [blob.name for blob in report.blobs] == ["data", "conv[0]", "fc[1]"] and report.ok


def test_pure_function_in_float64():
    def forward(x, y):
        return np.sin(x) * y, x * y

    def backward(grads, x, y):
        gs, gp = grads
        return {"x": np.cos(x) * y * gs + y * gp, "y": np.sin(x) * gs + x * gp}

    rng = np.random.default_rng(7)
    inputs = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=(3, 4))}
    report = check_function(forward, backward, inputs)
    assert report.ok and max(b.worst_error for b in report.blobs) < 1e-8

    def wrong(grads, x, y):
        return {"x": -np.cos(x) * y * grads[0] + y * grads[1], "y": np.sin(x) * grads[0] + x * grads[1]}
    with pytest.raises(GradientCheckError, match=r"  x \(3, 4\): FAILED"):
        check_function(forward, wrong, inputs)


CASES = {
    "relu": LayerCase(lambda rng: {"x": rng.normal(size=(2, 8)).astype(np.float32)}, stock_layer("ReLU")),
    "square": LayerCase(lambda rng: {"x": rng.normal(size=(2, 8)).astype(np.float32)},
                        module="my_layers", layer="ScaledSquare", param_str={"a": 3.0}),
}


@parametrize_layers(CASES)
def test_parametrized_cases(layer_case):
    assert layer_case.check(seed=3).ok


def test_readme_example_runs():
    """The README's 'Gradient-checking your layers' code block, run as written."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Gradient-checking your layers", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()


def test_all_zero_loss_weights_are_refused_with_the_reason():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="Caffe skips the backward"):
        check_layer({"x": x}, stock_layer("ReLU"), loss_weight=0.0)


def test_kink_period_skips_bilinear_interpolations_integer_kinks():
    """BilinearWarp is not differentiable where a coordinate is an integer: kink=0, kink_period=1 skips the
    coordinates within kink_range of one; the rest are checked."""
    from pygeometry import netspec as G

    rng = np.random.default_rng(8)
    coords = rng.uniform(0.5, 5.5, size=(1, 2, 3, 4))
    coords.flat[:6] = np.round(coords.flat[:6]) + rng.uniform(-0.004, 0.004, size=6)  # on a kink
    bottoms = {"image": rng.uniform(size=(1, 2, 7, 7)).astype(np.float32), "coords": coords.astype(np.float32)}
    report = check_layer(bottoms, G.bilinear_warp, check=["coords"], samples=None, kink=0.0, kink_period=1.0,
                         kink_range=0.02, max_kink_fraction=0.3)
    assert report.blobs[0].kinks == 6 and report.blobs[0].checked == 18
