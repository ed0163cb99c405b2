#!/usr/bin/env bash
# Install dpot-hpc and its Python dependencies into the image's virtual environment.
# Shared by the Dockerfile and apptainer.def (%post), so one build exercises both recipes.
#   TORCH_SPEC: the torch requirement (default: the CUDA 12.x wheel index's torch==2.13.0)
#   TORCH_INDEX: pip index for torch ('' = PyPI); SRC: the project source folder
set -euo pipefail
SRC=${SRC:-/opt/dpot-hpc/src}
VENV=${VENV:-/opt/dpot-hpc/venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --no-cache-dir --upgrade pip
if [ -n "$TORCH_INDEX" ]; then
  "$VENV/bin/pip" install --no-cache-dir --index-url "$TORCH_INDEX" "$TORCH_SPEC"
else
  "$VENV/bin/pip" install --no-cache-dir "$TORCH_SPEC"
fi
# mpi4py is built against the image's MPICH (ABI-compatible with the host's MPICH/Cray MPICH/Intel MPI
# for the hybrid model); the mpich wheel is not installed in the image.
"$VENV/bin/pip" install --no-cache-dir --no-binary=mpi4py "$SRC"
"$VENV/bin/dpot-hpc" --version
