"""Every pygeometry layer inside a real caffe.Net built from a (NetSpec-generated) prototxt: forward equals
the kernel, backward equals the kernel's backward, propagate_down is respected, and float32 finite
differences through the net agree with the analytic backward."""
import functools

import numpy as np
import pytest

import caffe
from pygeometry.testing import bottom_blob, check_layer, check_net_gradients, layer_net
from pygeometry import netspec as G
from pygeometry.kernels.min_reprojection import min_reprojection_reference
from pygeometry.kernels.smoothness import smoothness_backward, smoothness_forward
from pygeometry.kernels import (bilinear_backward, bilinear_forward, photometric_backward, photometric_forward,
                                projection_backward, projection_forward, se3_backward, se3_forward,
                                transform_grid_backward, transform_grid_forward)

K = [40.0, 38.0, 11.3, 7.6]
f32 = np.float32


def _xi(rng, n=3):
    return np.concatenate([rng.normal(size=(n, 3)) * 0.2, rng.normal(size=(n, 3)) * 0.3], axis=1).astype(f32)


def _depth(rng, n=2, h=6, w=8):
    d = rng.uniform(1.5, 3.0, size=(n, 1, h, w)).astype(f32)
    d[0, 0, 2, 3] = 0
    return d


def _points(rng, n=2, h=6, w=8):
    p = rng.normal(size=(n, 3, h, w)).astype(f32) * 0.5
    p[:, 2] = rng.uniform(1.5, 3.0, size=(n, h, w))
    p[1, 2, 0, 0] = -1.0
    return p


def _coords_off_kinks(rng, n=2, h=5, w=6, hs=7, ws=9):
    base = np.stack([rng.integers(-1, ws, size=(n, h, w)), rng.integers(-1, hs, size=(n, h, w))], axis=1)
    return (base + rng.uniform(0.2, 0.8, size=base.shape)).astype(f32)


def case_se3(rng, translation):
    xi = _xi(rng)
    return dict(
        bottoms={"xi": xi}, tops=["T"], grads=["xi"],
        layer=functools.partial(G.se3_generator, translation=translation),
        forward=lambda b: [se3_forward(b["xi"], translation)],
        backward=lambda b, g: {"xi": se3_backward(b["xi"], g["T"], translation)})


def case_grid(rng, K_blob):
    b = {"depth": _depth(rng), "T": se3_forward(_xi(rng, 2))}
    Kn = np.array([K, [45.0, 41.0, 10.0, 8.0]], f32)
    if K_blob:
        b["K"] = Kn
    Kref = Kn if K_blob else np.array(K, f32)
    layer = (lambda d, T, k, **kw: G.transform_3d_grid(d, T, K_blob=k, **kw)) if K_blob else \
        functools.partial(G.transform_3d_grid, K=K)

    def backward(b, g):
        gd, gT = transform_grid_backward(b["depth"], b["T"], Kref, g["points"])
        return {"depth": gd, "T": gT}
    return dict(bottoms=b, tops=["points"], grads=["depth", "T"], layer=layer,
                forward=lambda b: [transform_grid_forward(b["depth"], b["T"], Kref)], backward=backward)


def case_projection(rng, output, with_valid, K_blob):
    b = {"points": _points(rng)}
    if K_blob:
        b["K"] = np.array([K, [45.0, 41.0, 10.0, 8.0]], f32)
    Kref = b["K"] if K_blob else np.array(K, f32)
    kw = dict(output=output, with_valid=with_valid)
    layer = (lambda p, k, **extra: G.pinhole_projection(p, K_blob=k, **kw, **extra)) if K_blob else \
        functools.partial(G.pinhole_projection, K=K, **kw)
    tops = ["coords", "valid"] if with_valid else ["coords"]
    return dict(bottoms=b, tops=tops, grads=["points"], layer=layer,
                forward=lambda b: list(projection_forward(b["points"], Kref, output=output))[:len(tops)],
                backward=lambda b, g: {"points": projection_backward(b["points"], Kref, g["coords"])})


def case_warp(rng, padding, input_kind, with_valid):
    coords = _coords_off_kinks(rng)
    if input_kind == "flow":
        ys, xs = np.mgrid[0:5, 0:6]
        coords = (coords - np.stack([xs, ys])[None]).astype(f32)
    b = {"image": rng.uniform(size=(2, 3, 7, 9)).astype(f32), "coords": coords}
    tops = ["warped", "valid"] if with_valid else ["warped"]

    def backward(b, g):
        gi, gc = bilinear_backward(b["image"], b["coords"], g["warped"], padding, input_kind)
        return {"image": gi, "coords": gc}
    return dict(bottoms=b, tops=tops, grads=["image", "coords"],
                layer=functools.partial(G.bilinear_warp, padding=padding, input=input_kind, with_valid=with_valid),
                forward=lambda b: list(bilinear_forward(b["image"], b["coords"], padding, input_kind))[:len(tops)],
                backward=backward)


def case_loss(rng, alpha, with_mask):
    warped = rng.uniform(0.1, 0.9, size=(2, 3, 6, 7)).astype(f32)
    sign = np.where(rng.uniform(size=warped.shape) > 0.5, 1, -1)
    target = (warped + sign * rng.uniform(0.05, 0.1, size=warped.shape)).astype(f32)  # away from the L1 kink
    b = {"warped": warped, "target": target}
    if with_mask:
        b["mask"] = (rng.uniform(size=(2, 1, 6, 7)) > 0.3).astype(f32)
    mask = lambda b: b.get("mask")  # noqa: E731

    def backward(b, g):
        gw, gt = photometric_backward(b["warped"], b["target"], mask(b), alpha, need_target=True)
        return {"warped": gw, "target": gt}
    return dict(bottoms=b, tops=["loss"], grads=["warped", "target"],
                layer=functools.partial(G.photometric_loss, alpha=alpha), loss=True,
                forward=lambda b: [photometric_forward(b["warped"], b["target"], mask(b), alpha)],
                backward=backward)


def case_min_reprojection(rng, automask, with_reprojected):
    """Two sources, each the better one on its own half of the image, and (auto-masking) unwarped sources that
    beat both on the top two rows: every pixel's choice is clear by a margin far above the check's step, and
    every |warped - target| is away from the L1 kink."""
    target = rng.uniform(0.2, 0.8, size=(2, 3, 6, 7))
    sign = lambda: np.where(rng.uniform(size=target.shape) > 0.5, 1, -1)  # noqa: E731
    left = np.arange(7) < 4
    near, far = rng.uniform(0.05, 0.08, size=target.shape), rng.uniform(0.3, 0.35, size=target.shape)
    b = {"warped_1": target + sign() * np.where(left, near, far), "warped_2": target + sign() * np.where(left, far, near),
         "target": target}
    if automask:
        exact = np.arange(6)[:, None] < 2
        for s in (1, 2):
            b[f"unwarped_{s}"] = target + sign() * np.where(exact, 0.01, 0.4) * (1 + 0.1 * s)
    b = {k: v.astype(f32) for k, v in b.items()}
    # the reference in float64 on the same float32 values (the fast kernel computes SSIM in float64)
    warped = lambda b: [b["warped_1"].astype(float), b["warped_2"].astype(float)]  # noqa: E731
    unwarped = (lambda b: [b["unwarped_1"].astype(float), b["unwarped_2"].astype(float)]) if automask \
        else (lambda b: None)

    def forward(b):
        loss, _, reprojected = min_reprojection_reference(b["target"].astype(float), warped(b), unwarped(b), 0.85)
        return [loss, reprojected][:2 if with_reprojected else 1]

    def backward(b, g):
        _, grads, _ = min_reprojection_reference(b["target"].astype(float), warped(b), unwarped(b), 0.85)
        return {"warped_1": grads[0], "warped_2": grads[1]}

    def layer(*bottoms, **kwargs):
        return G.min_reprojection_loss(bottoms[:2], bottoms[2], bottoms[3:] or None, alpha=0.85,
                                       with_reprojected=with_reprojected, **kwargs)
    return dict(bottoms=b, tops=["loss", "reprojected"][:2 if with_reprojected else 1],
                grads=["warped_1", "warped_2"], layer=layer, loss=True, forward=forward, backward=backward)


def case_smoothness(rng):
    """A disparity whose neighbours differ by at least 0.05 (away from the |.| kink at the check's step)."""
    i, j = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
    disp = 0.2 + 0.07 * (i + 2 * j) + rng.uniform(0, 0.02, size=(2, 1, 5, 6))
    image = rng.uniform(size=(2, 3, 5, 6))
    b = {"disp": disp.astype(f32), "image": image.astype(f32)}
    return dict(bottoms=b, tops=["loss"], grads=["disp"], layer=G.edge_aware_smoothness, loss=True,
                forward=lambda b: [smoothness_forward(b["disp"], b["image"])],
                backward=lambda b, g: {"disp": smoothness_backward(b["disp"], b["image"])})


CASES = {
    "minrepro-automask": lambda r: case_min_reprojection(r, True, False),
    "minrepro-plain-map": lambda r: case_min_reprojection(r, False, True),
    "smoothness": case_smoothness,
    "se3-direct": lambda r: case_se3(r, "direct"),
    "se3-exp": lambda r: case_se3(r, "se3_exp"),
    "grid-K-param": lambda r: case_grid(r, False),
    "grid-K-blob": lambda r: case_grid(r, True),
    "proj-coords": lambda r: case_projection(r, "coords", False, False),
    "proj-flow-valid-Kblob": lambda r: case_projection(r, "flow", True, True),
    "warp-zeros-coords-valid": lambda r: case_warp(r, "zeros", "coords", True),
    "warp-border-flow": lambda r: case_warp(r, "border", "flow", False),
    "loss-l1": lambda r: case_loss(r, 0.0, False),
    "loss-ssim-mask": lambda r: case_loss(r, 0.85, True),
}


def _top_diffs(case, net, rng):
    if case.get("loss"):
        return {}
    # The first top carries the gradient; a valid top is not differentiable, its diff is zero.
    return {t: (rng.normal(size=net.blobs[t].data.shape) if i == 0 else np.zeros(net.blobs[t].data.shape)).astype(f32)
            for i, t in enumerate(case["tops"])}


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_backward_match_kernels(name, rng):
    case = CASES[name](rng)
    net = layer_net(case["bottoms"], case["layer"], case["tops"])
    net.forward()
    for top, expected in zip(case["tops"], case["forward"](case["bottoms"])):
        np.testing.assert_allclose(net.blobs[top].data, expected, rtol=1e-6, atol=1e-6)
        assert np.all(np.isfinite(net.blobs[top].data))
    diffs = _top_diffs(case, net, rng)
    net.backward(**diffs)
    expected = case["backward"](case["bottoms"], diffs)
    for bottom in case["grads"]:
        np.testing.assert_allclose(bottom_blob(net, bottom).diff, expected[bottom], rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(bottom_blob(net, bottom).diff))


@pytest.mark.parametrize("name", sorted(CASES))
def test_propagate_down_false_leaves_bottom_diffs_alone(name, rng):
    case = CASES[name](rng)
    for keep in case["grads"]:
        flags = [b == keep for b in case["bottoms"]]
        net = layer_net(case["bottoms"], case["layer"], case["tops"], propagate_down=flags)
        net.forward()
        for b in case["bottoms"]:
            bottom_blob(net, b).diff[...] = 7.0
        net.backward(**_top_diffs(case, net, rng))
        for b, flag in zip(case["bottoms"], flags):
            untouched = np.all(bottom_blob(net, b).diff == 7.0)
            assert untouched != flag, f"{b}: propagate_down={flag} but diff {'kept' if untouched else 'changed'}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_finite_differences_through_the_net(name, rng):
    case = CASES[name](rng)
    net = layer_net(case["bottoms"], case["layer"], case["tops"])
    net.forward()
    diffs = None if case.get("loss") else _top_diffs(case, net, rng)
    # SE(3) and the loss are smooth at the scale of the step; points and coords need a smaller one.
    step = 1e-3 if name.startswith(("proj", "grid")) else 1e-2
    check_net_gradients(net, case["grads"], top_diffs=diffs, step=step, what=name)


@pytest.mark.parametrize("padding,input_kind", [("zeros", "coords"), ("border", "flow")])
def test_warp_training_path_uses_the_forward_jacobian(rng, padding, input_kind):
    """TRAIN phase with the image as data: the forward keeps d warped / d coords and the backward sums it against
    dL/dwarped (no second sampling). Gradients equal the kernel's over several iterations with new data, also
    after switching to an image gradient (which samples again) and back."""
    case = case_warp(rng, padding, input_kind, False)
    expect_jacobian = []
    for propagate_down in ([False, True], [True, True]):
        net = layer_net(case["bottoms"], case["layer"], case["tops"], propagate_down=propagate_down,
                        phase=caffe.TRAIN)
        layer = net.layers[list(net._layer_names).index("warped")]
        for it in range(3):
            image = rng.uniform(size=case["bottoms"]["image"].shape).astype(f32)
            coords = (case["bottoms"]["coords"] + rng.uniform(-0.3, 0.3, size=(2, 2, 5, 6))).astype(f32)
            bottom_blob(net, "image").data[...] = image
            bottom_blob(net, "coords").data[...] = coords
            net.forward()
            expect_jacobian.append(layer._jacobian_ready)
            g = rng.normal(size=net.blobs["warped"].data.shape).astype(f32)
            net.backward(**{"warped": g})
            gi, gc = bilinear_backward(image, coords, g, padding, input_kind)
            np.testing.assert_allclose(bottom_blob(net, "coords").diff, gc, rtol=1e-5, atol=1e-5)
            if propagate_down[0]:
                np.testing.assert_allclose(bottom_blob(net, "image").diff, gi, rtol=1e-5, atol=1e-6)
    # Kept while only dL/dcoords is asked for; the first forward of the second net still keeps it (a guess), the
    # backward then samples again and the layer stops keeping it.
    assert expect_jacobian == [True, True, True, True, False, False]


def test_warp_training_path_finite_differences(rng):
    case = case_warp(rng, "zeros", "coords", False)
    net = layer_net(case["bottoms"], case["layer"], case["tops"], propagate_down=[False, True], phase=caffe.TRAIN)
    net.forward()
    check_net_gradients(net, ["coords"], top_diffs=_top_diffs(case, net, rng), what="warp training path")


LOSS_CASES = ["loss-l1", "loss-ssim-mask"]  # every loss-like layer: PhotometricLoss with and without SSIM
DEPTH_LOSS_CASES = ["minrepro-automask", "minrepro-plain-map", "smoothness"]


@pytest.mark.parametrize("name", LOSS_CASES)
def test_loss_training_path(name, rng):
    """As in the pose nets, only the warped image gets a gradient (the target is data): the layer then runs the fast
    kernels, its backward using the SSIM derivatives its forward kept. The gradient equals the reference's over
    iterations with new data, and float32 finite differences through the net agree."""
    case = CASES[name](rng)
    flags = [b == "warped" for b in case["bottoms"]]
    net = layer_net(case["bottoms"], case["layer"], case["tops"], propagate_down=flags, phase=caffe.TRAIN)
    for _ in range(3):
        bottoms = dict(case["bottoms"])
        bottoms["warped"] = np.clip(bottoms["warped"] + rng.normal(scale=0.05, size=bottoms["warped"].shape), 0,
                                    1).astype(f32)
        for key in ("warped", "target"):
            bottom_blob(net, key).data[...] = bottoms[key]
        bottom_blob(net, "target").diff[...] = 7.0
        net.forward()
        net.backward()
        # the reference in float64 on the same float32 values (the fast kernel sums in float64)
        expected = case["backward"]({k: v.astype(np.float64) for k, v in bottoms.items()}, {})["warped"]
        np.testing.assert_allclose(bottom_blob(net, "warped").diff, expected, rtol=1e-5,
                                   atol=1e-6 * np.abs(expected).max())
        assert np.all(bottom_blob(net, "target").diff == 7.0), "propagate_down false: the target's diff is kept"
    check_net_gradients(net, ["warped"], what=f"{name} training path")


@pytest.mark.parametrize("loss_weight", [0.3, 2.0])
@pytest.mark.parametrize("name", LOSS_CASES + DEPTH_LOSS_CASES)
def test_loss_weight_scales_the_bottom_diffs(name, loss_weight, rng):
    """A loss top with loss_weight w: Caffe sets its diff to w, and the bottom diffs are w times the kernel's
    gradient, for warped and target alike; central differences of w * loss agree (checked against the gradient's
    own size: a dropped w, a zero or a flipped gradient fails however small the loss gradient is)."""
    case = CASES[name](rng)
    net = layer_net(case["bottoms"], case["layer"], case["tops"],
                    loss_weight=[loss_weight] + [0.0] * (len(case["tops"]) - 1))
    assert net.blob_loss_weights["loss"] == pytest.approx(loss_weight)
    net.forward()
    net.backward()
    expected = case["backward"](case["bottoms"], {})
    for bottom in case["grads"]:
        # float32 blobs: the fast kernels keep their SSIM derivatives in float32 and sum terms that cancel, so each
        # element is compared against the largest's float32 precision (times the cancellation, up to ~100)
        np.testing.assert_allclose(bottom_blob(net, bottom).diff, loss_weight * expected[bottom], rtol=1e-5,
                                   atol=2e-5 * loss_weight * np.abs(expected[bottom]).max())
    check_layer(case["bottoms"], case["layer"], tops=case["tops"], loss_weight=loss_weight, check=case["grads"],
                samples=None)
