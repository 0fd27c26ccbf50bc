# make install: everything the tool and its tests need (Debian packages, a venv with the Python deps).
# make test:    the lint gate and the test suite (tiers 1 and 2; run as root: tier 2 makes namespaces).
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PACKAGES := iptables iproute2 util-linux python3-venv

.PHONY: install test
install:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt

test:
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests
