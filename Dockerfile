# One Herald replica. `docker compose up --scale api=3` runs several behind nginx.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin herald

WORKDIR /src

# Optional extras, comma-separated: `docker build --build-arg EXTRAS=bench .` adds what
# `herald bench` needs (e.g. `herald bench --attach PORTS` against running replicas).
ARG EXTRAS=""

# Dependencies first, from pyproject.toml alone, so editing the code reuses this layer.
COPY pyproject.toml ./
RUN EXTRAS="$EXTRAS" python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [e for e in os.environ['EXTRAS'].split(',') if e]; \
print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The app itself (no dev extras; benchmarks/ ships in the wheel, its dependencies are the bench
# extra). The source tree is not needed once installed.
COPY README.md ./
COPY api ./api
COPY broker ./broker
COPY benchmarks ./benchmarks
RUN pip install . && rm -rf /src

WORKDIR /home/herald
USER herald

EXPOSE 8000

# slim has no curl; urlopen raises (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]

CMD ["herald", "serve", "--host", "0.0.0.0", "--port", "8000"]
