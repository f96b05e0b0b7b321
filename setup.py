"""pygeometry: Caffe Python layers for differentiable multi-view geometry.

Caffe (pycaffe) is not on PyPI; `make test` / scripts/install/setup.sh builds it and wires it into .venv.
"""
from setuptools import find_packages, setup

setup(
    name="pygeometry",
    version="0.1.0",
    description="Caffe Python layers for differentiable multi-view geometry and self-supervised pose learning",
    packages=find_packages(include=["pygeometry", "pygeometry.*"]),
    package_data={"pygeometry.data": ["imagenet_classes.txt"]},
    python_requires=">=3.10",
    # Everything the package imports (tests/test_packaging.py checks the list against the imports); pycaffe is
    # not on PyPI (see README, "Using your own Caffe"). torch is for the benchmarks only.
    install_requires=["numpy>=1.24", "scipy", "opencv-python-headless", "protobuf", "numba", "h5py", "tqdm",
                      "scikit-image", "matplotlib", "evo"],
    extras_require={"test": ["pytest"], "bench": ["torch"]},
)
