"""The PyTorch replica of the train nets (pygeometry.torch_reference) computes what Caffe computes: every loss, every
parameter gradient and the solver's update (clip, weight decay, Adam), for the three pose networks, also with
unknown depth; and the comparison that says so (check_against_caffe, the one that scripts/bench_train.py runs)
fails on a wrong sign of a loss term, a dropped factor or shift, or a wrong update rule (mutations of the replica).

torch is a reference-only dependency (`make test` installs it); without it these tests are skipped."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import caffe  # noqa: E402
from pygeometry import torch_reference as TR  # noqa: E402
from pygeometry.nets import NETWORKS, SUPERVISED  # noqa: E402

pytestmark = pytest.mark.blas  # float32 Caffe through BLAS: .ci/run repeats these under every OpenBLAS kernel

BATCH = 4


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: on a busy machine two OpenMP threads wait for each other (measured: an Adam step 10x
    slower); the results do not depend on it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _setup(name, split, tmp_path, seed=1):
    """A fresh solver for pose_net(name, "train") on the 48 x 80 split, its replica and the replica's solver."""
    caffe.set_random_seed(seed)
    solver, text = TR.caffe_train_solver(name, split, tmp_path, batch_size=BATCH)
    replica = TR.PoseNetReplica.from_caffe(name, solver.net)
    return solver, replica, TR.CaffeAdam.from_solver_text(text, replica.param_specs())


@pytest.mark.parametrize("name", NETWORKS)
def test_replica_computes_the_losses_gradients_and_update_of_caffe(tmp_path, tiny_split, name):
    solver, replica, optimizer = _setup(name, tiny_split, tmp_path)
    report = TR.check_against_caffe(solver, replica, optimizer)
    assert report.ok, report.summary()
    expected = {"loss_t", "loss_w"} if name in SUPERVISED else {"loss", "loss_s2", "loss_s4", "loss_s8"}
    assert set(report.losses) == expected
    assert len(report.gradient_errors) == 14  # conv1..conv5, fc_pose1, fc_pose: weights and biases (shared once)
    assert report.update_checked == hasattr(solver, "apply_update")
    if report.update_checked:
        assert len(report.update_errors) == 2 * 14
    # afterwards both hold the net's weights again
    for s in replica.param_specs():
        assert np.array_equal(s.param.detach().numpy(), solver.net.params[s.caffe_layer][s.caffe_index].data)


def test_replica_follows_caffe_where_depth_is_unknown(tmp_path, tiny_split):
    """Depth <= 0: no point, coordinates at the sentinel (also inside the coarse block averages), mask 0; a sample
    without any depth weighs nothing."""
    def unknown_depth(batch):
        batch["tgt_depth"][:, :, :5] = 0  # the top rows (sky)
        batch["tgt_depth"][0, :, 20:30, 10:37] = -1
        batch["tgt_depth"][1] = 0

    solver, replica, optimizer = _setup("early_fusion_photometric", tiny_split, tmp_path)
    report = TR.check_against_caffe(solver, replica, optimizer, edit_batch=unknown_depth)
    assert report.ok, report.summary()
    assert np.all(solver.net.blobs["tgt_depth"].data[1] == 0)
    assert (solver.net.blobs["coords_src"].data == TR.INVALID_COORD).mean() > 0.3


def _mutated_check(monkeypatch, tmp_path, split, name, mutate):
    solver, replica, _ = _setup(name, split, tmp_path)
    mutate(monkeypatch, replica)
    return TR.check_against_caffe(solver, replica)


def _flip_loss_weight(key):
    def mutate(monkeypatch, replica):
        monkeypatch.setitem(replica.loss_weights, key, -replica.loss_weights[key])
    return mutate


def _no_coarse_shift(monkeypatch, replica):  # x_s = x / s instead of (x + 0.5) / s - 0.5
    monkeypatch.setattr(TR, "coarse_coords", lambda coords_avg, s: coords_avg * (1.0 / s))


def _euclidean_without_half(monkeypatch, replica):  # sum / N instead of Caffe's sum / (2 N)
    monkeypatch.setattr(TR, "euclidean_loss", lambda a, b: ((a - b) ** 2).sum() / a.shape[0])


@pytest.mark.parametrize("name, mutate, kinds", [
    ("early_fusion_photometric", _flip_loss_weight("loss"), {"gradient", "loss_weight"}),
    ("late_fusion_photometric", _flip_loss_weight("loss_s4"), {"gradient", "loss_weight"}),
    ("supervised_pose", _flip_loss_weight("loss_w"), {"gradient", "loss_weight"}),
    ("early_fusion_photometric", _no_coarse_shift, {"loss", "gradient"}),
    ("supervised_pose", _euclidean_without_half, {"loss", "gradient"}),
], ids=["sign of the full-resolution loss", "sign of the 4x4 loss", "sign of the rotation loss",
        "coarse coordinates without the 0.5/s shift", "EuclideanLoss without the 1/2"])
def test_the_comparison_catches_a_wrong_sign_or_a_dropped_factor(monkeypatch, tmp_path, tiny_split, name, mutate,
                                                                  kinds):
    report = _mutated_check(monkeypatch, tmp_path, tiny_split, name, mutate)
    assert not report.ok
    assert report.kinds() == kinds, report.summary()
    # every parameter's gradient is off by far more than the tolerance (float32 rounding stays below 6e-3)
    assert min(report.gradient_errors.values()) > 2 * TR.GRAD_RTOL, report.gradient_errors


@pytest.mark.parametrize("mutate", [
    lambda opt: setattr(opt, "lr_mults", [1.0] * len(opt.lr_mults)),  # biases at lr_mult 1 instead of 2
    lambda opt: setattr(opt, "decays", [0.0] * len(opt.decays)),       # no weight decay
    lambda opt: setattr(opt, "clip", np.float32(-1)),                   # no gradient clipping
    lambda opt: setattr(opt, "eps", 1e-8 / (1 - 0.999) ** 0.5),        # torch.optim.Adam's eps placement at t = 1
], ids=["bias lr_mult", "weight decay", "clipping", "eps"])
def test_the_comparison_catches_a_wrong_update(tmp_path, tiny_split, mutate):
    solver, replica, optimizer = _setup("early_fusion_photometric", tiny_split, tmp_path)
    if not hasattr(solver, "apply_update"):
        pytest.skip("this pycaffe has no Solver.apply_update")
    mutate(optimizer)
    report = TR.check_against_caffe(solver, replica, optimizer)
    assert report.kinds() == {"update"}, report.summary()


def test_relative_errors():
    a = np.array([1.0, -2.0, 0.5])
    assert TR.relative_error(a, a) == 0 and TR.norm_relative_error(a, a) == 0
    assert TR.relative_error(a + [0, 0.2, 0], a) == pytest.approx(0.1)
    assert TR.norm_relative_error(-a, a) == pytest.approx(2.0)
    assert TR.relative_error(np.zeros(3), np.zeros(3)) == 0
    assert TR.relative_error(a, np.zeros(3)) == np.inf and TR.norm_relative_error(a, np.zeros(3)) == np.inf
    assert TR.relative_error(a[:2], a) == np.inf
    assert TR.relative_error(a + 1e-9, a, slack=1e-8) == 0


def test_block_average_pyramid_reuses_levels_and_equals_one_pooling():
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64)
    levels = TR.block_average_pyramid(x, (2,))
    level2 = levels[2]
    pyramid = TR.block_average_pyramid(x, (2, 4, 8), levels)
    assert pyramid is levels and pyramid[2] is level2  # computed once, then shared
    for s in (2, 4, 8):
        torch.testing.assert_close(pyramid[s], torch.nn.functional.avg_pool2d(x, s))
