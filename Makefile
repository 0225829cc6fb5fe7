# Set-up and entry points. Each target creates the project-local environment it needs, installs
# dependencies in the order they require (torch first, torch-scatter against it, then pcseg with
# its extension) and skips every step whose inputs did not change.
#
# GPU machine:  make test TORCH=torch==2.14.1 SPCONV=spconv-cu126 OPEN3D=open3d

PYTHON ?= python3
TORCH ?= torch==2.13.0
SPCONV ?= spconv==2.3.8
OPEN3D ?= open3d-cpu==0.20.0
TORCH_SCATTER ?= torch-scatter==2.1.2
MAX_JOBS ?= 2
export MAX_JOBS

VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-stamp
EXT_STAMP := $(VENV)/.ext-stamp
EXT_SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cuda/*.cu)
DEPS_KEY := $(TORCH) $(SPCONV) $(OPEN3D) $(TORCH_SCATTER)

CUDA_VENV := .venv-cuda
CUDA_TORCH ?= torch==2.14.1
CUDA_ARCHS ?= 8.0;9.0+PTX

# A missing built module forces a rebuild even when the stamp is newer than the sources.
ifeq ($(wildcard pcseg/_C*.so),)
.PHONY: $(EXT_STAMP)
endif

.PHONY: test demo lint bench cuda-check setup system-packages clean

test: $(EXT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

demo: $(EXT_STAMP)
	$(BIN)/python tools/demo.py --out work_dirs/demo

bench: $(EXT_STAMP)
	$(BIN)/python tools/benchmark.py --json work_dirs/benchmark.json

lint: $(EXT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

setup: $(EXT_STAMP)

system-packages:
	@if ! ldconfig -p | grep -q libusb-1.0.so.0; then \
	  echo "installing libusb-1.0-0 (needed by open3d)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q libusb-1.0-0 >/dev/null; }; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements.txt Makefile | $(BIN)/python system-packages
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -r requirements.txt $(SPCONV) $(OPEN3D)
	$(BIN)/pip install -q --no-build-isolation $(TORCH_SCATTER)
	echo "$(DEPS_KEY)" > $@

$(EXT_STAMP): $(DEPS_STAMP) $(EXT_SOURCES)
	$(BIN)/pip install -q --no-build-isolation --no-deps -e .
	touch $@

# Compile the CUDA kernels without a GPU: a CUDA build of torch in its own environment, the
# machine's CUDA toolkit, and an import of the built module (a missing symbol still links).
cuda-check:
	@test -x $(CUDA_VENV)/bin/python || $(PYTHON) -m venv $(CUDA_VENV)
	@$(CUDA_VENV)/bin/python -c "import torch" 2>/dev/null || \
	  $(CUDA_VENV)/bin/pip install -q $(CUDA_TORCH) numpy ninja setuptools wheel
	CUDA_HOME=$$(tools/find_cuda_home.sh) PCSEG_WITH_CUDA=1 TORCH_CUDA_ARCH_LIST="$(CUDA_ARCHS)" \
	  $(CUDA_VENV)/bin/python setup.py -q build_ext --build-lib build-cuda/lib --build-temp build-cuda/tmp
	$(CUDA_VENV)/bin/python tools/check_cuda_build.py build-cuda/lib

clean:
	rm -rf build build-cuda pcseg/_C*.so *.egg-info $(EXT_STAMP)
