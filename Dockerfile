# One image for Turnlog's three services; docker-compose.yml picks each one's command:
#   python -m turnlog.streams worker | python -m turnlog.api | python -m examples.tutor start
#   | turnlog provision
# The console (console/package-lock.json), built against the catalog's JSON Schema
FROM node:20-bookworm-slim AS console
WORKDIR /src
COPY schemas/jsonschema ./schemas/jsonschema
COPY console/package.json console/package-lock.json ./console/
RUN cd console && npm ci --no-audit --no-fund
COPY console ./console
RUN cd console && npm run build

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The offline voice of the agent gateway (the same packages as infra/install.sh):
# Festival with the HTS voice the offline recognizer hears best, and PortAudio.
RUN apt-get update \
 && apt-get install -y --no-install-recommends festival festvox-us-slt-hts libportaudio2 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The Python packages, pinned in pyproject.toml (runtime dependencies only).
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY agent_gateway ./agent_gateway
COPY streams ./streams
COPY projections ./projections
COPY api ./api
COPY infra ./infra
# the installed namespace: the public module and a link to each folder above
COPY turnlog ./turnlog
# the agent the platform runs: the tutor example (not part of the package; on PYTHONPATH)
COPY examples /opt/turnlog/examples
# the console the API serves at /
COPY --from=console /src/console/dist /opt/turnlog/console
RUN pip install ".[platform,offline,openai,deepgram]" \
 && useradd --system --uid 10001 --home-dir /var/lib/turnlog --create-home turnlog

USER turnlog
# State the services keep between restarts (compose mounts a volume here).
ENV TURNLOG_SPOOL_DIR=/var/lib/turnlog/spool \
    PYTHONPATH=/opt/turnlog \
    TURNLOG_GATEWAY_METRICS_DIR=/var/lib/turnlog/gateway-metrics \
    TURNLOG_STREAMS_DATA_DIR=/var/lib/turnlog/streams \
    TURNLOG_API_CONSOLE_DIR=/opt/turnlog/console
WORKDIR /var/lib/turnlog
CMD ["python", "-m", "turnlog.api"]
