# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install the project, its plugins and the example plugin
# (editable, as a user installs them). Every pip call honours constraints.txt (CPU torch, numpy<2).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml constraints.txt Makefile plugins/spikefit-lava/pyproject.toml examples/custom_chip_plugin/pyproject.toml plugins/spikefit-xylo/pyproject.toml plugins/spikefit-speck/pyproject.toml plugins/spikefit-akida/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.13.0
	# Lava's dependencies at versions that work on Python 3.11, then lava-nc itself without its
	# Python<3.11 pin; spikefit-lava's import shim fixes the one 3.11 incompatibility at import time.
	$(PIP) install -c constraints.txt numpy scipy scikit-learn networkx asteval
	$(PIP) install --no-deps --ignore-requires-python lava-nc==0.10.0
	$(PIP) install -c constraints.txt -e . -e plugins/spikefit-lava -e examples/custom_chip_plugin
	# Test-only: the libraries whose NIR files the interop tests read (norse without its torchvision dep).
	$(PIP) install -c constraints.txt pytest snntorch==1.0.0 nirtorch
	$(PIP) install -c constraints.txt --no-deps norse==1.1.0
	$(PIP) install -c constraints.txt --no-deps neurobench==2.3.0
	# Xylo Audio 2 (spikefit-xylo): Rockpool's mapper and XyloSim, without samna. xylosim 0.1.3 is a C++
	# sdist built against this venv's pybind11; without `wheel` its build fails ("invalid command 'bdist_wheel'").
	$(PIP) install -c constraints.txt rockpool==3.1.0 bitstruct pybind11 wheel setuptools
	$(PIP) install -c constraints.txt --no-build-isolation xylosim==0.1.3
	$(PIP) install -c constraints.txt -e plugins/spikefit-xylo
	# Speck 2f: sinabs 3.1.3 without its dependencies (its metadata requires samna, which cannot be
	# installed; spikefit-speck's shim stands in for samna while sinabs is imported), then the packages
	# sinabs imports (torch and numpy are pinned above).
	$(PIP) install -c constraints.txt pbr matplotlib nirtorch
	$(PIP) install -c constraints.txt --no-deps sinabs==3.1.3
	$(PIP) install -c constraints.txt -e plugins/spikefit-speck
	# Akida (BrainChip AKD1000): akida 2.19.3 is a binary wheel whose only dependency is numpy (works
	# with numpy 1.26.4); spikefit-akida runs its mapper as the akida target's vendor check.
	$(PIP) install -c constraints.txt akida==2.19.3 -e plugins/spikefit-akida
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
