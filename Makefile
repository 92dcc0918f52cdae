# localchat: `make run` and `make test` do all set-up on a fresh machine (venv, llama-cpp-python compile,
# starter model, the Debian packages the GUI and privacy tests need).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.localchat-installed
# GPU builds: `make reinstall-llama LLAMA_CMAKE_ARGS="-DGGML_CUDA=on"` (see README); remembered for later installs.
LLAMA_ARGS_FILE := $(VENV)/llama-cmake-args
LLAMA_CMAKE_ARGS ?= $(shell cat $(LLAMA_ARGS_FILE) 2>/dev/null)
PYTEST_ARGS ?=
# llama-cpp-python is always compiled with llama.cpp's RPC backend (helper machines, docs/RPC.md). pip's wheel cache
# keys on the sdist, not on CMAKE_ARGS, so it would silently hand back a wheel built without it: the wheel is built
# once into a folder of our own keyed by version + cmake arguments, installed from there and checked.
LLAMA_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
LLAMA_BUILD_ARGS := $(strip -DGGML_RPC=on $(LLAMA_CMAKE_ARGS))
LLAMA_KEY := $(shell printf '%s|%s' '$(LLAMA_VERSION)' '$(LLAMA_BUILD_ARGS)' | sha256sum | cut -c1-16)
WHEEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/localchat/wheels
LLAMA_WHEELS := $(WHEEL_CACHE)/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_KEY)

.PHONY: run test install model system-deps check bench bench-gui bench-native llama-tools rpc-server screenshots \
	reinstall-llama package clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Build (once per version + cmake arguments), install, and prove the RPC backend is there; fail loudly if not.
define install_llama
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo "Compiling llama-cpp-python $(LLAMA_VERSION) with '$(LLAMA_BUILD_ARGS)' into $(LLAMA_WHEELS) (~10 min)"; \
		rm -rf $(LLAMA_WHEELS).tmp && mkdir -p $(LLAMA_WHEELS).tmp && \
		CMAKE_ARGS="$(LLAMA_BUILD_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || echo 2) \
			$(PY) -m pip wheel --no-deps --no-binary llama-cpp-python --no-cache-dir -w $(LLAMA_WHEELS).tmp \
			"llama-cpp-python==$(LLAMA_VERSION)" && \
		rm -rf $(LLAMA_WHEELS) && mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); \
	fi
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	@$(PY) -c 'import ctypes, importlib.util, pathlib, sys; \
	lib = pathlib.Path(importlib.util.find_spec("llama_cpp").submodule_search_locations[0]) / "lib"; \
	rpc = [p for p in lib.iterdir() if p.name.startswith("libggml-rpc.") or p.name == "ggml-rpc.dll"]; \
	ok = bool(rpc) and hasattr(ctypes.CDLL(str(rpc[0])), "ggml_backend_rpc_add_server"); \
	sys.exit(0 if ok else "llama-cpp-python was installed WITHOUT the RPC backend (no ggml-rpc library with " \
	"ggml_backend_rpc_add_server in " + str(lib) + "): delete $(LLAMA_WHEELS) and run make again")'
	@echo "llama-cpp-python $(LLAMA_VERSION) installed with the RPC backend ($(LLAMA_BUILD_ARGS))"
endef

$(LLAMA_STAMP): | $(PY)
	$(install_llama)
	rm -f $(VENV)/.llama-*
	printf '%s\n' '$(LLAMA_CMAKE_ARGS)' > $(LLAMA_ARGS_FILE)
	touch $@

$(STAMP): pyproject.toml $(LLAMA_STAMP)
	@echo "Installing localchat and its dependencies"
	$(PY) -m pip install -e '.[dev]'
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

test: install model system-deps check rpc-server
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install model
	$(PY) benchmarks/stream_overhead.py

bench-gui: install model system-deps
	xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb $(PY) benchmarks/gui_responsiveness.py

# llama.cpp's own llama-bench and rpc-server, built from the vendored llama.cpp of the installed binding (its sdist,
# cached) with the binding's build settings, into $(VENV)/llama-tools/bin; skipped when already built for this version.
llama-tools: install
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" PY=$(PY) bash benchmarks/build_llama_tools.sh

rpc-server: llama-tools
	@echo "rpc-server: $(VENV)/llama-tools/bin/rpc-server"

# localchat's decode and prompt processing next to llama-bench tg128/pp512, same threads, in one alternating run.
bench-native: llama-tools model
	$(PY) benchmarks/decode_loop.py --llama-bench $(VENV)/llama-tools/bin/llama-bench --tokens 128 --prompt 512

screenshots: install model system-deps
	xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb $(PY) benchmarks/screenshots.py docs/screenshots

# Rebuilds even when a wheel for these arguments is cached (e.g. after a driver/toolkit upgrade).
reinstall-llama: | $(PY)
	rm -rf $(LLAMA_WHEELS)
	rm -f $(LLAMA_STAMP)
	$(MAKE) install LLAMA_CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)'

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache

# Installers: the Linux onedir build plus a smoke test of the frozen app (see docs/PACKAGING.md).
package: install model
	$(PY) -m pip install --quiet 'pyinstaller>=6.10'
	bash packaging/linux/build.sh
