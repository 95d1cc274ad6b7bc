# chaosproxy: one image for the three demo services (fake upstream, proxy, demo app).
#   docker compose up        (see docker-compose.yml; `make demo` needs no Docker at all)
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY chaosproxy ./chaosproxy
COPY proxy_addons ./proxy_addons
COPY demo_app ./demo_app
COPY scenarios ./scenarios
# Editable install: the shipped scenarios are read from /app/scenarios, so the folder
# docker-compose mounts there is what `--scenario NAME` and the dashboard's picker see.
RUN pip install -e . \
    && useradd --create-home --uid 10001 chaos
USER chaos

EXPOSE 5000 5001 8080 8475
CMD ["chaosproxy", "--help"]
