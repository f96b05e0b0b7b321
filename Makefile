# pygeometry: every target installs what it needs first (scripts/install/setup.sh is a quick no-op when done).
PY := .venv/bin/python

.PHONY: setup test train data bench help
help:
	@echo "make train   set up (Caffe, .venv) and run the main job"
	@echo "make test    set up and run the test suite"
	@echo "make data    set up and generate the default synthetic dataset into data/synthetic/ (resumes)"
	@echo "make bench   set up and benchmark the layers against PyTorch (installs torch==2.13.0 into .venv)"

setup:
	@bash scripts/install/setup.sh

test: setup
	$(PY) -m pytest -q tests

train: setup
	$(PY) scripts/train_pose_fit.py

data: setup
	$(PY) scripts/make_dataset.py --out data/synthetic

bench: setup
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) scripts/bench_layers.py
