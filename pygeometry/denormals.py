"""Flush denormal floats to zero in the calling thread (x86 MXCSR FTZ and DAZ bits), for long CPU training runs.

Why: Adam keeps a running mean m of each parameter's gradient; where the gradient is exactly zero for hundreds of
iterations (a ReLU unit that no longer fires), m decays by 0.9 per step into the denormal range (below 1.2e-38 in
float32) after about 750 steps, and every operation on a denormal takes a slow microcode path. Seen here:
`make train` slowed from 6 to 2 iterations per second after iteration ~1400 with nothing else running. With
flush-to-zero (results that would be denormal become 0) and denormals-are-zero (denormal inputs read as 0), those
values are exact zeros instead, which changes nothing that matters to training.

The flags are per thread, and a new thread inherits them from the thread that creates it. Call flush_denormals() in
the thread that runs Caffe (the main thread in pycaffe). OpenBLAS starts its worker threads when it is loaded
(`import caffe`, `import numpy`), before anyone could set the flags, so flush_denormals() also shuts down the
worker threads of every OpenBLAS loaded in the process (its exported blas_thread_shutdown_, what OpenBLAS itself
does around fork()); OpenBLAS starts them again at the next threaded call, from this thread, with the flags.
Without that, the workers computed their share of every GEMM on denormals: measured on an early-fusion net with
batch normalisation, 145 ms per iteration after 2000 iterations with 2 OpenBLAS threads, 81 ms with the workers
restarted. The function is compiled once with llvmlite (numba's
own LLVM binding, so no new dependency), using LLVM's x86 intrinsics for stmxcsr/ldmxcsr.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform

_MXCSR_FTZ_DAZ = (1 << 15) | (1 << 6)

_IR = f"""
declare void @llvm.x86.sse.stmxcsr(ptr)
declare void @llvm.x86.sse.ldmxcsr(ptr)
define void @flush_denormals() {{
  %p = alloca i32, align 4
  call void @llvm.x86.sse.stmxcsr(ptr %p)
  %v = load i32, ptr %p, align 4
  %w = or i32 %v, {_MXCSR_FTZ_DAZ}
  store i32 %w, ptr %p, align 4
  call void @llvm.x86.sse.ldmxcsr(ptr %p)
  ret void
}}
define i32 @mxcsr() {{
  %p = alloca i32, align 4
  call void @llvm.x86.sse.stmxcsr(ptr %p)
  %v = load i32, ptr %p, align 4
  ret i32 %v
}}
"""


@functools.lru_cache(maxsize=None)
def _compiled():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(_IR)
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    function = ctypes.CFUNCTYPE(None)(engine.get_function_address("flush_denormals"))
    read = ctypes.CFUNCTYPE(ctypes.c_uint32)(engine.get_function_address("mxcsr"))
    return engine, function, read  # keep the engine alive as long as the functions


def loaded_openblas() -> list:
    """The OpenBLAS libraries loaded in this process (real paths; Caffe's, numpy's and scipy's own builds)."""
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.count("/") else ""
                if "openblas" in path.lower() and ".so" in path:
                    paths.add(os.path.realpath(path))
    except OSError:  # not Linux
        return []
    return sorted(paths)


def _openblas_functions(name: str, restype=ctypes.c_int) -> list:
    """The function `name` of every loaded OpenBLAS that exports it (ctypes, no arguments)."""
    functions = []
    for path in loaded_openblas():
        try:
            function = getattr(ctypes.CDLL(path), name)
        except (OSError, AttributeError):
            continue
        function.restype = restype
        functions.append(function)
    return functions


def restart_openblas_threads() -> int:
    """Shut down the worker threads of every loaded OpenBLAS (blas_thread_shutdown_); each starts them again at its
    next threaded call, from the calling thread, so they inherit its MXCSR flags. Returns how many libraries did."""
    shutdowns = _openblas_functions("blas_thread_shutdown_")
    for shutdown in shutdowns:
        shutdown()
    return len(shutdowns)


def openblas_threads() -> int:
    """The largest thread count of the loaded OpenBLAS libraries (openblas_get_num_threads; 0 if none is loaded)."""
    return max([0] + [get() for get in _openblas_functions("openblas_get_num_threads")])


def flush_denormals() -> bool:
    """Set FTZ and DAZ in the calling thread, and restart OpenBLAS's worker threads so that they have them too
    (restart_openblas_threads). Returns False (and does nothing) on a CPU that is not x86-64."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    _compiled()[1]()
    restart_openblas_threads()
    return True


def denormals_flushed() -> bool:
    """Whether FTZ and DAZ are both set in the calling thread (False on a CPU that is not x86-64). The caffe
    command-line tool built by scripts/install/setup.sh sets them at start (its patch), like flush_denormals."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return (_compiled()[2]() & _MXCSR_FTZ_DAZ) == _MXCSR_FTZ_DAZ
