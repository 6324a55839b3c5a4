# Bandmate's server image: `bandmate serve` on port 8000 with the shipped default checkpoint.
#
#   docker build -t bandmate .                          # CPU: onnxruntime on Debian slim
#   docker build -t bandmate:gpu --build-arg VARIANT=gpu .   # onnxruntime-gpu on a CUDA base
#   docker run -p 8000:8000 -e BANDMATE_TOKEN=secret bandmate
#
# The server binds 0.0.0.0 inside the container, and beyond loopback it refuses to start
# without a token, so BANDMATE_TOKEN must be set. GPU: `docker run --gpus all ...`; the
# default backend (auto) then takes onnxruntime's CUDA provider.
# The same set-up as `make demo`: scripts/system-deps.sh (runtime packages only) and a pip
# install of the project; the tests' extras (torch, chromium) stay out of the image.

ARG VARIANT=cpu

FROM python:3.11-slim-bookworm AS base-cpu
ENV ONNXRUNTIME_PACKAGE=onnxruntime

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS base-gpu
ENV ONNXRUNTIME_PACKAGE=onnxruntime-gpu
# Ubuntu 24.04's Python is 3.12, within the project's >=3.11. Versions are left to the
# base image's release, as scripts/system-deps.sh does for the Debian packages.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python

# hadolint ignore=DL3006
FROM base-${VARIANT}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /opt/bandmate
COPY scripts/system-deps.sh scripts/system-deps.sh
RUN scripts/system-deps.sh --runtime && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY models models
COPY engine engine
COPY bci bci
COPY server server
COPY clients clients
COPY benchmarks benchmarks
# The CPU wheel of onnxruntime comes with the project; the GPU variant swaps it for
# onnxruntime-gpu, which provides the same module with the CUDA provider.
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir . \
    && if [ "$ONNXRUNTIME_PACKAGE" != onnxruntime ]; then \
        pip uninstall -y onnxruntime && pip install --no-cache-dir "$ONNXRUNTIME_PACKAGE>=1.18,<2"; \
    fi

RUN useradd --create-home --uid 10001 bandmate
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["bandmate", "serve", "--host", "0.0.0.0", "--port", "8000"]
