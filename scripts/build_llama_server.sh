#!/usr/bin/env bash
# Build llama.cpp's own HTTP server (`llama-server`, which serves Prometheus metrics with --metrics) from the
# llama.cpp sources vendored in the llama-cpp-python sdist of the version installed in the venv, with the same
# CMake flags as that library: both run the same ggml kernels, the ones `tokenomy calibrate --host` times.
#
#   scripts/build_llama_server.sh PYTHON OUTPUT [CMAKE_ARGS]
#
# The binary is built once per machine (like pip's wheel cache) in ~/.cache/tokenomy/llama-server/ under a name
# made of the version and the flags, and copied to OUTPUT. ~5-10 min on 2 cores the first time.
set -euo pipefail
python=${1:?usage: build_llama_server.sh PYTHON OUTPUT [CMAKE_ARGS]}
output=${2:?usage: build_llama_server.sh PYTHON OUTPUT [CMAKE_ARGS]}
cmake_args=${3:-}

command -v cmake >/dev/null || { echo "llama-server: cmake is needed to build it (apt-get install cmake)" >&2; exit 1; }
version=$("$python" -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
key=$(printf '%s %s' "$version" "$cmake_args" | sha1sum | cut -c1-12)
cache=${TOKENOMY_CACHE_DIR:-$HOME/.cache/tokenomy}/llama-server
cached=$cache/llama-server-$version-$key
if [ ! -x "$cached" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "building llama-server from llama-cpp-python $version's llama.cpp (~5-10 min on 2 cores)"
  start=$(date +%s)
  "$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
  tar xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
  src=$work/llama_cpp_python-$version/vendor/llama.cpp
  # shellcheck disable=SC2086  # cmake_args is a list of flags
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF $cmake_args >"$work/configure.log" \
    || { tail -30 "$work/configure.log" >&2; exit 1; }
  cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" \
    || { tail -40 "$work/build.log" >&2; exit 1; }
  mkdir -p "$cache"
  cp "$work/build/bin/llama-server" "$cached.tmp" && mv "$cached.tmp" "$cached"
  echo "llama-server built in $(( $(date +%s) - start )) s"
fi
cp "$cached" "$output"
