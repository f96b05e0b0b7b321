"""Caffe Python layers for differentiable multi-view geometry (thin wrappers around pygeometry.kernels).

Use in a prototxt (or with pygeometry.netspec, which writes this for you):

    layer { name: "warp" type: "Python" bottom: "src" bottom: "coords" top: "warped" top: "valid"
            python_param { module: "pygeometry.layers" layer: "BilinearWarp"
                           param_str: '{"padding": "zeros"}' } }

Blob contract (docs/conventions.md):
    SE3Generator       xi (N,6)                                 -> T (N,4,4)
    Transform3DGrid    depth (N,1,H,W), T (N,4,4) [, K (N,4)]   -> points (N,3,H,W)
    PinholeProjection  points (N,3,H,W) [, K (N,4)]             -> coords|flow (N,2,H,W) [, valid (N,1,H,W)]
    BilinearWarp       image (N,C,Hs,Ws), coords|flow (N,2,H,W) -> warped (N,C,H,W) [, valid (N,1,H,W)]
    PhotometricLoss    warped (N,C,H,W), target (N,C,H,W) [, mask (N,1,H,W)] -> loss (scalar)
    MinReprojectionLoss  warped_1..S (N,C,H,W), target (N,C,H,W) [, unwarped_1..S (N,C,H,W)]
                                                                -> loss (scalar) [, reprojected (N,1,H,W)]
    EdgeAwareSmoothness  disp (N,1,H,W), image (N,C,H,W)         -> loss (scalar)
    RandomMirror       images (N,C,H,W)..., K (N,4), xi (N,6)    -> the same, mirrored at random (augmentation)
    RandomColour       images (N,3,H,W)...                      -> the same, recoloured at random (augmentation)

Every layer checks its bottom count and shapes at setup/reshape, and NaN/inf in its bottoms (and top diffs)
at forward/backward, raising ParamError (a ValueError) that names the layer and the problem. Inputs that a
kernel reads in full are counted by the kernel on the way (no extra pass; the tops or bottom diffs may then hold
partial results when the error is raised); the others are checked before the kernel runs. K bottoms get
no gradient; PhotometricLoss's mask gets none either.
"""
from __future__ import annotations

import caffe
import numpy as np

from . import config as cfg
from .config import ParamError
from .kernels import (bilinear, color, correlation, min_reprojection, mirror, photometric, projection, reverse, se3, smoothness,
                      transform_grid)
from .kernels.finite import count_nonfinite


class _Layer(caffe.Layer):
    """Shared checks. Subclasses set CONFIG, BOTTOMS (min, max) and TOPS (min, max)."""

    CONFIG = None
    BOTTOMS = (1, 1)
    TOPS = (1, 1)

    @property
    def kind(self):
        return type(self).__name__

    def setup(self, bottom, top):
        self.config = cfg.parse_param_str(self.kind, self.param_str, self.CONFIG)
        for what, blobs, (lo, hi) in (("bottom", bottom, self.BOTTOMS), ("top", top, self.TOPS)):
            if not lo <= len(blobs) <= hi:
                expected = str(lo) if lo == hi else f"{lo} to {hi}"
                raise ParamError(f"{self.kind}: expected {expected} {what} blobs, got {len(blobs)}")
        self.check_setup(bottom, top)

    def check_setup(self, bottom, top):
        pass

    def fail(self, message):
        raise ParamError(f"{self.kind}: {message}")

    def expect_shape(self, name, shape, expected):
        """expected: tuple of ints or None (any)."""
        if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
            pretty = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
            self.fail(f"bottom '{name}' must have shape {pretty}, got {tuple(shape)}")

    def check_finite(self, name, array):
        self.check_count(name, count_nonfinite(array))

    def check_count(self, name, bad):
        """Raise for a NaN/inf count a kernel returned."""
        if bad:
            self.fail(f"{name} contains {bad} NaN/inf value(s)")

    def intrinsics(self, bottom, index):
        """K (N, 4) from the optional bottom `index`, else (4,) from param_str."""
        if len(bottom) > index:
            K = bottom[index].data
            self.check_finite("bottom 'K'", K)
            if np.any(K[:, :2] <= 0):
                self.fail("bottom 'K' needs focal lengths fx > 0 and fy > 0 in every row [fx, fy, cx, cy]")
            return K
        return np.asarray(self.config.K, dtype=np.float32)

    def check_K_bottom_shape(self, bottom, index, n):
        if len(bottom) > index:
            self.expect_shape("K", bottom[index].data.shape, (n, 4))
        elif self.config.K is None:
            self.fail("needs intrinsics: param_str {\"K\": [fx, fy, cx, cy]} or a K bottom of shape (N, 4)")


class SE3Generator(_Layer):
    """xi (N, 6) = [tx, ty, tz, wx, wy, wz] -> T (N, 4, 4); see pygeometry.kernels.se3.

    param_str: {"translation": "direct" | "se3_exp"} (default "direct").
    """

    CONFIG = cfg.SE3GeneratorConfig

    def reshape(self, bottom, top):
        shape = bottom[0].data.shape
        if len(shape) != 2 or shape[1] != 6:
            self.fail(f"bottom 'xi' must have shape (N, 6), got {tuple(shape)}")
        top[0].reshape(shape[0], 4, 4)

    def forward(self, bottom, top):
        self.check_finite("bottom 'xi'", bottom[0].data)
        top[0].data[...] = se3.se3_forward(bottom[0].data, self.config.translation)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.check_finite("top diff 'T'", top[0].diff)
            bottom[0].diff[...] = se3.se3_backward(bottom[0].data, top[0].diff, self.config.translation)


class Transform3DGrid(_Layer):
    """depth (N, 1, H, W), src_T_tgt (N, 4, 4) [, K (N, 4)] -> points_src (N, 3, H, W).

    K is the target camera's (param_str {"K": [fx, fy, cx, cy]} or the third bottom). Depth <= 0 is invalid
    and gives the point (0, 0, 0); see pygeometry.kernels.transform_grid.
    """

    CONFIG = cfg.Transform3DGridConfig
    BOTTOMS = (2, 3)

    def reshape(self, bottom, top):
        d = bottom[0].data.shape
        if len(d) != 4 or d[1] != 1:
            self.fail(f"bottom 'depth' must have shape (N, 1, H, W), got {tuple(d)}")
        self.expect_shape("src_T_tgt", bottom[1].data.shape, (d[0], 4, 4))
        self.check_K_bottom_shape(bottom, 2, d[0])
        top[0].reshape(d[0], 3, d[2], d[3])

    def forward(self, bottom, top):
        self.check_finite("bottom 'src_T_tgt'", bottom[1].data)
        K = self.intrinsics(bottom, 2)
        self.check_count("bottom 'depth'",
                         transform_grid.transform_grid_forward_into(bottom[0].data, bottom[1].data, K, top[0].data))

    def backward(self, top, propagate_down, bottom):
        need_depth, need_T = bool(propagate_down[0]), bool(propagate_down[1])
        if not (need_depth or need_T):
            return
        K = self.intrinsics(bottom, 2)
        grad_T, bad = transform_grid.transform_grid_backward_into(
            bottom[0].data, bottom[1].data, K, top[0].diff, bottom[0].diff if need_depth else None, need_T)
        self.check_count("top diff 'points'", bad)
        if need_T:
            bottom[1].diff[...] = grad_T


class PinholeProjection(_Layer):
    """points (N, 3, H, W) [, K (N, 4)] -> coords or flow (N, 2, H, W) [, valid (N, 1, H, W)].

    K is the source camera's. param_str: {"K": [...], "output": "coords" | "flow", "eps": 1e-3}.
    Points with z <= eps are invalid (valid 0, coordinates INVALID_COORD = -1e6, zero gradient); see
    pygeometry.kernels.projection.
    """

    CONFIG = cfg.PinholeProjectionConfig
    BOTTOMS = (1, 2)
    TOPS = (1, 2)

    def reshape(self, bottom, top):
        p = bottom[0].data.shape
        if len(p) != 4 or p[1] != 3:
            self.fail(f"bottom 'points' must have shape (N, 3, H, W), got {tuple(p)}")
        self.check_K_bottom_shape(bottom, 1, p[0])
        top[0].reshape(p[0], 2, p[2], p[3])
        if len(top) > 1:
            top[1].reshape(p[0], 1, p[2], p[3])

    def forward(self, bottom, top):
        K = self.intrinsics(bottom, 1)
        bad = projection.projection_forward_into(bottom[0].data, K, self.config.eps, self.config.output, top[0].data,
                                                 top[1].data if len(top) > 1 else None)
        self.check_count("bottom 'points'", bad)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            K = self.intrinsics(bottom, 1)
            bad = projection.projection_backward_into(bottom[0].data, K, top[0].diff, self.config.eps,
                                                      bottom[0].diff)
            self.check_count("top diff 'coords'", bad)


class BilinearWarp(_Layer):
    """image (N, C, Hs, Ws), coords or flow (N, 2, H, W) -> warped (N, C, H, W) [, valid (N, 1, H, W)].

    Any C (images or feature maps). param_str: {"input": "coords" | "flow", "padding": "zeros" | "border"}.
    See pygeometry.kernels.bilinear for the sampling convention (cv2.remap's).

    Training (TRAIN phase, while the backward asks for dL/dcoords and not for dL/dimage, as when the image is
    data): the forward also keeps d warped / d coords (two arrays the size of the warped top), and the backward
    takes dL/dcoords from it instead of sampling the image again. Like Caffe's own layers (pooling's argmax,
    dropout's mask) this assumes the backward follows the forward on unchanged bottoms.
    """

    CONFIG = cfg.BilinearWarpConfig
    BOTTOMS = (2, 2)
    TOPS = (1, 2)
    _TRAIN = 0  # caffe.TRAIN, the value of self.phase

    def setup(self, bottom, top):
        super().setup(bottom, top)
        self._jacobian = None  # (d warped / dx, d warped / dy), allocated on first use
        self._jacobian_ready = False  # filled by the last forward
        self._keep_jacobian = self.phase == self._TRAIN  # (then: the last backward wanted dL/dcoords only)

    def reshape(self, bottom, top):
        im, co = bottom[0].data.shape, bottom[1].data.shape
        if len(im) != 4:
            self.fail(f"bottom 'image' must have shape (N, C, Hs, Ws), got {tuple(im)}")
        self.expect_shape("coords", co, (im[0], 2, None, None))
        top[0].reshape(im[0], im[1], co[2], co[3])
        if len(top) > 1:
            top[1].reshape(im[0], 1, co[2], co[3])
        self._jacobian_ready = False

    def forward(self, bottom, top):
        image = bottom[0].data
        jacobian = None
        if self._keep_jacobian:
            shape = tuple(top[0].data.shape)
            if self._jacobian is None or self._jacobian[0].shape != shape or self._jacobian[0].dtype != image.dtype:
                self._jacobian = (np.empty(shape, image.dtype), np.empty(shape, image.dtype))
            jacobian = self._jacobian
        self._jacobian_ready = False
        bad_coords, bad_image = bilinear.warp_forward_into(image, bottom[1].data, self.config.padding,
                                                           self.config.input, top[0].data,
                                                           top[1].data if len(top) > 1 else None, jacobian)
        self.check_count("bottom 'image'", bad_image)
        self.check_count("bottom 'coords'", bad_coords)
        self._jacobian_ready = jacobian is not None

    def backward(self, top, propagate_down, bottom):
        need_image, need_coords = bool(propagate_down[0]), bool(propagate_down[1])
        self._keep_jacobian = self.phase == self._TRAIN and need_coords and not need_image
        if not (need_image or need_coords):
            return
        if need_coords and not need_image and self._jacobian_ready:
            bad = bilinear.warp_backward_coords_from_jacobian(self._jacobian, top[0].diff, bottom[1].diff)
        else:
            bad = bilinear.warp_backward_into(
                bottom[0].data, bottom[1].data, top[0].diff, self.config.padding, self.config.input,
                grad_image=bottom[0].diff if need_image else None,
                grad_coords=bottom[1].diff if need_coords else None)
        self.check_count("top diff 'warped'", bad)


class PhotometricLoss(_Layer):
    """warped (N, C, H, W), target (N, C, H, W) [, mask (N, 1, H, W)] -> loss (scalar).

    param_str: {"alpha": 0.0} (SSIM weight; 0 = L1, 0.85 = the usual SSIM+L1). Averaged over valid pixels;
    an all-zero mask gives loss 0 and zero gradients. Set loss_weight in the prototxt (netspec does). The
    target gets a gradient only when propagate_down asks for it; the mask never. See
    pygeometry.kernels.photometric.

    The forward runs the fast kernel and keeps the SSIM derivatives it needs for the backward (an array three
    times the warped bottom's size, allocated once; four times once a backward has asked for the target's
    gradient); the backward then only applies the box filter's adjoint. Like Caffe's own layers this assumes the
    backward follows the forward on unchanged bottoms.
    """

    CONFIG = cfg.PhotometricLossConfig
    BOTTOMS = (2, 3)

    def setup(self, bottom, top):
        super().setup(bottom, top)
        self._coef = None  # SSIM derivatives from the last forward (allocated on first use)
        self._total = None  # the mask's sum in the last forward; None: no forward since the last reshape
        self._with_target = False  # keep the target's derivatives too (a backward asked for its gradient)

    def reshape(self, bottom, top):
        w = bottom[0].data.shape
        if len(w) != 4:
            self.fail(f"bottom 'warped' must have shape (N, C, H, W), got {tuple(w)}")
        self.expect_shape("target", bottom[1].data.shape, w)
        if len(bottom) > 2:
            self.expect_shape("mask", bottom[2].data.shape, (w[0], 1, w[2], w[3]))
        if self.config.alpha > 0 and (w[2] < 2 or w[3] < 2):
            self.fail(f"SSIM (alpha > 0) needs H >= 2 and W >= 2, got {w[2]}x{w[3]}")
        top[0].reshape()
        self._total = None

    def _mask(self, bottom):
        if len(bottom) < 3:
            return None
        mask = bottom[2].data
        self.check_finite("bottom 'mask'", mask)
        if mask.min() < 0:
            self.fail("bottom 'mask' must be >= 0 (per-pixel weights)")
        return mask

    def _coefficients(self, warped):
        if self.config.alpha <= 0:
            return None
        shape = (4 if self._with_target else 3,) + tuple(warped.shape)
        if self._coef is None or self._coef.shape != shape or self._coef.dtype != warped.dtype:
            self._coef = np.empty(shape, warped.dtype)
        return self._coef

    def forward(self, bottom, top):
        warped, target = bottom[0].data, bottom[1].data
        self.check_finite("bottom 'warped'", warped)
        self.check_finite("bottom 'target'", target)
        self._total = None
        loss, total = photometric.photometric_forward_into(warped, target, self._mask(bottom), self.config.alpha,
                                                           self._coefficients(warped))
        top[0].data[...] = loss
        self._total = total

    def backward(self, top, propagate_down, bottom):
        need_target = bool(propagate_down[1])
        if not (propagate_down[0] or need_target):
            return
        scale = float(top[0].diff.flat[0])
        warped, target = bottom[0].data, bottom[1].data
        # The forward checked the mask; only a backward without a forward since the last reshape checks it here.
        mask = self._mask(bottom) if self._total is None else (bottom[2].data if len(bottom) > 2 else None)
        if need_target and not self._with_target:  # from now on the forward keeps the target's derivatives too
            self._with_target, self._total = True, None
        if self._total is None:  # no forward since the last reshape (or one without the target's): compute it
            _, self._total = photometric.photometric_forward_into(warped, target, mask, self.config.alpha,
                                                                  self._coefficients(warped))
        grad_warped = bottom[0].diff if propagate_down[0] else np.empty_like(warped)
        photometric.photometric_backward_into(warped, target, mask, self.config.alpha, self._coef, self._total,
                                              scale, grad_warped, bottom[1].diff if need_target else None)


class MinReprojectionLoss(_Layer):
    """warped_1..S (N, C, H, W), target (N, C, H, W) [, unwarped_1..S (N, C, H, W)] -> loss (scalar)
    [, reprojected (N, 1, H, W)].

    The per-pixel minimum over S sources of PhotometricLoss's per-pixel error, with Monodepth2's auto-masking:
    given the unwarped sources too, a pixel whose best unwarped source matches the target better than every
    warped one contributes that (constant) error instead (pygeometry.kernels.min_reprojection). The optional
    second top is 1 where a warped source is used, 0 where the pixel is auto-masked (for monitoring: a pose
    stuck at the identity, static frames). Only the warped sources get a gradient; the target and the unwarped
    sources are data.

    param_str: {"sources": S (default 2), "automask": true (then 2 S + 1 bottoms, else S + 1), "alpha": 0.85}.
    Set loss_weight in the prototxt (netspec does). Like PhotometricLoss, the backward reuses what the forward
    computed on the same bottoms.
    """

    CONFIG = cfg.MinReprojectionLossConfig
    BOTTOMS = (2, 33)
    TOPS = (1, 2)

    def check_setup(self, bottom, top):
        S = self.config.sources
        expected = 2 * S + 1 if self.config.automask else S + 1
        if len(bottom) != expected:
            self.fail(f"with sources={S} and automask={str(self.config.automask).lower()} it takes {expected} "
                      f"bottoms (warped_1..{S}, target{f', unwarped_1..{S}' if self.config.automask else ''}), "
                      f"got {len(bottom)}")
        self._state = None
        self._work = None

    def _names(self):
        S = self.config.sources
        return [f"warped_{s + 1}" for s in range(S)] + ["target"] + [f"unwarped_{s + 1}" for s in range(S)]

    def reshape(self, bottom, top):
        shape = bottom[0].data.shape
        if len(shape) != 4:
            self.fail(f"bottom 'warped_1' must have shape (N, C, H, W), got {tuple(shape)}")
        for name, i in zip(self._names(), range(len(bottom))):
            self.expect_shape(name, bottom[i].data.shape, shape)
        if self.config.alpha > 0 and (shape[2] < 2 or shape[3] < 2):
            self.fail(f"SSIM (alpha > 0) needs H >= 2 and W >= 2, got {shape[2]}x{shape[3]}")
        top[0].reshape()
        if len(top) > 1:
            top[1].reshape(shape[0], 1, shape[2], shape[3])
        self._state = None

    def _arrays(self, bottom):
        S = self.config.sources
        arrays = [bottom[i].data for i in range(len(bottom))]
        for name, a in zip(self._names(), arrays):
            self.check_finite(f"bottom '{name}'", a)
        return arrays[:S], arrays[S], (arrays[S + 1:] if self.config.automask else None)

    def forward(self, bottom, top):
        warped, target, unwarped = self._arrays(bottom)
        if self._work is None or self._work.shape != target.shape or self._work.dtype != target.dtype:
            self._work = np.empty_like(target)
        loss, self._state = min_reprojection.min_reprojection_forward(target, warped, unwarped, self.config.alpha,
                                                                       self._work)
        top[0].data[...] = loss
        if len(top) > 1:
            top[1].data[...] = self._state.reprojected

    def backward(self, top, propagate_down, bottom):
        S = self.config.sources
        if not any(propagate_down[s] for s in range(S)):
            return
        if self._state is None:  # no forward since the last reshape
            self.forward(bottom, top)
        scale = float(top[0].diff.flat[0])
        warped = [bottom[s].data for s in range(S)]
        grads = [bottom[s].diff if propagate_down[s] else np.empty_like(warped[s]) for s in range(S)]
        min_reprojection.min_reprojection_backward(bottom[S].data, warped, self.config.alpha, self._state, scale,
                                                   grads)


class Correlation(_Layer):
    """f1, f2 (N, C, H, W) -> cost volume (N, (2m + 1)^2, H, W): per displacement (dy, dx), |dy|, |dx| <= m, the mean
    over channels of f1 at (y, x) times f2 at (y + dy, x + dx) (zero outside the grid; channel (dy + m)(2m + 1) +
    dx + m); FlowNetC's matching layer with single-pixel patches. Both bottoms get gradients. See
    pygeometry.kernels.correlation.

    param_str: {"max_displacement": m} (integer in [0, 32], default 4).
    """

    CONFIG = cfg.CorrelationConfig
    BOTTOMS = (2, 2)

    def reshape(self, bottom, top):
        shape = bottom[0].data.shape
        if len(shape) != 4:
            self.fail(f"bottom 'f1' must have shape (N, C, H, W), got {tuple(shape)}")
        self.expect_shape("f2", bottom[1].data.shape, shape)
        d = 2 * self.config.max_displacement + 1
        top[0].reshape(shape[0], d * d, shape[2], shape[3])

    def forward(self, bottom, top):
        self.check_finite("bottom 'f1'", bottom[0].data)
        self.check_finite("bottom 'f2'", bottom[1].data)
        correlation.correlation_forward(bottom[0].data, bottom[1].data, self.config.max_displacement, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if not (propagate_down[0] or propagate_down[1]):
            return
        g1, g2 = correlation.correlation_backward(bottom[0].data, bottom[1].data, top[0].diff,
                                                  self.config.max_displacement)
        for i, g in enumerate((g1, g2)):
            if propagate_down[i]:
                bottom[i].diff[...] = g


class EdgeAwareSmoothness(_Layer):
    """disp (N, 1, H, W), image (N, C, H, W) -> loss (scalar): first-order smoothness of the disparity divided by
    its per-image mean, weighted by exp(-|image gradient|) (Monodepth2; pygeometry.kernels.smoothness).

    The disparity must be >= 0 (a sigmoid output, or its affine map; an all-zero image's loss is 0); the image gets
    no gradient. No param_str
    keys. Set loss_weight in the prototxt (Monodepth2: 1e-3 / 2^s at scale s; netspec does).
    """

    CONFIG = cfg.EdgeAwareSmoothnessConfig
    BOTTOMS = (2, 2)

    def reshape(self, bottom, top):
        d = bottom[0].data.shape
        if len(d) != 4 or d[1] != 1:
            self.fail(f"bottom 'disp' must have shape (N, 1, H, W), got {tuple(d)}")
        if d[2] < 2 or d[3] < 2:
            self.fail(f"needs H >= 2 and W >= 2, got {d[2]}x{d[3]}")
        self.expect_shape("image", bottom[1].data.shape, (d[0], None, d[2], d[3]))
        top[0].reshape()
        self._ready = False

    def check_setup(self, bottom, top):
        self._grad, self._ready = None, False

    def _check(self, nonfinite_disp, nonfinite_image, min_disp):
        self.check_count("bottom 'disp'", nonfinite_disp)
        if min_disp < 0:
            self.fail(f"bottom 'disp' must be >= 0 (a disparity), min {min_disp:g}")
        self.check_count("bottom 'image'", nonfinite_image)

    def _grad_buffer(self, disp):
        if self._grad is None or self._grad.shape != disp.shape or self._grad.dtype != disp.dtype:
            self._grad = np.empty_like(disp)
        return self._grad

    def forward(self, bottom, top):
        # the gradient is computed in the same pass (kept for the backward; the same bottoms follow, as in Caffe),
        # and the input checks are counted on the way
        self._ready = False
        loss, *checks = smoothness.smoothness_forward_checked(bottom[0].data, bottom[1].data,
                                                              self._grad_buffer(bottom[0].data))
        self._check(*checks)
        top[0].data[...] = loss
        self._ready = True

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        scale = float(top[0].diff.flat[0])
        if not self._ready:  # no forward since the last reshape
            self._check(*smoothness.smoothness_forward_checked(bottom[0].data, bottom[1].data,
                                                               self._grad_buffer(bottom[0].data))[1:])
        np.multiply(self._grad, self._grad.dtype.type(scale), out=bottom[0].diff)


class _Augmentation(_Layer):
    """A training augmentation on data blobs: as many tops as bottoms, a seeded random generator, no gradient."""

    def check_setup(self, bottom, top):
        if len(top) != len(bottom):
            self.fail(f"needs as many tops as bottoms, got {len(bottom)} bottoms and {len(top)} tops")
        self.rng = np.random.default_rng(self.config.seed)

    def backward(self, top, propagate_down, bottom):
        pass  # data: nothing to learn through


class RandomMirror(_Augmentation):
    """Training augmentation: each pair mirrored left-right with probability p (pygeometry.kernels.mirror: images
    and depth along W, cx -> W - 1 - cx, xi -> [-tx, ty, tz, wx, -wy, -wz]); an exact copy in the TEST phase.

    Bottoms: one or more images (N, C, H, W) of one size (source, target, target depth), then K (N, 4) and xi (N, 6)
    (the dataset's order); tops: the same blobs, in the same order. No gradient (it sits on a data layer).
    param_str: {"probability": p in [0, 1] (default 0.5), "seed": integer >= 0 (default 0)}.
    """

    CONFIG = cfg.RandomMirrorConfig
    BOTTOMS = (3, 16)
    TOPS = (3, 16)

    def reshape(self, bottom, top):
        blobs = [bottom[i] for i in range(len(bottom))]  # pycaffe's blob vectors do not slice
        if blobs[0].data.ndim != 4:
            self.fail(f"bottom 'image 0' must be an image (N, C, H, W), got {tuple(blobs[0].data.shape)}")
        n, _, height, width = blobs[0].data.shape
        for i, b in enumerate(blobs[:-2]):
            self.expect_shape(f"image {i}", b.data.shape, (n, None, height, width))
        self.expect_shape("K", blobs[-2].data.shape, (n, 4))
        self.expect_shape("xi", blobs[-1].data.shape, (n, 6))
        for i, b in enumerate(blobs):
            top[i].reshape(*b.data.shape)

    def forward(self, bottom, top):
        blobs = [bottom[i] for i in range(len(bottom))]
        n = blobs[0].data.shape[0]
        flip = (self.rng.uniform(size=n) < self.config.probability) if self.phase == caffe.TRAIN \
            else np.zeros(n, bool)
        mirror.mirror_pairs([b.data for b in blobs[:-2]], blobs[-2].data, blobs[-1].data, flip,
                            out=[top[i].data for i in range(len(blobs))])


class RandomReverse(_Augmentation):
    """Training augmentation: each pair read backwards with probability p (pygeometry.kernels.reverse: source and
    target swap, and so do their depths when given, and xi -> the pose vector of inv(src_T_tgt)); an exact copy in
    the TEST phase.

    Bottoms: source, target (N, C, H, W), optionally source depth and target depth (N, 1, H, W), then xi (N, 6);
    tops: the same blobs, in the same order. No gradient (it sits on a data layer). K needs no change (one camera).
    param_str: {"probability": p in [0, 1] (default 0.5), "seed": integer >= 0 (default 0)}.
    """

    CONFIG = cfg.RandomReverseConfig
    BOTTOMS = (3, 5)
    TOPS = (3, 5)

    def check_setup(self, bottom, top):
        super().check_setup(bottom, top)
        if len(bottom) not in (3, 5):
            self.fail(f"needs 3 bottoms (source, target, xi) or 5 (source, target, source depth, target depth, xi), "
                      f"got {len(bottom)}")

    def reshape(self, bottom, top):
        blobs = [bottom[i] for i in range(len(bottom))]
        if blobs[0].data.ndim != 4:
            self.fail(f"bottom 'source' must be an image (N, C, H, W), got {tuple(blobs[0].data.shape)}")
        n, c, height, width = blobs[0].data.shape
        self.expect_shape("target", blobs[1].data.shape, (n, c, height, width))
        if len(blobs) == 5:
            self.expect_shape("source depth", blobs[2].data.shape, (n, 1, height, width))
            self.expect_shape("target depth", blobs[3].data.shape, (n, 1, height, width))
        self.expect_shape("xi", blobs[-1].data.shape, (n, 6))
        for i, b in enumerate(blobs):
            top[i].reshape(*b.data.shape)

    def forward(self, bottom, top):
        blobs = [bottom[i].data for i in range(len(bottom))]
        n = blobs[0].shape[0]
        flip = (self.rng.uniform(size=n) < self.config.probability) if self.phase == caffe.TRAIN \
            else np.zeros(n, bool)
        depths = dict(src_depth=blobs[2], tgt_depth=blobs[3]) if len(blobs) == 5 else {}
        reverse.reverse_pairs(blobs[0], blobs[1], blobs[-1], flip, **depths, out=[top[i].data for i in range(len(blobs))])


class RandomColour(_Augmentation):
    """Training augmentation: per pair, one random channel permutation and one gain in [1 - g, 1 + g], the same for
    all its images (pygeometry.kernels.color); an exact copy in the TEST phase.

    Bottoms: images (N, 3, H, W) of the same pairs (source, target); tops: the same, in the same order. No gradient.
    param_str: {"gain": g in [0, 1) (default 0.2), "seed": integer >= 0 (default 0)}.
    """

    CONFIG = cfg.RandomColourConfig
    BOTTOMS = (1, 8)
    TOPS = (1, 8)

    def reshape(self, bottom, top):
        shape = bottom[0].data.shape
        for i in range(len(bottom)):
            self.expect_shape(f"image {i}", bottom[i].data.shape, (shape[0], 3, None, None))
            top[i].reshape(*bottom[i].data.shape)

    def forward(self, bottom, top):
        images = [bottom[i].data for i in range(len(bottom))]
        n = images[0].shape[0]
        if self.phase == caffe.TRAIN:
            order, gain = color.random_colour(self.rng, n, self.config.gain)
        else:
            order, gain = np.tile(np.arange(3), (n, 1)), np.ones(n)
        color.recolour_pairs(images, order, gain, out=[top[i].data for i in range(len(images))])
