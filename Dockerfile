# One image for every streamfit service and for the MLflow tracking server (mlflow and psycopg
# are dependencies of streamfit). Used by docker-compose.yml.
FROM python:3.11-slim
# libgomp1: LightGBM; gcc + libc6-dev: predictors build the served model's library (lleaves'
# object file is linked by gcc; treelite + tl2cgen compile C with it). Without one LightGBM serves.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/streamfit
# The dependencies exactly as uv.lock pins them (hashes checked), then streamfit itself.
COPY pyproject.toml uv.lock Makefile ./
RUN pip install --no-cache-dir "uv==$(sed -n 's/^UV_VERSION := //p' Makefile)" \
    && uv export --frozen --no-dev --extra dask --no-emit-project -o /tmp/requirements.txt \
    && uv pip install --system --no-cache --require-hashes -r /tmp/requirements.txt
COPY setup.py README.md ./
COPY src ./src
RUN uv pip install --system --no-cache --no-deps .
# Each service's own data directory: a volume of its own in docker-compose.yml.
WORKDIR /data
ENTRYPOINT ["streamfit"]
