#!/usr/bin/env bash
# Builds llama.cpp's own `llama-bench` and `rpc-server` from the llama.cpp vendored in the *installed*
# llama-cpp-python (its sdist's vendor/llama.cpp), so benchmarks compare localchat against the very same kernels.
#
#   benchmarks/build_llama_tools.sh            # -> .venv/llama-tools/bin/{llama-bench,rpc-server}
#   CMAKE_ARGS="-DGGML_CUDA=on" benchmarks/build_llama_tools.sh   # GPU: the flags the binding was built with
#
# Configured as the binding's own build configures it (scikit-build-core: Release; shared libraries; LLAMA_CURL off;
# GGML_NATIVE left at llama.cpp's default, as the binding leaves it) plus GGML_RPC=ON. Only the sdist comes from the
# package index (cached); nothing else is downloaded. Idempotent: nothing is rebuilt when the binaries exist for the
# same binding version and cmake arguments.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DEST="${LLAMA_TOOLS_DIR:-$ROOT/.venv/llama-tools}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/localchat/llama-tools"
EXTRA_CMAKE_ARGS="${CMAKE_ARGS:-}"

VER="$("$PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
STAMP_WANT="llama-cpp-python==$VER cmake:$EXTRA_CMAKE_ARGS"
if [[ -x "$DEST/bin/llama-bench" && -x "$DEST/bin/rpc-server" && -f "$DEST/STAMP" ]] \
        && [[ "$(cat "$DEST/STAMP")" == "$STAMP_WANT" ]]; then
    echo "llama-tools: up to date for llama-cpp-python $VER ($DEST/bin)"
    exit 0
fi

mkdir -p "$CACHE/sdist"
SDIST="$(ls "$CACHE/sdist"/llama_cpp_python-"$VER".tar.gz 2>/dev/null || true)"
if [[ -z "$SDIST" ]]; then
    echo "llama-tools: fetching the llama-cpp-python $VER sdist from the package index"
    "$PY" -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$VER" -d "$CACHE/sdist"
    SDIST="$CACHE/sdist/llama_cpp_python-$VER.tar.gz"
fi
[[ -f "$SDIST" ]] || { echo "llama-tools: no sdist at $SDIST" >&2; exit 1; }

SRC="$CACHE/src-$VER"
if [[ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]]; then
    rm -rf "$SRC" "$SRC.tmp"
    mkdir -p "$SRC.tmp"
    tar -xzf "$SDIST" -C "$SRC.tmp" --strip-components=1 --wildcards '*/vendor/llama.cpp/*'
    mv "$SRC.tmp" "$SRC"
fi
LLAMA="$SRC/vendor/llama.cpp"
# The tool targets' names in this llama.cpp (rpc-server is `ggml-rpc-server` in recent trees).
RPC_TARGET=rpc-server
grep -q 'set(TARGET ggml-rpc-server)' "$LLAMA/tools/rpc/CMakeLists.txt" 2>/dev/null && RPC_TARGET=ggml-rpc-server

BUILD="$CACHE/build-$VER"
JOBS="$(nproc 2>/dev/null || echo 2)"
# shellcheck disable=SC2086  # EXTRA_CMAKE_ARGS is a list of flags
cmake -S "$LLAMA" -B "$BUILD" -G "Unix Makefiles" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_CURL=OFF -DGGML_RPC=ON \
    '-DCMAKE_INSTALL_RPATH=$ORIGIN/../lib' -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
    $EXTRA_CMAKE_ARGS >"$CACHE/cmake-$VER.log"
echo "llama-tools: building llama-bench and $RPC_TARGET from llama-cpp-python $VER's llama.cpp ($JOBS jobs)"
cmake --build "$BUILD" --parallel "$JOBS" --target llama-bench "$RPC_TARGET"

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp/bin" "$DEST.tmp/lib"
cp -a "$BUILD/bin/llama-bench" "$BUILD/bin/$RPC_TARGET" "$DEST.tmp/bin/"
cp -a "$BUILD/bin/"*.so* "$DEST.tmp/lib/"
[[ "$RPC_TARGET" == rpc-server ]] || ln -s "$RPC_TARGET" "$DEST.tmp/bin/rpc-server"
echo "$STAMP_WANT" >"$DEST.tmp/STAMP"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
"$DEST/bin/llama-bench" --help >/dev/null
echo "llama-tools: $DEST/bin/llama-bench, $DEST/bin/rpc-server (llama-cpp-python $VER)"
