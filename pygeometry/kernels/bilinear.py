"""BilinearWarp: sample a source image (or any feature map) at per-pixel coordinates, and the backward.

Convention:
    image (N, C, Hs, Ws) is sampled at coords (N, 2, H, W), channel 0 = x (column), channel 1 = y (row),
    pixel centres at integers as in cv2.remap (equivalently torch grid_sample with align_corners=True).
    With input "flow" the coordinates are flow + pixel grid of the output.
    With x0 = floor(x), y0 = floor(y), a = x - x0, b = y - y0:
        out = (1-a)(1-b) I[y0, x0] + a (1-b) I[y0, x0+1] + (1-a) b I[y0+1, x0] + a b I[y0+1, x0+1]
    padding "zeros": taps outside the image read 0 (cv2.BORDER_CONSTANT with 0).
    padding "border": the coordinates are first clamped to [0, Ws-1] x [0, Hs-1] (cv2.BORDER_REPLICATE); the
        coordinate gradient is then 0 along a clamped axis.
    valid = 1 where 0 <= x <= Ws-1 and 0 <= y <= Hs-1 (the sample lies inside the source image), else 0.
    A NaN coordinate samples like one far outside the image (the layers reject NaN before it matters).

Backward (at the kink x = integer the one-sided derivative from the right is used, as floor does, except
on the last column/row exactly, where the derivative from inside the image (the left) is used):
    dL/dI[tap] += weight(tap) * g
    dL/dx = sum_c g_c ((1-b)(I[y0,x0+1] - I[y0,x0]) + b (I[y0+1,x0+1] - I[y0+1,x0]))
    dL/dy = sum_c g_c ((1-a)(I[y0+1,x0] - I[y0,x0]) + a (I[y0+1,x0+1] - I[y0,x0+1]))

Implementation (bilinear_numba.py; bilinear_reference.py is the same computation in plain loops, tested equal):
the arithmetic runs in the image dtype (float32 stays float32, the float64 tests stay float64). Each output row
is first set up in branch-free loops that vectorise (floor, weights, clamping, the flat index of the top-left
tap, flags: see _row_setup); then one tight loop per channel samples every pixel as if its four taps were inside
the image (idx = 0 where they are not), and short loops redo the pixels whose taps are all outside (value 0) or
partly outside (bounds-checked taps). The kernels count NaN/inf in what they read in full (the
coordinates, dL/dwarped, and in the forward the image, scanned in parallel slices), so the layers need no
separate pass: warp_forward_into and warp_backward_into return the counts and the layers raise. For training,
warp_forward_into can also keep d warped / d(x, y) per output element (the bracketed factors above, 0 along a
clamped axis), and warp_backward_coords_from_jacobian then gives dL/dcoords = sum_c g_c * that with one
streaming pass instead of sampling the image again.
"""
from __future__ import annotations

import numpy as np

from .bilinear_numba import (backward_coords_from_jacobian_kernel, backward_coords_kernel, backward_image_kernel,
                             forward_kernel)
from .finite import count_nonfinite

PADDINGS = ("zeros", "border")

def _check(padding, input_kind):
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if input_kind not in ("coords", "flow"):
        raise ValueError(f"input must be 'coords' or 'flow', got {input_kind!r}")


def _target(arr, shape, dtype):
    """arr if the kernel can write into it directly (C-contiguous, writeable, right dtype), else a new array whose
    result the caller copies back."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.writeable:
        return arr
    return np.empty(shape, dtype)


def warp_forward_into(image, coords, padding, input_kind, out, valid=None, jacobian=None):
    """The forward writing into given arrays (what the layer calls); see bilinear_forward.

    Args:
        image: (N, C, Hs, Ws); coords: (N, 2, H, W); out: (N, C, H, W); valid: (N, 1, H, W), or None to skip
            the valid mask.
        jacobian: None, or two C-contiguous arrays (N, C, H, W) of the image dtype to fill with d warped / d x and
            d warped / d y (0 along a clamped axis and where every tap is outside), for
            warp_backward_coords_from_jacobian.

    Returns:
        (the number of NaN/inf coordinates, the number of NaN/inf values in image): when not both 0, out holds
        samples taken as if far outside at NaN/inf coordinates, and whatever NaN/inf taps give.
    """
    _check(padding, input_kind)
    image = np.ascontiguousarray(image)
    dtype = image.dtype
    coords = np.ascontiguousarray(coords, dtype=dtype)
    N, C = image.shape[:2]
    H, W = coords.shape[2:]
    o = _target(out, (N, C, H, W), dtype)
    v = _target(valid, (N, 1, H, W), dtype) if valid is not None else np.empty((1,), dtype)
    if jacobian is not None:
        jac_x, jac_y = jacobian
        for j in jacobian:
            if j.shape != (N, C, H, W) or j.dtype != dtype or not j.flags.c_contiguous or not j.flags.writeable:
                raise ValueError(f"jacobian arrays must be C-contiguous, writeable, {(N, C, H, W)} of {dtype}")
    else:
        jac_x = jac_y = np.empty((1,), dtype)
    bad_rows, bad_image = forward_kernel(image, coords, input_kind == "flow", padding == "border", o, v,
                                   valid is not None, jac_x, jac_y, jacobian is not None)
    if o is not out:
        out[...] = o
    if valid is not None and v is not valid:
        valid[...] = v
    return (count_nonfinite(coords) if bad_rows else 0), int(bad_image)


def warp_backward_into(image, coords, grad_warped, padding, input_kind, grad_image=None, grad_coords=None):
    """The backward writing into given arrays (what the layer calls); see bilinear_backward.

    Args:
        image: (N, C, Hs, Ws); coords: (N, 2, H, W); grad_warped: (N, C, H, W) dL/dwarped.
        grad_image, grad_coords: (N, C, Hs, Ws) and (N, 2, H, W) arrays to write into, or None for a gradient
            that is not needed.

    Returns:
        The number of NaN/inf values in grad_warped.
    """
    _check(padding, input_kind)
    image = np.ascontiguousarray(image)
    dtype = image.dtype
    coords = np.ascontiguousarray(coords, dtype=dtype)
    grad_warped = np.ascontiguousarray(grad_warped, dtype=dtype)
    as_flow, border = input_kind == "flow", padding == "border"
    gc = _target(grad_coords, coords.shape, dtype) if grad_coords is not None else None
    if grad_image is not None:
        gi = _target(grad_image, image.shape, dtype)
        bad = backward_image_kernel(image, coords, grad_warped, as_flow, border, gc is not None, gi,
                              gc if gc is not None else np.empty((1, 2, 1, 1), dtype))
        if gi is not grad_image:
            grad_image[...] = gi
    elif gc is not None:
        bad = backward_coords_kernel(image, coords, grad_warped, as_flow, border, gc)
    else:
        return count_nonfinite(grad_warped)
    if gc is not None and gc is not grad_coords:
        grad_coords[...] = gc
    return int(bad)


def warp_backward_coords_from_jacobian(jacobian, grad_warped, grad_coords):
    """dL/dcoords from the Jacobian that warp_forward_into kept: the same values as warp_backward_into's, without
    sampling the image again. Valid only while the image and the coordinates are those of that forward.

    Args:
        jacobian: (d warped / d x, d warped / d y), each (N, C, H, W).
        grad_warped: (N, C, H, W) dL/dwarped; grad_coords: (N, 2, H, W) array to write into.

    Returns:
        The number of NaN/inf values in grad_warped.
    """
    jac_x, jac_y = jacobian
    dtype = jac_x.dtype
    grad_warped = np.ascontiguousarray(grad_warped, dtype=dtype)
    gc = _target(grad_coords, (grad_warped.shape[0], 2) + grad_warped.shape[2:], dtype)
    bad = backward_coords_from_jacobian_kernel(jac_x, jac_y, grad_warped, gc)
    if gc is not grad_coords:
        grad_coords[...] = gc
    return int(bad)


def bilinear_forward(image, coords, padding="zeros", input_kind="coords", out=None, valid=None):
    """Warp: sample image at coords.

    Args:
        image: (N, C, Hs, Ws) source image or feature map.
        coords: (N, 2, H, W) sample positions (x, y), or flow if input_kind == "flow".
        padding: "zeros" or "border".
        input_kind: "coords" or "flow".
        out, valid: optional (N, C, H, W) and (N, 1, H, W) arrays to write into.

    Returns:
        (warped (N, C, H, W), valid (N, 1, H, W) of 0/1), dtype of image.
    """
    _check(padding, input_kind)
    N, C = image.shape[:2]
    H, W = coords.shape[2:]
    if out is None:
        out = np.empty((N, C, H, W), dtype=image.dtype)
    if valid is None:
        valid = np.empty((N, 1, H, W), dtype=image.dtype)
    warp_forward_into(image, coords, padding, input_kind, out, valid)
    return out, valid


def bilinear_backward(image, coords, grad_warped, padding="zeros", input_kind="coords",
                      need_image=True, need_coords=True, grad_image=None, grad_coords=None):
    """Gradients of the warp with respect to the image and the coordinates (or flow: the same values).

    Args:
        image: (N, C, Hs, Ws); coords: (N, 2, H, W); grad_warped: (N, C, H, W) dL/dwarped.
        need_image, need_coords: which gradients to compute (the other is returned as None).
        grad_image, grad_coords: optional output arrays.

    Returns:
        (grad_image (N, C, Hs, Ws) or None, grad_coords (N, 2, H, W) or None).
    """
    _check(padding, input_kind)
    if need_image and grad_image is None:
        grad_image = np.empty(image.shape, dtype=image.dtype)
    if need_coords and grad_coords is None:
        grad_coords = np.empty(coords.shape, dtype=image.dtype)
    warp_backward_into(image, coords, grad_warped, padding, input_kind,
                       grad_image if need_image else None, grad_coords if need_coords else None)
    return (grad_image if need_image else None), (grad_coords if need_coords else None)
