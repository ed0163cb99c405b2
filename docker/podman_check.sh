#!/usr/bin/env bash
# Build the Dockerfile with podman on a machine with no registry (Debian 12, root), then run
# `dpot-hpc --version`, `dpot-hpc selfcheck` (its compile check included), a two-rank MPI hello and
# the local relaunch command of `dpot-hpc run` inside the image, and what a container capped at one
# CPU (--cpus 1) runs: one rank of one thread.
#
#   docker/podman_check.sh [TAG]         (default TAG: localhost/dpot-hpc:check)
#
# Needs: podman, runc, debootstrap (apt-get install podman runc debootstrap). The CUDA base image
# cannot be pulled here, so the base is a debootstrapped Debian bookworm (minbase) imported into
# podman, and torch is the CPU wheel of the same version (TORCH_WHEEL, a local file). Everything
# else is the Dockerfile as shipped. Podman flags: runc with cgroupfs (no systemd), explicit ulimits
# and the host network (no CNI/netavark setup needed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAG=${1:-localhost/dpot-hpc:check}
BASE=${BASE:-localhost/debian-minbase:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [[ -z "${TORCH_WHEEL:-}" ]]; then wheels=(/opt/wheels/torch-2.13.0+cpu-cp311-*.whl); TORCH_WHEEL=${wheels[0]}; fi
CA=${CA:-/etc/ssl/certs/ca-certificates.crt}
PODMAN=(podman --runtime runc --cgroup-manager cgroupfs)
RUNOPTS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --network host)

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }
[[ -n "$TORCH_WHEEL" && -f "$TORCH_WHEEL" ]] || { echo "podman_check: set TORCH_WHEEL to a local torch wheel for the image's Python (3.11)"; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! "${PODMAN[@]}" image exists "$BASE"; then
  step "base image $BASE: debootstrap --variant=minbase bookworm"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" >/dev/null
  tar -C "$work/rootfs" -c . | "${PODMAN[@]}" import - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
fi

# pip inside the build trusts the host's CA bundle (this network re-signs TLS); the wheel folder is
# mounted read-only. Neither ends up in the image.
printf '[global]\ncert = /run/host-ca.crt\n' > "$work/pip.conf"
step "podman build $TAG (base $BASE, torch $(basename "$TORCH_WHEEL"))"
"${PODMAN[@]}" build "${RUNOPTS[@]}" -t "$TAG" \
  --build-arg CUDA_IMAGE="$BASE" \
  --build-arg TORCH_SPEC="/wheels/$(basename "$TORCH_WHEEL")" \
  -v "$(dirname "$TORCH_WHEEL"):/wheels:ro" -v "$CA:/run/host-ca.crt:ro" -v "$work/pip.conf:/etc/pip.conf:ro" \
  -f "$ROOT/Dockerfile" "$ROOT"

step "image size"
"${PODMAN[@]}" image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB\n", $1 / 1e6}'
step "dpot-hpc --version"
"${PODMAN[@]}" run --rm "${RUNOPTS[@]}" "$TAG" --version
step "user inside the image"
"${PODMAN[@]}" run --rm "${RUNOPTS[@]}" --entrypoint id "$TAG"
step "dpot-hpc selfcheck"
"${PODMAN[@]}" run --rm "${RUNOPTS[@]}" "$TAG" selfcheck
step "mpiexec -n 2 (the image's MPICH, loaded by mpi4py): rank 0 gathers the ranks"
"${PODMAN[@]}" run --rm "${RUNOPTS[@]}" --entrypoint mpiexec "$TAG" -n 2 python3 -c '
from mpi4py import MPI
ranks = MPI.COMM_WORLD.gather(MPI.COMM_WORLD.Get_rank())
if ranks:
    print(f"mpi: ranks {ranks} answered a gather; {MPI.Get_library_version().splitlines()[0]}")'
step "dpot-hpc run without a launcher: one rank per core through the image's mpiexec"
"${PODMAN[@]}" run --rm "${RUNOPTS[@]}" --entrypoint python3 "$TAG" -c '
from dpot_hpc.cluster.launch import relaunch_command
from dpot_hpc.config import load_config
print("relaunch:", " ".join(relaunch_command(load_config(None, ["run.processes=2"]), ["run"])))'
step "a container capped at one CPU (--cpus 1): one rank, one thread"
"${PODMAN[@]}" run --rm "${RUNOPTS[@]}" --cpus 1 --entrypoint python3 "$TAG" -c '
from dpot_hpc.cluster.launch import relaunch_command
from dpot_hpc.cluster.mpi import SerialComm, bind
from dpot_hpc.config import load_config
cfg = load_config(None, [])
cmd = relaunch_command(cfg, ["run"])
print(f"capped: relaunch {cmd}, {bind(SerialComm(), cfg).threads} thread(s)")'
step "podman_check: all passed"
