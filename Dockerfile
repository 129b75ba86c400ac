# countersign: one image for the API, the counter worker, the mail sender and the
# one-shot commands (migrate, petition, rebuild, purge-pending). The default command
# serves the API on port 8080.
#
#   docker build -t countersign:latest .
#   docker run --rm countersign:latest countersign --help
#
# No BuildKit-only syntax, so the classic builder used by docker-compose 1.29 works too.

ARG PYTHON_VERSION=3.12

# --- builder: install exactly what requirements.lock pins, hashes checked ----------
FROM python:${PYTHON_VERSION}-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# The venv lives at the same path in both stages: its scripts have absolute shebangs.
RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, so editing the code does not re-download them.
# --only-binary: every pinned package has wheels for linux x86_64 and aarch64, and the
# slim image has no compiler; failing here beats a half-built sdist.
COPY requirements.lock ./
RUN pip install --require-hashes --only-binary=:all: -r requirements.lock

# The project itself, without dependencies (all of them come from the lock above).
# README.md is needed by the build: pyproject.toml names it as the readme.
COPY pyproject.toml README.md ./
COPY sql ./sql
COPY countersign_core ./countersign_core
COPY countersign_domain ./countersign_domain
COPY countersign ./countersign
COPY petition_api ./petition_api
COPY counter_worker ./counter_worker
COPY mail_sender ./mail_sender
RUN pip install --no-deps . \
    && countersign --help > /dev/null

# --- runtime: the venv only; no compiler, no sources, not root -----------------------
FROM python:${PYTHON_VERSION}-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 countersign \
    && useradd --system --uid 10001 --gid countersign \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin countersign

# Root-owned and read-only for the service user: the image holds code, not data.
COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

EXPOSE 8080

# No HEALTHCHECK here: the same image runs the worker, which serves no HTTP.
# docker-compose.yml gives the API a healthcheck on /readyz.
CMD ["countersign", "api", "--host", "0.0.0.0", "--port", "8080"]
