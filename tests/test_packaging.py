"""Installing pygeometry into another environment (pip install -e . next to your own Caffe): setup.py names every
third-party module the package imports, and a Caffe tool started without this repository's wrapper finds the
layers through PYTHONPATH alone, as README's "Using your own Caffe" says."""
import ast
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import caffe
from caffe import layers as L
from pygeometry import netspec as G

REPO = Path(__file__).resolve().parents[1]
# import name -> the distribution that provides it (pycaffe is not on PyPI; torch and pytest are extras)
DISTRIBUTION = {"cv2": "opencv-python-headless", "skimage": "scikit-image", "google": "protobuf",
                "llvmlite": "numba", "caffe": None, "torch": "torch", "pytest": "pytest"}


def _setup_requirements():
    text = (REPO / "setup.py").read_text()
    tree = ast.parse(text)
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    name = lambda req: re.split(r"[<>=!~ \[]", req)[0].lower()  # noqa: E731
    return {name(r) for r in kw["install_requires"]}, {name(r) for v in kw["extras_require"].values() for r in v}


def _third_party_imports():
    stdlib = set(sys.stdlib_module_names)
    found = {}
    for path in (REPO / "pygeometry").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                if top not in stdlib and top != "pygeometry":
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_setup_py_requires_every_module_the_package_imports():
    required, extras = _setup_requirements()
    imports = _third_party_imports()
    assert {"numpy", "cv2", "numba", "h5py", "evo", "skimage", "caffe"} <= set(imports)  # the scan sees them
    for module, where in sorted(imports.items()):
        dist = DISTRIBUTION.get(module, module)
        if dist is None:
            continue
        assert dist.lower() in required | extras, f"{module} (imported by {sorted(where)}) is not in setup.py"


def test_a_caffe_tool_without_the_wrapper_finds_the_layers(tmp_path):
    """The caffe binary embeds the system's Python: it reads neither the venv's site-packages nor an editable
    install's .pth file, so PYTHONPATH must name the repository, the environment's packages and pycaffe."""
    wrapper = (REPO / ".venv" / "bin" / "caffe").read_text()
    binary = re.search(r'exec "([^"]+)"', wrapper).group(1)
    n = caffe.NetSpec()
    n.img = L.DummyData(shape=dict(dim=[1, 3, 6, 8]), data_filler=dict(type="uniform"))
    n.depth = L.DummyData(shape=dict(dim=[1, 1, 6, 8]), data_filler=dict(type="constant", value=2.0))
    n.xi = L.DummyData(shape=dict(dim=[1, 6]), data_filler=dict(type="gaussian", std=0.01))
    n.T = G.se3_generator(n.xi)
    n.points = G.transform_3d_grid(n.depth, n.T, K=[8.0, 8.0, 3.5, 2.5])
    n.coords = G.pinhole_projection(n.points, K=[8.0, 8.0, 3.5, 2.5])
    n.warped = G.bilinear_warp(n.img, n.coords, padding="border")
    n.loss = G.photometric_loss(n.warped, n.img, alpha=0.85)
    (tmp_path / "net.prototxt").write_text("force_backward: true\n" + str(n.to_proto()))
    pythonpath = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"], str(Path(caffe.__file__).parents[1])])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=pythonpath, GLOG_minloglevel="0", GLOG_logtostderr="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([binary, "time", "-model", "net.prototxt", "-iterations", "2"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warped\tbackward" in proc.stderr
    env["PYTHONPATH"] = os.pathsep.join(pythonpath.split(os.pathsep)[1:])  # without the repository
    proc = subprocess.run([binary, "time", "-model", "net.prototxt", "-iterations", "1"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "No module named 'pygeometry'" in proc.stderr, proc.stderr[-2000:]
