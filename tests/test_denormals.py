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
