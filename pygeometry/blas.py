"""Which BLAS Caffe computes with: OpenBLAS picks a kernel per CPU at load time (Haswell, SkylakeX, Cooperlake,
Zen, ...), and OPENBLAS_CORETYPE overrides the choice. Results differ between kernels by float32 rounding only
(summation order); tests that compare float32 Caffe with a float64 reference must not depend on which side of a
kink (ReLU at 0) such a rounding difference lands. tests/test_blas.py checks the products Caffe's layers make
against float64 directly, and .ci/run repeats the BLAS-sensitive tests under every core type.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

CORE_TYPES = ("Haswell", "SkylakeX", "Cooperlake", "Zen")  # the kernels the x86-64 machines here can land on


def openblas_core(library: str = "libopenblas.so.0") -> str | None:
    """The kernel name the given OpenBLAS library chose in this process (None when it cannot be loaded)."""
    try:
        lib = ctypes.CDLL(library)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        return f"{lib.openblas_get_corename().decode()} ({lib.openblas_get_config().decode().strip()})"
    except (OSError, AttributeError):
        return None


def describe_openblas() -> str:
    """One line for logs and the pytest header: Caffe's OpenBLAS kernel and the override, if any."""
    core = openblas_core()
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return (f"OpenBLAS (Caffe's): {core or 'not found'}"
            + (f"; OPENBLAS_CORETYPE={forced}" if forced else "; kernel chosen by CPU detection"))


_REQUIRED_FLAGS = {"Haswell": {"avx2", "fma"}, "Zen": {"avx2", "fma"}, "SkylakeX": {"avx512f", "avx512bw", "avx512vl"},
                   "Cooperlake": {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"}}


def supported_core_types(cpuinfo: str = "/proc/cpuinfo") -> list:
    """The core types of CORE_TYPES this CPU can execute (forcing one it lacks would stop on an illegal
    instruction): read from the CPU flags."""
    try:
        with open(cpuinfo) as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return []
    return [core for core in CORE_TYPES if _REQUIRED_FLAGS[core] <= flags]
