# coterie node image. The base is a build argument so real users get the public Python image while
# machines without Docker Hub can build on a locally made Debian base (scripts/compose-base-image).
#   docker build -t coterie .                                   # FROM python:3.11-slim
#   podman build --build-arg BASE_IMAGE=localhost/coterie-base:bookworm -t coterie .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# iptables: the Jepsen-style `compose` backend cuts links with DROP rules inside the containers.
RUN if ! command -v iptables >/dev/null 2>&1; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
      && rm -rf /var/lib/apt/lists/*; \
    fi
RUN python3 -m venv /opt/coterie
ENV PATH=/opt/coterie/bin:$PATH PYTHONUNBUFFERED=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY node ./node
COPY client ./client
COPY proto ./proto
COPY jepsen-style ./jepsen-style
COPY bench ./bench
COPY src ./src
RUN pip install --no-cache-dir '.[server]'

VOLUME /data
EXPOSE 7001 7101
# Healthy: the node's standard gRPC health service says SERVING (it knows a leader and has applied
# what it knew to be committed); `coterie endpoint health` exits 1 otherwise. Set
# COTERIE_HEALTH_ENDPOINT to the node's --client-addr port as seen inside the container.
ENV COTERIE_HEALTH_ENDPOINT=127.0.0.1:7001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD coterie --endpoints "$COTERIE_HEALTH_ENDPOINT" --timeout 2 endpoint health || exit 1
ENTRYPOINT ["coterie"]
CMD ["--help"]
