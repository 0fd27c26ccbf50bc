# ssd as a container: docker build -t ssd . ; run it as the README says (--privileged --net=host,
# the Docker socket and /var/run/docker/netns mounted with rslave propagation).
# BASE and PIP_INDEX_URL default to the public sources. Without a registry or network (the lab),
# pass a base image that already has python3, python3-venv and iptables (apt-get is then
# skipped) and a local package index: lab/swarmlab image does exactly that.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ARG PIP_INDEX_URL=https://pypi.org/simple
RUN if command -v iptables-save >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      echo "base image has python3, venv and iptables"; \
    else \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv iptables \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY requirements.txt /opt/ssd/requirements.txt
RUN python3 -m venv /opt/ssd/venv \
 && /opt/ssd/venv/bin/pip install --no-cache-dir --index-url "${PIP_INDEX_URL}" -r /opt/ssd/requirements.txt
COPY ssd.py /opt/ssd/ssd.py
ENTRYPOINT ["/opt/ssd/venv/bin/python", "/opt/ssd/ssd.py"]
