#!/usr/bin/env bash
# Install dpot-hpc and its Python dependencies into the image's virtual environment.
# Shared by the Dockerfile and apptainer.def (%post), so one build exercises both recipes.
#   TORCH_SPEC:  the torch requirement (default torch==2.13.0: on PyPI the CUDA 13.0 build for Linux x86_64)
#   TORCH_INDEX: pip index for torch ('' = PyPI); SRC: the project source folder
#   CONSTRAINTS: exact versions of everything else (default: constraints.txt next to this script)
# mpi4py is PyPI's binary wheel: it finds the MPI library at run time (MPICH ABI libmpi.so.12, or
# Open MPI's libmpi.so.40), so nothing is compiled and the image's MPICH can be replaced by the
# host's ABI-compatible MPI (see README, hybrid model).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${SRC:-/opt/dpot-hpc/src}
VENV=${VENV:-/opt/dpot-hpc/venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}
CONSTRAINTS=${CONSTRAINTS:-$HERE/constraints.txt}
python3 -m venv "$VENV"
pip=("$VENV/bin/pip" install --no-cache-dir --only-binary=:all: -c "$CONSTRAINTS")
"${pip[@]}" --upgrade pip
if [ -n "$TORCH_INDEX" ]; then
  "${pip[@]}" --extra-index-url "$TORCH_INDEX" "$TORCH_SPEC"
else
  "${pip[@]}" "$TORCH_SPEC"
fi
# the project itself is a source tree: build it (pure Python), its dependencies from wheels only
"$VENV/bin/pip" install --no-cache-dir --only-binary=:all: --no-binary=dpot-hpc -c "$CONSTRAINTS" "$SRC"
"$VENV/bin/dpot-hpc" --version
