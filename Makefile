# localchat: `make run` and `make test` do all set-up on a fresh machine (venv, llama-cpp-python compile,
# starter model, the Debian packages the GUI and privacy tests need).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.localchat-installed
# GPU builds: `make reinstall-llama LLAMA_CMAKE_ARGS="-DGGML_CUDA=on"` (see README).
LLAMA_CMAKE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test install model system-deps check bench bench-gui screenshots reinstall-llama package clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@echo "Installing localchat and its dependencies (the first llama-cpp-python build compiles llama.cpp: ~10 min)"
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || echo 2) $(PY) -m pip install -e '.[dev]'
	touch $@

install: $(STAMP)

model: install
	$(PY) -m localchat.core.models.starter

system-deps:
	@bash tests/system-deps.sh

run: install model
	$(PY) -m localchat

check: install
	$(PY) -m ruff check localchat tests benchmarks
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

test: install model system-deps check
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install model
	$(PY) benchmarks/stream_overhead.py

bench-gui: install model system-deps
	xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb $(PY) benchmarks/gui_responsiveness.py

screenshots: install model system-deps
	xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb $(PY) benchmarks/screenshots.py docs/screenshots

reinstall-llama: install
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --no-cache-dir --force-reinstall --no-deps \
		"$$($(PY) -c 'import importlib.metadata as m; print("llama-cpp-python==" + m.version("llama-cpp-python"))')"

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache

# Installers: the Linux onedir build plus a smoke test of the frozen app (see docs/PACKAGING.md).
package: install model
	$(PY) -m pip install --quiet 'pyinstaller>=6.10'
	bash packaging/linux/build.sh
