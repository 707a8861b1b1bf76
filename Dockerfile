# One image for every streamfit service and for the MLflow tracking server (mlflow and psycopg
# are dependencies of streamfit). Used by docker-compose.yml.
FROM python:3.11-slim
# libgomp1: LightGBM; gcc + libc6-dev: predictors build the served model's library (lleaves'
# object file is linked by gcc; treelite + tl2cgen compile C with it). Without one LightGBM serves.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/streamfit
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .
# Each service's own data directory: a volume of its own in docker-compose.yml.
WORKDIR /data
ENTRYPOINT ["streamfit"]
