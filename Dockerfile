# dpot-hpc: CUDA image. Build: docker build -t dpot-hpc:0.1.0 .
# Base images pinned by tag; versions of everything else are pinned in docker/install.sh and pyproject.toml.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive
# MPICH from the distribution: mpi4py is compiled against it (hybrid MPI model, see README)
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libmpich-dev mpich \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /opt/dpot-hpc/src/
COPY dpot_hpc /opt/dpot-hpc/src/dpot_hpc
COPY docker/install.sh /opt/dpot-hpc/install.sh
RUN TORCH_SPEC="${TORCH_SPEC}" TORCH_INDEX="${TORCH_INDEX}" /opt/dpot-hpc/install.sh

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 mpich libmpich12 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 dpot
COPY --from=build /opt/dpot-hpc/venv /opt/dpot-hpc/venv
ENV PATH=/opt/dpot-hpc/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 1000:1000
WORKDIR /home/dpot
ENTRYPOINT ["dpot-hpc"]
CMD ["--help"]
