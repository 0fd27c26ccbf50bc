# ssd as a container: docker build -t ssd . ; run it as the README says (the three capabilities
# or --privileged, --net=host, the Docker socket and /var/run/docker/netns mounted rslave).
# BASE and PIP_INDEX_URL default to the public sources (Debian's image, pip's default index).
# Without a registry or network (the lab), pass a base image that already has python3,
# python3-venv and iptables (apt-get is then skipped) and a local package index: lab/swarmlab
# image does exactly that, from the same Debian suite as BASE's default (it reads it here).
# The base carries the iptables ssd runs: an iptables-nft older than the host's may not read the
# host's tables (ssd then says so), so the default is Debian's current stable, whose iptables is
# the newest Debian stable ships.
ARG BASE=debian:trixie-slim

# --- build: a venv with ssd's dependencies (pip and venv stay in this stage) ---
FROM ${BASE} AS build
ARG PIP_INDEX_URL=
RUN if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      echo "base image has python3 and venv"; \
    else \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY requirements.txt /opt/ssd/requirements.txt
RUN python3 -m venv /opt/ssd/venv \
 && /opt/ssd/venv/bin/pip install --no-cache-dir ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} \
      -r /opt/ssd/requirements.txt \
 && /opt/ssd/venv/bin/pip uninstall -q -y pip \
 && rm -rf /opt/ssd/venv/bin/activate* /opt/ssd/requirements.txt
COPY ssd /opt/ssd/ssd
# Compiled once here and run as a module: a script is compiled on every run (about a second in
# an emulated VM), a module's bytecode is cached.
RUN /opt/ssd/venv/bin/python -m compileall -q /opt/ssd

# --- the image: python3 and iptables, the venv; no pip, no apt lists, no build tools ---
FROM ${BASE}
RUN if command -v python3 >/dev/null && command -v iptables-save >/dev/null; then \
      echo "base image has python3 and iptables"; \
    else \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 iptables \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=build /opt/ssd /opt/ssd
ENV PYTHONPATH=/opt/ssd
ENTRYPOINT ["/opt/ssd/venv/bin/python", "-m", "ssd"]
