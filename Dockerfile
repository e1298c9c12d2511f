# CPU image (default) and GPU image (target "gpu": CUDA torch + TensorRT from NVIDIA's index).
# The models are installed at image build time from the committed, hash-pinned weights.
# libgomp1: LightGBM (the fraud booster) links OpenMP, which slim images lack.
FROM python:3.11-slim AS cpu
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 RISKSTREAM_CACHE_DIR=/var/cache/riskstream
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY stream stream
COPY models models
COPY schemas schemas
RUN pip install -e . && python -m models build
ENTRYPOINT ["riskstream"]
CMD ["worker"]

FROM python:3.11-slim AS gpu
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 RISKSTREAM_CACHE_DIR=/var/cache/riskstream
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN pip install "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY stream stream
COPY models models
COPY schemas schemas
RUN pip install --extra-index-url https://pypi.nvidia.com -e ".[gpu]" && python -m models build
ENTRYPOINT ["riskstream"]
CMD ["worker"]
