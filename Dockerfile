# syntax=docker/dockerfile:1
# The RetroSearch image: the `retrosearch` CLI and everything it runs (query service, Ray ingestion,
# trainers), installed as scripts/env.sh installs it: a venv with pyproject.toml's dependencies
# (torch pinned there), the [tool.retrosearch] no-deps packages, then the project. No credentials:
# OpenSearch's come from the environment at run time (the Helm chart's Secret).
#
#   docker build -t retrosearch:0.1.0 .                                   # CPU torch
#   docker build -t retrosearch-cuda:0.1.0 --build-arg TORCH_VARIANT=cuda .   # CUDA torch (PyPI's build)
#
# TORCH_VARIANT=cpu installs the pinned torch from PyTorch's CPU index first (PyPI's Linux wheel is
# the multi-GB CUDA build); cuda takes it from PyPI with the rest and swaps faiss-cpu for the gpu
# extra's faiss-gpu-cu12 (both ship the `faiss` module). The host needs only the driver.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY scripts/requirements.py scripts/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --upgrade "pip>=24" "setuptools>=69" wheel \
 && python scripts/requirements.py pyproject.toml > /tmp/requirements.txt \
 && python scripts/requirements.py pyproject.toml --no-deps > /tmp/no-deps.txt \
 && if [ "$TORCH_VARIANT" = cpu ]; then \
      /opt/venv/bin/python -m pip install --index-url "$TORCH_CPU_INDEX" "$(grep '^torch==' /tmp/requirements.txt)"; \
    elif [ "$TORCH_VARIANT" != cuda ]; then \
      echo "TORCH_VARIANT must be cpu or cuda, not $TORCH_VARIANT" >&2; exit 1; \
    fi \
 && /opt/venv/bin/python -m pip install -r /tmp/requirements.txt \
 && /opt/venv/bin/python -m pip install --no-deps -r /tmp/no-deps.txt \
 && if [ "$TORCH_VARIANT" = cuda ]; then \
      /opt/venv/bin/python -m pip uninstall -y faiss-cpu \
      && /opt/venv/bin/python -m pip install "$(python scripts/requirements.py pyproject.toml --extra gpu)"; \
    fi
COPY retrosearch retrosearch
COPY core core
COPY plugin plugin
COPY local local
COPY benchmarks benchmarks
COPY ingest ingest
COPY trainers trainers
RUN /opt/venv/bin/python -m pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/python -m pip check

FROM python:${PYTHON_VERSION}-slim
# wget: KubeRay's default probes of Ray pods call it; bash: KubeRay starts Ray through it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget bash ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 retrosearch \
 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash retrosearch
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAY_AUTH_MODE=disabled
USER 1000:1000
WORKDIR /home/retrosearch
EXPOSE 8000
ENTRYPOINT ["retrosearch"]
CMD ["--help"]
