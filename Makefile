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
SCATTER_STAMP := $(VENV)/.scatter-stamp
EXT_STAMP := $(VENV)/.ext-stamp
EXT_SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu)
DEPS_KEY := $(TORCH) $(SPCONV) $(OPEN3D) $(TORCH_SCATTER)
DEPS_KEY_FILE := $(VENV)/.deps-key

CUDA_VENV := .venv-cuda
CUDA_TORCH ?= torch==2.14.1
CUDA_ARCHS ?= 8.0;9.0+PTX

# The key file changes only when the requested versions do (e.g. TORCH=... for a GPU machine),
# which makes the dependency stamp out of date exactly then.
$(shell mkdir -p $(VENV) && (echo "$(DEPS_KEY)" | cmp -s - $(DEPS_KEY_FILE) || \
  echo "$(DEPS_KEY)" > $(DEPS_KEY_FILE)))

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

# Debian packages: libusb-1.0-0 for `import open3d`; libvulkan1 and mesa-vulkan-drivers (a
# software Vulkan driver) for Open3D's OffscreenRenderer, which headless renders use.
SYSTEM_PACKAGES := libusb-1.0-0 libvulkan1 mesa-vulkan-drivers

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $$missing >/dev/null; }; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements.txt Makefile $(DEPS_KEY_FILE) | $(BIN)/python system-packages
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -r requirements.txt $(SPCONV) $(OPEN3D)
	touch $@

# torch-scatter compiles against the installed torch: rebuilt from source (never a cached wheel
# built for another torch) only when the requested versions change.
$(SCATTER_STAMP): $(DEPS_KEY_FILE) | $(DEPS_STAMP)
	$(BIN)/pip install -q --no-build-isolation --no-cache-dir --force-reinstall --no-deps \
	  $(TORCH_SCATTER)
	touch $@

# CUDA_HOME is set from the real toolkit when one exists (torch's own guess follows the nvcc on
# PATH, which may be a wrapper outside the toolkit); with a CPU torch it changes nothing.
$(EXT_STAMP): $(DEPS_STAMP) $(SCATTER_STAMP) $(EXT_SOURCES)
	cuda_home=$$(tools/find_cuda_home.sh 2>/dev/null); \
	  if [ -n "$$cuda_home" ]; then export CUDA_HOME="$$cuda_home"; fi; \
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
