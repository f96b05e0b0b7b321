"""Bad input gets a clear error naming the layer and the problem, raised at setup/reshape where possible."""
import numpy as np
import pytest

import caffe
from pygeometry.testing import layer_net
from pygeometry import netspec as G
from pygeometry.config import ParamError

K = [40.0, 38.0, 11.3, 7.6]


def _prototxt(tmp_path, layer, bottoms, param_str, ntop=1):
    lines = [f'layer {{ name: "{b}" type: "Input" top: "{b}" input_param {{ shape {{ {" ".join(f"dim: {d}" for d in shape)} }} }} }}'
             for b, shape in bottoms.items()]
    tops = " ".join(f'top: "t{i}"' for i in range(ntop))
    bots = " ".join(f'bottom: "{b}"' for b in bottoms)
    lines.append(f'layer {{ name: "L" type: "Python" {bots} {tops} python_param {{ module: "pygeometry.layers" '
                 f"layer: \"{layer}\" param_str: '{param_str}' }} }}")
    path = tmp_path / "net.prototxt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


BAD_SETUPS = [
    ("SE3Generator", {"xi": (2, 5)}, "{}", r"SE3Generator: bottom 'xi' must have shape \(N, 6\), got \(2, 5\)"),
    ("SE3Generator", {"xi": (2, 6)}, '{"translation": "quaternion"}', r"SE3Generator: param_str key 'translation' must be one of"),
    ("SE3Generator", {"xi": (2, 6)}, '{"rotation": "x"}', r"SE3Generator: unknown param_str key 'rotation'"),
    ("SE3Generator", {"xi": (2, 6)}, "translation: direct", r"SE3Generator: param_str is not valid JSON"),
    ("SE3Generator", {"xi": (2, 6), "extra": (2, 6)}, "{}", r"SE3Generator: expected 1 bottom blobs, got 2"),
    ("Transform3DGrid", {"d": (2, 1, 4, 5), "T": (2, 4, 4)}, "{}", r"Transform3DGrid: needs intrinsics"),
    ("Transform3DGrid", {"d": (2, 1, 4, 5), "T": (2, 4, 4)}, '{"K": [-40, 38, 11, 7]}', r"focal lengths fx > 0"),
    ("Transform3DGrid", {"d": (2, 1, 4, 5), "T": (2, 4, 4)}, '{"K": [40, 38, 11]}', r"'K' must be a list of 4 numbers"),
    ("Transform3DGrid", {"d": (2, 1, 4, 5), "T": (2, 4, 4)}, '{"K": [40, "38", 11, 7]}', r"'K' must be a list of 4 numbers"),
    ("Transform3DGrid", {"d": (2, 2, 4, 5), "T": (2, 4, 4)}, f'{{"K": {K}}}', r"bottom 'depth' must have shape \(N, 1, H, W\)"),
    ("Transform3DGrid", {"d": (2, 1, 4, 5), "T": (3, 4, 4)}, f'{{"K": {K}}}', r"bottom 'src_T_tgt' must have shape \(2, 4, 4\)"),
    ("Transform3DGrid", {"d": (2, 1, 4, 5), "T": (2, 4, 4), "K": (2, 3)}, "{}", r"bottom 'K' must have shape \(2, 4\)"),
    ("PinholeProjection", {"p": (2, 2, 4, 5)}, f'{{"K": {K}}}', r"bottom 'points' must have shape \(N, 3, H, W\)"),
    ("PinholeProjection", {"p": (2, 3, 4, 5)}, f'{{"K": {K}, "eps": -1}}', r"'eps' must be a number > 0"),
    ("PinholeProjection", {"p": (2, 3, 4, 5)}, f'{{"K": {K}, "eps": "small"}}', r"'eps' must be a finite number"),
    ("PinholeProjection", {"p": (2, 3, 4, 5)}, f'{{"K": {K}, "output": "pixels"}}', r"'output' must be one of"),
    ("BilinearWarp", {"im": (2, 3, 4, 5), "c": (2, 3, 4, 5)}, "{}", r"bottom 'coords' must have shape \(2, 2, \*, \*\)"),
    ("BilinearWarp", {"im": (2, 3, 4, 5), "c": (1, 2, 4, 5)}, "{}", r"bottom 'coords' must have shape"),
    ("BilinearWarp", {"im": (2, 3, 4, 5), "c": (2, 2, 4, 5)}, '{"padding": "reflect"}', r"'padding' must be one of"),
    ("PhotometricLoss", {"w": (2, 3, 4, 5), "t": (2, 3, 4, 6)}, "{}", r"bottom 'target' must have shape \(2, 3, 4, 5\)"),
    ("PhotometricLoss", {"w": (2, 3, 4, 5), "t": (2, 3, 4, 5), "m": (2, 3, 4, 5)}, "{}", r"bottom 'mask' must have shape \(2, 1, 4, 5\)"),
    ("PhotometricLoss", {"w": (2, 3, 4, 5), "t": (2, 3, 4, 5)}, '{"alpha": 1.5}', r"'alpha' must be a number in \[0, 1\]"),
    ("PhotometricLoss", {"w": (2, 3, 4, 5), "t": (2, 3, 4, 5)}, '{"alpha": true}', r"'alpha' must be a finite number"),
    ("PhotometricLoss", {"w": (2, 3, 4, 5)}, "{}", r"expected 2 to 3 bottom blobs, got 1"),
    ("MinReprojectionLoss", {"w1": (2, 3, 4, 5), "w2": (2, 3, 4, 5), "t": (2, 3, 4, 5)}, "{}",
     r"MinReprojectionLoss: with sources=2 and automask=true it takes 5 bottoms \(warped_1..2, target, "
     r"unwarped_1..2\), got 3"),
    ("MinReprojectionLoss", {"w1": (2, 3, 4, 5), "w2": (2, 3, 4, 5), "t": (2, 3, 4, 6)}, '{"automask": false}',
     r"bottom 'target' must have shape \(2, 3, 4, 5\)"),
    ("MinReprojectionLoss", {"w1": (2, 3, 4, 5), "t": (2, 3, 4, 5)}, '{"sources": 1, "automask": "yes"}',
     r"'automask' must be true or false"),
    ("MinReprojectionLoss", {"w1": (2, 3, 4, 5), "t": (2, 3, 4, 5)}, '{"sources": 0}', r"'sources' must be an integer in"),
    ("MinReprojectionLoss", {"w1": (2, 3, 1, 5), "t": (2, 3, 1, 5)}, '{"sources": 1, "automask": false}',
     r"SSIM \(alpha > 0\) needs H >= 2"),
    ("EdgeAwareSmoothness", {"d": (2, 2, 4, 5), "im": (2, 3, 4, 5)}, "{}", r"bottom 'disp' must have shape \(N, 1, H, W\)"),
    ("EdgeAwareSmoothness", {"d": (2, 1, 4, 5), "im": (2, 3, 4, 6)}, "{}", r"bottom 'image' must have shape \(2, \*, 4, 5\)"),
    ("EdgeAwareSmoothness", {"d": (2, 1, 4, 5), "im": (2, 3, 4, 5)}, '{"weight": 1}', r"unknown param_str key 'weight'"),
]


@pytest.mark.parametrize("layer,bottoms,param_str,message", BAD_SETUPS)
def test_bad_shapes_and_param_str_fail_at_setup(tmp_path, layer, bottoms, param_str, message):
    path = _prototxt(tmp_path, layer, bottoms, param_str)
    with pytest.raises(ParamError, match=message):
        caffe.Net(path, caffe.TEST)


def test_netspec_helpers_reject_bad_parameters_when_writing():
    n = caffe.NetSpec()
    n.xi = caffe.layers.Input(shape=dict(dim=[1, 6]))
    with pytest.raises(ParamError, match="translation"):
        G.se3_generator(n.xi, translation="euler")
    with pytest.raises(ParamError, match="focal lengths"):
        G.transform_3d_grid(n.xi, n.xi, K=[0, 1, 2, 3])


NAN_CASES = [
    ("xi", lambda r: {"xi": np.full((2, 6), np.nan, np.float32)}, G.se3_generator, ["T"]),
    ("depth", lambda r: {"depth": np.array([np.inf, 1, 2, 3], np.float32).reshape(1, 1, 2, 2),
                         "T": np.eye(4, dtype=np.float32)[None]},
     lambda d, T, **kw: G.transform_3d_grid(d, T, K=K, **kw), ["points"]),
    ("points", lambda r: {"points": np.array([np.nan] * 12, np.float32).reshape(1, 3, 2, 2)},
     lambda p, **kw: G.pinhole_projection(p, K=K, **kw), ["coords"]),
    ("image", lambda r: {"image": np.array([1] * 8 + [np.nan], np.float32).reshape(1, 1, 3, 3),  # never sampled
                         "coords": np.zeros((1, 2, 2, 2), np.float32)},
     G.bilinear_warp, ["warped"]),
    ("coords", lambda r: {"image": np.ones((1, 1, 3, 3), np.float32),
                          "coords": np.array([0, np.nan, 1, 1, 0, 0, 1, 1], np.float32).reshape(1, 2, 2, 2)},
     G.bilinear_warp, ["warped"]),
    ("unwarped_2", lambda r: {"w1": np.ones((1, 3, 2, 2), np.float32), "w2": np.ones((1, 3, 2, 2), np.float32),
                              "t": np.ones((1, 3, 2, 2), np.float32), "u1": np.ones((1, 3, 2, 2), np.float32),
                              "u2": np.full((1, 3, 2, 2), np.inf, np.float32)},
     lambda *b, **kw: G.min_reprojection_loss(b[:2], b[2], b[3:], **kw), ["loss"]),
    ("disp", lambda r: {"disp": np.array([1, np.nan, 1, 1], np.float32).reshape(1, 1, 2, 2),
                        "image": np.ones((1, 3, 2, 2), np.float32)}, G.edge_aware_smoothness, ["loss"]),
    ("target", lambda r: {"warped": np.ones((1, 1, 2, 2), np.float32),
                          "target": np.array([0, np.nan, 1, 1], np.float32).reshape(1, 1, 2, 2)},
     G.photometric_loss, ["loss"]),
]


@pytest.mark.parametrize("bad,make_bottoms,layer,tops", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_nan_or_inf_in_a_bottom_is_an_error_naming_it(bad, make_bottoms, layer, tops):
    net = layer_net(make_bottoms(None), layer, tops)
    with pytest.raises(ParamError, match=rf"bottom '{bad}' contains \d+ NaN/inf"):
        net.forward()


TOP_DIFF_CASES = [
    ("points", {"depth": np.ones((1, 1, 2, 3), np.float32), "T": np.eye(4, dtype=np.float32)[None]},
     lambda d, T, **kw: G.transform_3d_grid(d, T, K=K, **kw)),
    ("coords", {"points": np.ones((1, 3, 2, 3), np.float32)}, lambda p, **kw: G.pinhole_projection(p, K=K, **kw)),
    ("warped", {"image": np.ones((1, 2, 3, 3), np.float32), "coords": np.ones((1, 2, 2, 3), np.float32)},
     G.bilinear_warp),
]


@pytest.mark.parametrize("top,bottoms,layer", TOP_DIFF_CASES, ids=[c[0] for c in TOP_DIFF_CASES])
def test_nan_or_inf_in_a_top_diff_is_an_error_naming_it(top, bottoms, layer):
    """The kernels count non-finite top diffs while they read them; the layer raises with the count."""
    net = layer_net(bottoms, layer, [top])
    net.forward()
    diff = np.ones(net.blobs[top].data.shape, np.float32)
    diff.flat[1], diff.flat[-1] = np.nan, -np.inf
    with pytest.raises(ParamError, match=rf"top diff '{top}' contains 2 NaN/inf"):
        net.backward(**{top: diff})


def test_bad_K_bottom_values_are_an_error():
    bottoms = {"p": np.ones((2, 3, 2, 2), np.float32), "K": np.array([K, [0, 1, 1, 1]], np.float32)}
    net = layer_net(bottoms, lambda p, k, **kw: G.pinhole_projection(p, K_blob=k, **kw), ["coords"])
    with pytest.raises(ParamError, match="PinholeProjection: bottom 'K' needs focal lengths"):
        net.forward()


def test_negative_mask_is_an_error():
    bottoms = {"w": np.ones((1, 1, 2, 2), np.float32), "t": np.zeros((1, 1, 2, 2), np.float32),
               "m": -np.ones((1, 1, 2, 2), np.float32)}
    net = layer_net(bottoms, G.photometric_loss, ["loss"])
    with pytest.raises(ParamError, match="mask' must be >= 0"):
        net.forward()


def test_negative_disparity_is_an_error():
    bottoms = {"d": np.array([1, -0.5, 1, 1], np.float32).reshape(1, 1, 2, 2), "im": np.ones((1, 3, 2, 2), np.float32)}
    net = layer_net(bottoms, G.edge_aware_smoothness, ["loss"])
    with pytest.raises(ParamError, match=r"EdgeAwareSmoothness: bottom 'disp' must be >= 0 \(a disparity\), min -0.5"):
        net.forward()


def test_invalid_everything_gives_defined_finite_outputs():
    """All depth invalid -> points 0 -> projection invalid -> warp invalid -> masked loss 0, zero gradients."""
    n = caffe.NetSpec()
    import tempfile, os  # noqa: E401
    dims = {"depth": [2, 1, 4, 5], "xi": [2, 6], "src": [2, 3, 4, 5], "tgt": [2, 3, 4, 5]}
    for k, d in dims.items():
        setattr(n, k, caffe.layers.Input(shape=dict(dim=d)))
    n.T = G.se3_generator(n.xi)
    n.points = G.transform_3d_grid(n.depth, n.T, K=K)
    n.coords, n.valid = G.pinhole_projection(n.points, K=K, with_valid=True)
    n.warped, n.warp_valid = G.bilinear_warp(n.src, n.coords, with_valid=True)
    n.loss = G.photometric_loss(n.warped, n.tgt, n.warp_valid, alpha=0.85)
    fd, path = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write("force_backward: true\n" + str(n.to_proto()))
    net = caffe.Net(path, caffe.TEST)
    os.remove(path)
    net.blobs["depth"].data[...] = 0
    net.blobs["xi"].data[...] = 0.1
    net.blobs["src"].data[...] = 0.5
    net.blobs["tgt"].data[...] = 0.2
    net.forward()
    net.backward()
    assert float(net.blobs["loss"].data) == 0.0
    assert net.blobs["valid"].data.max() == 0 and net.blobs["warp_valid"].data.max() == 0
    for name in net.blobs:
        assert np.all(np.isfinite(net.blobs[name].data)) and np.all(np.isfinite(net.blobs[name].diff)), name
    assert np.all(net.blobs["xi"].diff == 0) and np.all(net.blobs["depth"].diff == 0)
