# countersign: one image for the API, the counter worker, the mail sender and the
# one-shot commands (migrate, petition, rebuild, purge-pending). The default command
# serves the API on port 8080.
#
#   docker build -t countersign:latest .
#   docker run --rm countersign:latest countersign --help
#
# No BuildKit-only syntax, so the classic builder used by docker-compose 1.29 works too.
#
# Everything is pinned: the base image by digest (Python 3.12.14, slim, Debian trixie;
# the multi-architecture index), the dependencies by requirements.lock and the build
# backend by build-requirements.lock, both with hashes.

ARG PYTHON_IMAGE=python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea

# --- builder: install exactly what the locks pin, hashes checked -------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# The venv lives at the same path in both stages: its scripts have absolute shebangs.
RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, so editing the code does not re-download them.
# --only-binary: every pinned package has wheels for linux x86_64 and aarch64, and the
# slim image has no compiler; failing here beats a half-built sdist.
COPY requirements.lock build-requirements.lock ./
RUN pip install --require-hashes --only-binary=:all: -r requirements.lock
# The build backend (hatchling and what it needs) in a venv of its own: pinned like the
# rest, and left behind in this stage.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --only-binary=:all: \
        -r build-requirements.lock

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
# --no-build-isolation: the backend comes from the pinned venv above; pip would otherwise
# fetch whatever hatchling is newest.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && pip install --no-index --no-deps /tmp/dist/*.whl \
    && countersign --help > /dev/null

# --- runtime: the venv only; no compiler, no sources, not root -----------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Pango (and its fonts) for WeasyPrint: the console's delivery page as a PDF.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 countersign \
    && useradd --system --uid 10001 --gid countersign \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin countersign

# Root-owned and read-only for the service user: the image holds code, not data.
COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

EXPOSE 8080

# No HEALTHCHECK here: the probe differs by role (the API's /readyz on its port; the
# worker's and the mail sender's /readyz on their metrics ports, when set).
# docker-compose.yml and deploy/ give each its own.
CMD ["countersign", "api", "--host", "0.0.0.0", "--port", "8080"]
