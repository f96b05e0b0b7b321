"""Shared test helpers. Caffe's glog is silenced before caffe is imported anywhere."""
import os

os.environ.setdefault("GLOG_minloglevel", "2")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pygeometry.testing import numeric_gradient  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line("markers", "blas: numerics that depend on the BLAS kernel (float32 Caffe against a "
                                       "float64 reference); .ci/run repeats them under every OpenBLAS core type")


def pytest_report_header(config):
    from pygeometry.blas import describe_openblas

    return describe_openblas()


numeric_grad = numeric_gradient  # float64 central differences of f() w.r.t. every element of x (one home)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory):
    """A 48x80 synthetic dataset (8 train, 4 val, 4 test pairs) made by scripts/make_dataset.py: the smallest
    input AlexNet's trunk accepts, so that networks and training run in seconds."""
    out = tmp_path_factory.mktemp("tiny_split")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(out), "--train",
                           "8", "--val", "4", "--test", "4", "--height", "48", "--width", "80", "--workers", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def assert_readme_block_is(begin: str, end: str, results_md: str, title: str, made_by: str):
    """README.md's generated block between `begin` and `end` is results/<results_md> without its title line (both
    written by the same --readme run of a report script, never typed by hand)."""
    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    block = readme.split(begin, 1)[1].split(end, 1)[0].strip()
    committed = (repo / "results" / results_md).read_text()
    assert committed.startswith(f"# {title}\n\n")
    assert block and block == committed.split("\n\n", 1)[1].strip()
    assert block.startswith(f"Made by `{made_by}")
