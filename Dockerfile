# The backorder worker image (also carries the `backorder` CLI for setup jobs).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY config config
COPY domain domain
COPY workflows workflows
COPY activities activities
COPY embedded embedded
COPY db db
COPY runtime runtime
COPY worker.py starter.py ./
RUN pip install . && useradd --system --uid 10001 backorder

USER backorder
ENTRYPOINT ["backorder-worker"]
