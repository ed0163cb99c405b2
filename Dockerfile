# dpot-hpc: CUDA image. Build: docker build -t dpot-hpc:0.1.0 .
# The base image is pinned by tag; everything else by version in docker/install.sh and pyproject.toml.
# torch comes from PyPI: its Linux x86_64 wheel for 2.13.0 is the CUDA 13.0 build and brings the CUDA
# libraries it needs as wheels (host driver >= 580). The base image adds NVIDIA's container settings
# and the forward-compatibility libraries. Local builds without a registry: docker/podman_check.sh.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY docker/install.sh docker/constraints.txt /opt/dpot-hpc/
COPY pyproject.toml README.md /opt/dpot-hpc/src/
COPY dpot_hpc /opt/dpot-hpc/src/dpot_hpc
RUN TORCH_SPEC="${TORCH_SPEC}" TORCH_INDEX="${TORCH_INDEX}" /opt/dpot-hpc/install.sh

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# MPICH 4 from the distribution and its mpiexec. mpi4py's wheel links the MPICH ABI's libmpi.so.12,
# which Debian/Ubuntu name libmpich.so.12: the link makes it findable. A host MPI with the same ABI
# earlier on LD_LIBRARY_PATH takes its place (hybrid MPI model, see README).
# g++, Python's headers and openssl (which hashes inductor's precompiled headers): torch.compile builds
# the potential's training step with them (C++ kernels on a CPU, Triton's launchers on a GPU); without
# them it trains eagerly, ~2x slower per CPU step. They add ~390 MB to the image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-dev g++ openssl mpich libmpich12 \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf libmpich.so.12 "/usr/lib/$(uname -m)-linux-gnu/libmpi.so.12" && ldconfig \
 && (userdel --remove ubuntu 2>/dev/null || true) \
 && useradd --create-home --uid 1000 dpot
COPY --from=build /opt/dpot-hpc/venv /opt/dpot-hpc/venv
# `dpot-hpc run` without a launcher starts one rank per core through the mpiexec next to its Python:
# the image's MPICH (docker run ... run uses every core, as on a workstation). A script, not a link:
# Hydra looks for its proxy next to the path it was started by.
RUN printf '#!/bin/sh\nexec /usr/bin/mpiexec "$@"\n' > /opt/dpot-hpc/venv/bin/mpiexec \
 && chmod 755 /opt/dpot-hpc/venv/bin/mpiexec
ENV PATH=/opt/dpot-hpc/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
WORKDIR /home/dpot
ENTRYPOINT ["dpot-hpc"]
CMD ["--help"]
