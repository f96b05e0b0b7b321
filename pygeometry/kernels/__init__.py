"""Pure numpy/numba kernels: each operation's forward and analytic backward, side by side. No caffe import."""
from .bilinear import bilinear_backward, bilinear_forward
from .photometric import photometric_backward, photometric_forward, ssim_map
from .projection import INVALID_COORD, projection_backward, projection_forward
from .se3 import se3_backward, se3_forward
from .transform_grid import transform_grid_backward, transform_grid_forward

__all__ = [
    "INVALID_COORD", "bilinear_backward", "bilinear_forward", "photometric_backward", "photometric_forward",
    "projection_backward", "projection_forward", "se3_backward", "se3_forward", "ssim_map",
    "transform_grid_backward", "transform_grid_forward",
]
