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
ENTRYPOINT ["coterie"]
CMD ["--help"]
