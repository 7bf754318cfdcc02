# The ossbss image: the `ossbss` command with every worker (streams, sink, migrate, collectors).
#   docker build -t ossbss:0.1.0 .
#   docker run --rm ossbss:0.1.0 --help
# docker-compose.yml builds it for the migrate, streams and sink services.

# --- build: install the package and its dependencies into a virtualenv ------------------------------
FROM python:3.11-slim AS build

# A compiler for any dependency without a binary wheel on this platform (none on x86_64 today);
# it stays in this stage only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/ossbss

WORKDIR /src
# Only what the package is built from: var/, .venv/ and tests never enter the image.
COPY pyproject.toml README.md ./
COPY models ./models
COPY collectors ./collectors
COPY streams ./streams
COPY assurance ./assurance
COPY rating ./rating
COPY billing ./billing
COPY warehouse ./warehouse
COPY ossbss ./ossbss
COPY bench ./bench
RUN /opt/ossbss/bin/pip install --no-cache-dir .

# --- runtime ----------------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/ossbss/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed uid/gid, so volumes and Kubernetes' runAsNonRoot can refer to it.
RUN groupadd --system --gid 10001 ossbss \
    && useradd --system --uid 10001 --gid ossbss --home-dir /var/lib/ossbss --create-home \
       --shell /usr/sbin/nologin ossbss

COPY --from=build /opt/ossbss /opt/ossbss

# var_dir (worker state, logs) is relative to here unless the config makes it absolute.
WORKDIR /var/lib/ossbss
USER 10001:10001

ENTRYPOINT ["ossbss"]
CMD ["--help"]
