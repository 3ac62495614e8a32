# MobKit services: one image, one `mobkit` entry point (`mobkit serve SERVICE ...`).
# Build: docker build -t mobkit:dev .    Run: see docker-compose.yml and deploy/k8s/.
# The whole suite with its packaged example team, etcd included, in one container:
#   docker run --rm -p 7700:7700 mobkit:dev up --listen 0.0.0.0:7700

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/ services/
COPY clients/python/ clients/python/
# A wheel (not the source tree) goes into the final image.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MOBKIT_DATA_DIR=/var/lib/mobkit \
    MOBKIT_LOG_FORMAT=json
RUN groupadd --system --gid 10001 mobkit \
 && useradd --system --uid 10001 --gid mobkit --home-dir /var/lib/mobkit --create-home \
      --shell /usr/sbin/nologin mobkit
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/mobkit
# 7700 `mobkit up` and the orchestrator, 7701-7706 providers (by convention of
# docker-compose.yml), 9100 /metrics
EXPOSE 7700-7706 9100
ENTRYPOINT ["mobkit"]
CMD ["--help"]
