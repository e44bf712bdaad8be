# Production image for every mkt-x process: the API (default), the worker and migrations
# (`docker compose` runs `mkt-x worker` / `mkt-x migrate` from the same image).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    MKTX_ENV=production

RUN useradd --create-home --uid 10001 --user-group mktx
WORKDIR /app

COPY pyproject.toml alembic.ini worker.py ./
COPY mktx ./mktx
COPY api ./api
COPY models ./models
COPY services ./services
COPY workflows ./workflows
COPY activities ./activities
COPY integrations ./integrations
COPY sandbox ./sandbox
COPY migrations ./migrations
RUN pip install . && chown -R mktx:mktx /app

USER mktx
EXPOSE 5000
CMD ["mkt-x", "api", "--host", "0.0.0.0"]
