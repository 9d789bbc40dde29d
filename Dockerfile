# The image the gpu-docker and gpu-kubernetes deployments in prefect.yaml run (docs/scaling.md):
#   docker build -t ganpipe .
# The code lives in /opt/ganpipe, the working directory those deployments' pull step moves to.
# torch/torchvision are PyPI's default Linux wheels, which bundle CUDA (the GPU hosts need only the
# NVIDIA driver and container toolkit); pinned to the versions scripts/install.sh installs.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=False
# git: the run's commit in MLflow (without it the run records "unknown").
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ganpipe
RUN pip install "torch==2.14.1" "torchvision==0.29.1"
COPY pyproject.toml README.md ./
COPY ganmodels ganmodels
COPY pipelines pipelines
RUN pip install ".[pipeline]"
COPY params.yaml dvc.yaml prefect.yaml ./
