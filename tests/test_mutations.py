"""Every gradient test can fail: each mutation below breaks one kernel's (or layer's) backward the way real bugs
do (a flipped sign, a dropped factor, a zero gradient, an ignored loss weight), and the gradient tests that guard
it are run under it and must fail. The forwards are untouched, so only the gradient checks can notice.

A mutation replaces a backward function by a wrapper around the original, everywhere it is bound (the kernel
module, pygeometry.layers' module reference, the test modules' own imports).
"""
import sys

import numpy as np
import pytest

import test_correlation
import test_kernel_bilinear
import test_kernel_depth_losses
import test_kernel_geometry
import test_kernel_photometric
import test_kernel_se3
import test_layers
from pygeometry import layers
from pygeometry.kernels import (bilinear, correlation, min_reprojection, photometric, projection, se3, smoothness,
                                transform_grid)


def _patch_everywhere(monkeypatch, owner, attr, make_mutant):
    """Replace owner.attr by make_mutant(original) in owner and wherever a loaded module bound the same object."""
    original = getattr(owner, attr)
    mutant = make_mutant(original)
    monkeypatch.setattr(owner, attr, mutant)
    for module in list(sys.modules.values()):
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if value is original and module is not owner:
                monkeypatch.setattr(module, name, mutant)


def se3_rotation_sign(orig):
    def mutant(xi, grad_T, translation="direct"):
        g = orig(xi, grad_T, translation).copy()
        g[:, 3:] *= -1
        return g
    return mutant


def se3_translation_halved(orig):
    def mutant(xi, grad_T, translation="direct"):
        g = orig(xi, grad_T, translation).copy()
        g[:, :3] *= 0.5
        return g
    return mutant


def grid_T_halved(orig):
    def mutant(depth, src_T_tgt, K, grad_points, grad_depth=None, need_T=True):
        grad_T, bad = orig(depth, src_T_tgt, K, grad_points, grad_depth, need_T)
        return (None if grad_T is None else grad_T * 0.5), bad
    return mutant


def grid_depth_sign(orig):
    def mutant(depth, src_T_tgt, K, grad_points, grad_depth=None, need_T=True):
        result = orig(depth, src_T_tgt, K, grad_points, grad_depth, need_T)
        if grad_depth is not None:
            grad_depth *= -1
        return result
    return mutant


def projection_z_sign(orig):
    def mutant(points, K, grad_coords, eps, out):
        bad = orig(points, K, grad_coords, eps, out)
        out[:, 2] *= -1
        return bad
    return mutant


def _warp_backward_then(edit):
    """A mutant of warp_backward_into that runs the original, then edit(grad_image, grad_coords) in place."""
    def make(orig):
        def mutant(image, coords, grad_warped, padding, input_kind, grad_image=None, grad_coords=None):
            bad = orig(image, coords, grad_warped, padding, input_kind, grad_image=grad_image,
                       grad_coords=grad_coords)
            edit(grad_image, grad_coords)
            return bad
        return mutant
    return make


def _halve_image_gradient(grad_image, grad_coords):
    if grad_image is not None:
        grad_image *= 0.5


def _flip_y_gradient(grad_image, grad_coords):
    if grad_coords is not None:
        grad_coords[:, 1] *= -1


warp_image_halved = _warp_backward_then(_halve_image_gradient)
warp_coords_y_sign = _warp_backward_then(_flip_y_gradient)


def warp_jacobian_x_sign(orig):
    def mutant(jacobian, grad_warped, grad_coords):
        bad = orig(jacobian, grad_warped, grad_coords)
        grad_coords[:, 0] *= -1
        return bad
    return mutant


def loss_halved(orig):
    def mutant(warped, target, mask=None, alpha=0.0, need_target=False):
        g_w, g_t = orig(warped, target, mask, alpha, need_target=need_target)
        return g_w * 0.5, (None if g_t is None else g_t * 0.5)
    return mutant


def loss_without_ssim(orig):
    def mutant(warped, target, mask=None, alpha=0.0, need_target=False):
        g_w, g_t = orig(warped, target, mask, 0.0, need_target=need_target)  # the L1 part alone, weighted
        return g_w * (1 - alpha), (None if g_t is None else g_t * (1 - alpha))
    return mutant


def fast_loss_ssim_adjoint_sign(orig):
    """The fast backward with the SSIM term's sign flipped (its coefficients negated)."""
    def mutant(warped, target, mask, alpha, coef, total, scale, grad_warped, grad_target=None):
        return orig(warped, target, mask, alpha, None if coef is None else -coef, total, scale, grad_warped,
                    grad_target)
    return mutant


def fast_loss_halved(orig):
    def mutant(warped, target, mask, alpha, coef, total, scale, grad_warped, grad_target=None):
        return orig(warped, target, mask, alpha, coef, total, 0.5 * scale, grad_warped, grad_target)
    return mutant


def fast_loss_zero(orig):
    """The loss gradient is ~1/pixels per element (~0.004 here): a tolerance floored at 1 passed this."""
    def mutant(warped, target, mask, alpha, coef, total, scale, grad_warped, grad_target=None):
        orig(warped, target, mask, alpha, coef, total, scale, grad_warped, grad_target)
        grad_warped[...] = 0
        if grad_target is not None:
            grad_target[...] = 0
    return mutant


def fast_loss_target_sign(orig):
    """The target's gradient (the 4th SSIM derivative and the L1 part) with its sign flipped."""
    def mutant(warped, target, mask, alpha, coef, total, scale, grad_warped, grad_target=None):
        orig(warped, target, mask, alpha, coef, total, scale, grad_warped, grad_target)
        if grad_target is not None:
            grad_target *= -1
    return mutant


def layer_ignores_loss_weight(orig):
    def mutant(self, top, propagate_down, bottom):
        top[0].diff[...] = 1.0  # as if the layer assumed loss_weight 1
        return orig(self, top, propagate_down, bottom)
    return mutant


def min_reprojection_halved(orig):
    def mutant(target, warped, alpha, state, scale, grads):
        return orig(target, warped, alpha, state, 0.5 * scale, grads)
    return mutant


def min_reprojection_ssim_weights_dropped(orig):
    """The SSIM derivatives forgotten (as if the forward had not kept them): only the L1 part's gradient is left."""
    def mutant(target, warped, alpha, state, scale, grads):
        for g, x in zip(grads, warped):
            g[...] = 0
        kept = state._replace(coef=[None] * len(state.coef))
        return orig(target, warped, 0.0, kept, scale * (1 - alpha), grads)
    return mutant


def smoothness_halved(orig):
    """The fast kernel's gradient (which the layer keeps from its forward) halved."""
    def mutant(disp, image, grad=None):
        result = orig(disp, image, grad)
        if grad is not None:
            grad *= 0.5
        return result
    return mutant


def smoothness_sign(orig):
    def mutant(disp, image):
        return -orig(disp, image)
    return mutant


def _rng():
    return np.random.default_rng(12345)


# mutation: (owner, attribute, mutant maker, [(test function, kwargs), ...] that must each fail under it)
def correlation_f1_sign(orig):
    def mutant(f1, f2, grad_out, max_displacement, out=None):
        g1, g2 = orig(f1, f2, grad_out, max_displacement, out)
        return -g1, g2
    return mutant


def correlation_f2_undivided(orig):
    """Forgets the 1 / C of the channel mean in the second bottom's gradient."""
    def mutant(f1, f2, grad_out, max_displacement, out=None):
        g1, g2 = orig(f1, f2, grad_out, max_displacement, out)
        return g1, g2 * f1.shape[1]
    return mutant


MUTATIONS = {
    "correlation f1 sign": (correlation, "correlation_backward", correlation_f1_sign, [
        (test_correlation.test_kernel_gradient, {}),
        (test_correlation.test_layer_gradient_in_a_net, dict(propagate_down=[True, False]))]),
    "correlation f2 factor": (correlation, "correlation_backward", correlation_f2_undivided, [
        (test_correlation.test_kernel_gradient, {}),
        (test_correlation.test_layer_gradient_in_a_net, dict(propagate_down=[False, True]))]),
    "se3 rotation sign": (se3, "se3_backward", se3_rotation_sign, [
        (test_kernel_se3.test_gradient_float64, dict(translation="direct")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="se3-direct"))]),
    "se3 translation factor": (se3, "se3_backward", se3_translation_halved, [
        (test_kernel_se3.test_gradient_float64, dict(translation="se3_exp")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="se3-exp"))]),
    "grid dL/dT factor": (transform_grid, "transform_grid_backward_into", grid_T_halved, [
        (test_kernel_geometry.test_transform_grid_gradients, {}),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="grid-K-param")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="grid-K-blob"))]),
    "grid dL/ddepth sign": (transform_grid, "transform_grid_backward_into", grid_depth_sign, [
        (test_kernel_geometry.test_transform_grid_gradients, {}),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="grid-K-param"))]),
    "projection dL/dz sign": (projection, "projection_backward_into", projection_z_sign, [
        (test_kernel_geometry.test_projection_gradients, dict(output="coords")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="proj-coords")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="proj-flow-valid-Kblob"))]),
    "warp dL/dimage factor": (bilinear, "warp_backward_into", warp_image_halved, [
        (test_kernel_bilinear.test_gradients, dict(padding="zeros", input_kind="coords")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="warp-zeros-coords-valid"))]),
    "warp dL/dy sign": (bilinear, "warp_backward_into", warp_coords_y_sign, [
        (test_kernel_bilinear.test_gradients, dict(padding="border", input_kind="flow")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="warp-border-flow"))]),
    "warp Jacobian dL/dx sign": (bilinear, "warp_backward_coords_from_jacobian", warp_jacobian_x_sign, [
        (test_layers.test_warp_training_path_finite_differences, {})]),
    # the reference backward (numpy): its own gradient checks; the layer runs the fast kernels below
    "loss factor": (photometric, "photometric_backward", loss_halved, [
        (test_kernel_photometric.test_gradients, dict(alpha=0.0, with_mask=True))]),
    "loss SSIM term dropped": (photometric, "photometric_backward", loss_without_ssim, [
        (test_kernel_photometric.test_gradients, dict(alpha=0.85, with_mask=False))]),
    "fast loss gradient zero": (photometric, "photometric_backward_into", fast_loss_zero, [
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="loss-l1")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="loss-ssim-mask"))]),
    "fast loss SSIM sign": (photometric, "photometric_backward_into", fast_loss_ssim_adjoint_sign, [
        (test_kernel_photometric.test_fast_gradients, dict(alpha=0.85)),
        (test_layers.test_loss_training_path, dict(name="loss-ssim-mask")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="loss-ssim-mask"))]),
    "fast loss factor": (photometric, "photometric_backward_into", fast_loss_halved, [
        (test_kernel_photometric.test_fast_gradients, dict(alpha=0.0)),
        (test_layers.test_loss_training_path, dict(name="loss-l1")),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="loss-l1"))]),
    "fast loss target sign": (photometric, "photometric_backward_into", fast_loss_target_sign, [
        (test_kernel_photometric.test_fast_gradients, dict(alpha=0.85)),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="loss-ssim-mask"))]),
    "min-reprojection factor": (min_reprojection, "min_reprojection_backward", min_reprojection_halved, [
        (test_kernel_depth_losses.test_min_reprojection_gradient, dict(alpha=0.85, automask=True)),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="minrepro-automask"))]),
    "min-reprojection SSIM term dropped": (min_reprojection, "min_reprojection_backward",
                                           min_reprojection_ssim_weights_dropped, [
        (test_kernel_depth_losses.test_min_reprojection_gradient, dict(alpha=0.85, automask=False)),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="minrepro-plain-map"))]),
    "smoothness factor": (smoothness, "smoothness_forward_checked", smoothness_halved, [
        (test_kernel_depth_losses.test_smoothness_fast_gradient, {}),
        (test_layers.test_float32_finite_differences_through_the_net, dict(name="smoothness"))]),
    "smoothness sign": (smoothness, "smoothness_backward", smoothness_sign, [
        (test_kernel_depth_losses.test_smoothness_gradient, {})]),
    "min-reprojection loss_weight ignored": (layers.MinReprojectionLoss, "backward", layer_ignores_loss_weight, [
        (test_layers.test_loss_weight_scales_the_bottom_diffs, dict(name="minrepro-automask", loss_weight=0.3))]),
    "smoothness loss_weight ignored": (layers.EdgeAwareSmoothness, "backward", layer_ignores_loss_weight, [
        (test_layers.test_loss_weight_scales_the_bottom_diffs, dict(name="smoothness", loss_weight=2.0))]),
    "loss_weight ignored": (layers.PhotometricLoss, "backward", layer_ignores_loss_weight, [
        (test_layers.test_loss_weight_scales_the_bottom_diffs, dict(name="loss-l1", loss_weight=0.3)),
        (test_layers.test_loss_weight_scales_the_bottom_diffs, dict(name="loss-ssim-mask", loss_weight=2.0))]),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_gradient_tests_fail_under_the_mutation(mutation, monkeypatch):
    owner, attr, make_mutant, guards = MUTATIONS[mutation]
    for test, kwargs in guards:  # each guard passes on the real code (the suite runs them unmutated too)
        test(rng=_rng(), **kwargs)
    _patch_everywhere(monkeypatch, owner, attr, make_mutant)
    for test, kwargs in guards:
        with pytest.raises(AssertionError):
            test(rng=_rng(), **kwargs)
