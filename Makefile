# Two commands do everything:  make reproduce  (set up + regenerate tables and figures)  and  make test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU-only machines get a CPU build of torch (an unpinned torch pulls a multi-GB CUDA build).
# GPU machines keep whatever torch pip chooses. The pin lives here, never in pyproject.toml.
# PyPI's Linux torch is the CUDA build: the PyTorch CPU index is added as an extra index when it answers
# (its 2.13.0+cpu then wins over PyPI's 2.13.0); set TORCH_CPU_INDEX= to use only your own indexes.
TORCH_CPU ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STUDY ?=
OUT ?= figures

.PHONY: venv reproduce test lint fetch-study clean-venv device-wheels

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if ! $(PY) -c 'import torch' 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch; \
	  elif [ -n "$(TORCH_CPU_INDEX)" ] && $(PY) -c 'import sys, urllib.request; \
	      urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=10)' "$(TORCH_CPU_INDEX)" 2>/dev/null; then \
	    $(PY) -m pip install -q $(TORCH_CPU) --extra-index-url $(TORCH_CPU_INDEX); \
	  else echo "CPU torch index not reachable: installing $(TORCH_CPU) from your indexes (CPU build only where they offer one)"; \
	    $(PY) -m pip install -q $(TORCH_CPU); fi; fi
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

reproduce: venv
	$(if $(strip $(OUT)),,$(error OUT is empty: give the folder the figures go to, e.g. OUT=figures))
	$(VENV)/bin/tta-energy summary --runs data
	$(PY) -m tta_energy.analysis.reproduce --data data --figures $(OUT) $(if $(STUDY),--study "$(STUDY)",)

# the suite in TEST_WORKERS processes, each test file whole in one of them (its tests share fixtures and files)
TEST_WORKERS ?= 2
test: venv
	$(VENV)/bin/ruff check src tests benchmarks inferences sanitycheck notebooks scripts
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks inferences sanitycheck notebooks scripts

# For users with internet access: the study's published data into a git-ignored folder.
fetch-study:
	mkdir -p data/external
	git clone --depth 1 https://github.com/rickgiantsteps/diffusionGenAudio-energy-consumption data/external/study

clean-venv:
	rm -rf $(VENV)

# Wheels for a lent GPU machine whose image (Python 3.12, x86-64) has torch, transformers, numpy, pandas, scipy,
# nvidia-ml-py, typer and rich but not the rest: downloaded here into .whl/ (git-ignored), carried with the
# working tree and installed there with --no-deps by scripts/device_env.sh, so their own dependencies are
# listed too (CodeCarbon's tracker; soundfile's cffi; CodeCarbon's login CLI, authlib, cryptography and
# questionary, is left out, and so are pycountry's translations, by scripts/slim_wheel.py: CodeCarbon only looks
# countries up by code; so that the wheels and the tracked data fit the 64 MiB a device call carries).
# scripts/gpu_preflight.py checks the result on the machine.
DEVICE_WHEELS ?= diffusers==0.42.1 importlib_metadata torchsde trampoline soxr soundfile cffi pycparser \
	torchao==0.17.0 codecarbon==3.3.2 arrow pydantic pydantic-core annotated-types typing-inspection \
	pycountry rapidfuzz
device-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform manylinux1_x86_64 -d .whl $(DEVICE_WHEELS)
	for wheel in .whl/pycountry-*.whl; do $(PYTHON) scripts/slim_wheel.py "$$wheel" pycountry/locales || exit 1; done
	@du -sh .whl
	@$(PYTHON) -c 'import pathlib, subprocess; \
	  tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], \
	    capture_output=True, check=True).stdout.split(b"\0"); \
	  size = sum(p.stat().st_size for p in map(pathlib.Path, map(bytes.decode, filter(None, tracked))) if p.is_file()); \
	  size += sum(p.stat().st_size for p in pathlib.Path(".whl").iterdir()); \
	  print(f"a device call carries {size / 2**20:.1f} MiB of its 64 MiB (the files git does not ignore, and .whl)")'
