# The gateway image used by docker-compose.yml.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VERDICT_DATA_DIR=/data VERDICT_HOST=0.0.0.0 VERDICT_PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policy ./policy
COPY crypto ./crypto
COPY audit ./audit
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data verdict \
    && mkdir -p /data && chown verdict /data && chmod 700 /data

USER verdict
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["verdict", "serve"]
