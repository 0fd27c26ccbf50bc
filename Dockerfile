# ssd as a container: docker build -t ssd . ; run it as the README says (--privileged --net=host,
# the Docker socket and /var/run/docker/netns mounted with rslave propagation).
# BASE and PIP_INDEX_URL default to the public sources (Debian's image, pip's default index).
# Without a registry or network (the lab), pass a base image that already has python3, python3-venv and iptables (apt-get is then
# skipped) and a local package index: lab/swarmlab image does exactly that.
# The base carries the iptables ssd runs: an iptables-nft older than the host's may not read the
# host's tables (ssd then says so), so the default is a current Debian stable.
ARG BASE=debian:trixie-slim
FROM ${BASE}
# Empty: pip's own default index. The lab passes a local one.
ARG PIP_INDEX_URL=
RUN if command -v iptables-save >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      echo "base image has python3, venv and iptables"; \
    else \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv iptables \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY requirements.txt /opt/ssd/requirements.txt
RUN python3 -m venv /opt/ssd/venv \
 && /opt/ssd/venv/bin/pip install --no-cache-dir ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} \
      -r /opt/ssd/requirements.txt
COPY ssd.py /opt/ssd/ssd.py
# Compiled once here and run as a module: a script is compiled on every run (about a second in
# an emulated VM), a module's bytecode is cached.
RUN /opt/ssd/venv/bin/python -m compileall -q /opt/ssd/ssd.py
ENV PYTHONPATH=/opt/ssd
ENTRYPOINT ["/opt/ssd/venv/bin/python", "-m", "ssd"]
