"""flush_denormals sets FTZ/DAZ in the calling thread: a float32 denormal then reads and computes as zero."""
import subprocess
import sys
import textwrap


def test_flush_denormals_makes_denormal_results_zero():
    code = textwrap.dedent("""
        import numpy as np
        from pygeometry.denormals import denormals_flushed, flush_denormals
        x = np.full(1000, 1e-39, np.float32)          # a float32 denormal
        before = float((x * np.float32(1.5))[0])
        assert not denormals_flushed()
        assert flush_denormals() is True
        assert denormals_flushed()
        after = float((x * np.float32(1.5))[0])
        tiny = np.float32(1e-30) * np.float32(1e-10)   # a result in the denormal range
        print(before, after, float(tiny))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # own process: flags stay there
    assert proc.returncode == 0, proc.stderr
    before, after, tiny = (float(v) for v in proc.stdout.split())
    assert before > 0 and after == 0.0 and tiny == 0.0


GEMM_CODE = """
import json, sys
import numpy as np
import caffe
from caffe import layers as L
from pygeometry import denormals

caffe.set_mode_cpu()
if sys.argv[1] == "flush_denormals":
    denormals.flush_denormals()
else:  # the control: the flags in this thread only, OpenBLAS's workers keep the ones they started with
    denormals._compiled()[1]()
n = caffe.NetSpec()
n.x = L.Input(shape=dict(dim=[64, 1024]))
n.y = L.InnerProduct(n.x, num_output=1024, bias_term=False, weight_filler=dict(type="constant", value=1.0))
with open("net.prototxt", "w") as f:
    f.write(str(n.to_proto()))
net = caffe.Net("net.prototxt", caffe.TEST)
# 1e-39, a float32 denormal, set by its bits: converting 1e-39 to float32 with FTZ set would give 0
net.blobs["x"].data[...] = np.full((64, 1024), 0x000AE398, np.uint32).view(np.float32)
net.forward()
assert (net.blobs["x"].data.view(np.uint32) != 0).all()  # the input is denormals, not zeros (bits: DAZ reads 0)
y = net.blobs["y"].data
print(json.dumps({"nonzero_rows": int((y.view(np.uint32) != 0).any(axis=1).sum()), "threads": denormals.openblas_threads()}))
"""


def _gemm_on_denormals(how, tmp_path):
    import json
    import os

    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, "-c", GEMM_CODE, how], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_openblas_workers_flush_denormals_too(tmp_path):
    """A GEMM that Caffe's OpenBLAS splits over 2 threads, on denormal inputs (1e-39 times a 1024 x 1024 matrix of ones): with
    flush_denormals() every output is exactly 0 (DAZ in every thread). The control sets the flags in the calling
    thread only, as flush_denormals did before it restarted OpenBLAS's workers: the rows a worker computed are
    1e-36, which made training 1.8x slower once Adam's moments and the gradients of dead units reached denormals."""
    flushed = _gemm_on_denormals("flush_denormals", tmp_path)
    assert flushed["nonzero_rows"] == 0
    control = _gemm_on_denormals("main_thread_only", tmp_path)
    assert control["threads"] == 2
    assert control["nonzero_rows"] > 0
