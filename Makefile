# Two set-up commands: `make demo` (main job on the built-in model) and `make test` (the suite).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed
# `cmd | tee log` recipes fail when cmd fails
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: install browser serve screenshots bench-serve demo check test test-slow bench bench-explain locset bench-resolution bench-resolution-quick bench-methods-imagenet bench-faithfulness bench-faithfulness-speed bench-loc bench-loc-quick bench-probe data clean docs-method-photos

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q --disable-pip-version-check $(TORCH_PINS)
	$(PIP) install -q --disable-pip-version-check -e ".[test,bench,probe,onnx,serve]" $(TORCH_PINS)
	touch $(STAMP)

install: $(STAMP) browser

# Debian's chromium for the browser test (Playwright's own browser download is not reachable); needs root or
# password-less sudo. Without it the browser test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then echo "make browser: not root and no sudo: chromium not installed (the browser test will skip)"; \
	  else $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium \
	    || echo "make browser: apt-get could not install chromium (the browser test will skip)"; fi; }

serve: $(STAMP)
	MALLOC_ARENA_MAX=2 $(VENV)/bin/camloc serve

# the page's screenshots in docs/img (README, docs/serve.md), taken by the browser test
screenshots: $(STAMP) browser
	CAMLOC_SCREENSHOT_DIR=docs/img $(PY) -m pytest tests/serve/test_browser.py -q

demo: $(STAMP)
	$(VENV)/bin/camloc explain examples/ --top-k 5 --out results/demo --format json
	@echo "Pictures and JSON are in results/demo/ (<name>_overlay.png, <name>_grid.png, <name>.json)."

# lint, format and types (ruff + mypy, settings in pyproject.toml), then the suite
check: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

test: check browser
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_cam.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_methods.py
	$(PY) benchmarks/bench_onnx.py

# explain throughput (images/s, decode/model/boxes/write shares), peak RSS at 500 and 5,000 images, one process vs
# two torchrun ranks; long on a CPU (`$(PY) benchmarks/bench_explain.py --quick` for a first look)
bench-explain: $(STAMP)
	mkdir -p bench-results && OMP_NUM_THREADS=1 $(PY) benchmarks/bench_explain.py | tee bench-results/explain.md

# the localization set (real photos from scikit-image, Debian opencv-doc / labelme-examples and imgaug's wheel, fetched
# by apt-get download / pip download into .cache/), then the study of map procedures on it (docs/resolution.md);
# raw maps are cached per image in .cache/resolution/, so a second run only re-scores
locset: .cache/locset/manifest.json

.cache/locset/manifest.json: benchmarks/build_locset.py | $(STAMP)
	$(PY) benchmarks/build_locset.py --out .cache/locset

bench-resolution: locset
	mkdir -p bench-results && $(PY) benchmarks/bench_resolution.py --set .cache/locset --out bench-results/resolution.json \
	  --plot docs/resolution-pareto.png | tee bench-results/resolution.md

bench-resolution-quick: locset
	mkdir -p bench-results && $(PY) benchmarks/bench_resolution.py --set .cache/locset --quick \
	  --out bench-results/resolution-quick.json | tee bench-results/resolution-quick.md

# localization alone, one image per explain call at the default (zoom), on the 431-image set: the five cheap
# methods on all images, Score-CAM (a forward pass per channel, at both passes) on the 8-image stratified subset
bench-methods-imagenet: locset
	mkdir -p bench-results/methods-imagenet
	( $(PY) benchmarks/compare_methods_imagenet.py --methods cam gradcam gradcam++ xgradcam layercam && \
	  $(PY) benchmarks/compare_methods_imagenet.py --methods cam scorecam --n 8 ) \
	  | tee bench-results/methods-imagenet.md

# the table of docs/methods.md: localization + faithfulness per method on the 431-image set at the default (zoom),
# 1 thread; resumes from bench-results/faithfulness/locset-zoom/*.jsonl (delete them to re-measure). Deletion /
# insertion and ROAD on the first 72 images of a stratified order (--n-perturb; the table says n)
bench-faithfulness: locset
	mkdir -p bench-results/faithfulness
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_faithfulness.py table --n-scorecam 8 --n-perturb 72 | tee bench-results/faithfulness.md

# the issue's cost target: all metrics for 100 images and one method against the cost of its maps (the zoom)
bench-faithfulness-speed: locset
	mkdir -p bench-results
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_faithfulness.py speed --method cam --n 100 | tee bench-results/faithfulness-speed.md

# 50 concurrent clients x 10 requests against `camloc serve` on this machine (batching on and off)
bench-serve: $(STAMP)
	mkdir -p bench-results && $(PY) benchmarks/bench_serve.py --out bench-results/serve.json | tee bench-results/serve.md

# one photo mapped by each method on the default model: docs/img/methods-cat.png and a table (docs/methods.md)
docs-method-photos: $(STAMP)
	$(PY) benchmarks/method_photos.py --image examples/cat.jpg --out docs/img/methods-cat.png

data:
	bash benchmarks/fetch_fashion_mnist.sh .cache/fashion-mnist

bench-loc: $(STAMP) data
	$(VENV)/bin/camloc bench localization --out bench-results/localization

bench-probe: $(STAMP) data
	$(PY) benchmarks/bench_probe.py --out bench-results/probe.json

bench-loc-quick: $(STAMP) data
	$(VENV)/bin/camloc bench localization --quick --out bench-results/localization-quick

clean:
	rm -rf $(VENV) results bench-results .pytest_cache
