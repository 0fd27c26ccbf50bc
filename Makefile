# make install:   everything the tool and its tests need (Debian packages, a venv with the Python deps;
#                 chromium: tests/test_html.py renders the --html page in a real, headless browser).
# make test:      the lint gate and tiers 1 and 2, then the lab's CI selection (tier 3, marker ci, on
#                 the newest engine: the healthy swarm, read-only, two real faults, the real stack,
#                 --probe with its faults).
#                 Run as root: tier 2 makes namespaces, the lab boots VMs.
# make lab:       every lab test on the newest engine but the soak and the real events (what make
#                 test ran until the lab machine got ten times slower than CI's budget assumed).
# make test-fast: the lint gate and tiers 1 and 2 only (about five minutes).
# make dist:      dist/ssd, ssd as one executable file (a zip application with its pure-Python
#                 dependencies inside): copy it to a node with python3 >= 3.11, run it as root.
# make docs:      docs/checks.md's table of check ids and docs/ssd.1 from the code.
# make lab-image: only the lab tests that need the ssd image (container form, gossip-consistency).
# make bench-scale: the swarm-wide coordinator at 10 to 5,000 nodes, a 1,000-run watch.
# make soak:      the soak (tests/lab/test_lab_soak.py): ssd during churn on every node, ~20 min.
# make lab-data-path: the lab booted with --data-path-addr on every node, its own tests and the healthy swarm.
# make lab-all:   every lab test on every engine the lab knows (20.10, 26.1, 28.5), the soak and the
#                 real events (a task killed, a node killed: tests/lab/test_lab_layers.py) included.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PACKAGES := iptables iproute2 util-linux openssl python3-venv qemu-system-x86 qemu-utils debootstrap e2fsprogs \
	chromium

.PHONY: install test test-fast lab lab-all lab-image lab-data-path soak bench bench-scale man dist docs
install:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt

# The lab first: the last line CI reads is then the count of tiers 1 and 2, which always run (the
# lab's tests are skipped on a machine too slow to emulate a swarm: tests/lab/conftest.py).
test:
	$(PY) -m ruff check .
	$(PY) -m pytest -q --durations=12 -rs -m "lab and ci" tests/lab
	$(PY) -m pytest -q -m "not lab" tests

lab:
	$(PY) -m pytest -q --durations=12 -m "lab and not soak and not events" tests/lab

# make lab-image: the container form and gossip-consistency in the lab (node1 builds the Dockerfile).
lab-image:
	$(PY) -m pytest -q --durations=12 -m "lab and image" tests/lab

lab-data-path:
	SWARMLAB_DATA_PATH=1 $(PY) -m pytest -q --durations=12 tests/lab/test_lab_datapath.py \
	  "tests/lab/test_lab.py::test_healthy_swarm_is_consistent_on_every_node"

test-fast:
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not lab" tests

# make soak: ssd on every node during ten minutes and more of churn (about 20 minutes with the lab).
soak:
	$(PY) -m pytest -q -s -m soak tests/lab

lab-all:
	for engine in 20.10 26.1 28.5; do SWARMLAB_ENGINE=$$engine $(PY) -m pytest -q -m lab tests/lab || exit 1; done

# make bench: ssd against the floor of dumping the same state, in the lab (see README, Benchmark).
bench:
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) bench/run
	$(PY) bench/scale.py --out bench/results 10 100 1000 5000

# make bench-scale: the swarm-wide coordinator against a fake swarm of 10 to 5,000 nodes, and a
# watch of 1,000 runs (docs/benchmark.md); on the host, as root (the watch uses namespaces).
bench-scale:
	$(PY) bench/scale.py --out bench/results 10 100 1000 5000
	$(PY) bench/watch.py 1000

# make docs: docs/checks.md's table of check ids from the checks' declarations, and the man page.
docs: man
	$(PY) tools/make_docs.py

# make man: docs/ssd.1 from the argument parser (and docs/ssd.1.include); tests/test_docs.py fails
# when the committed page differs from what this makes.
MAN_OUT ?= docs/ssd.1
man:
	PYTHONPATH=$(CURDIR) $(VENV)/bin/argparse-manpage --module ssd.cli --function build_parser --prog ssd --project-name ssd \
	  --version "$$($(PY) -c 'import ssd; print(ssd.__version__)')" --manual-title "ssd manual" \
	  --description "check a Docker Swarm node's service datapath against the control plane" \
	  --include docs/ssd.1.include --output $(MAN_OUT)

# make dist: dist/ssd. The dependencies are pip's pure-Python wheels (any platform), so the one file
# runs on any Linux with python3 >= 3.11 and no pip; the bytecode is compiled in (legacy .pyc
# beside each source, which zipimport reads: a zip's modules are never cached otherwise).
DIST_OUT ?= dist/ssd
DIST_BUILD ?= build/dist
dist:
	rm -rf $(DIST_BUILD) && mkdir -p $(DIST_BUILD)/app $(dir $(DIST_OUT))
	$(PY) -m pip install -q --target $(DIST_BUILD)/app --only-binary=:all: --platform any \
	  --python-version 3.11 --implementation py --no-compile -r requirements.txt
	rm -rf $(DIST_BUILD)/app/bin
	cp -r ssd $(DIST_BUILD)/app/ssd
	find $(DIST_BUILD)/app -name __pycache__ -prune -exec rm -rf {} +
	$(PY) -m compileall -q -b --invalidation-mode unchecked-hash $(DIST_BUILD)/app
	$(PY) -m zipapp $(DIST_BUILD)/app -c -p "/usr/bin/env python3" -m "ssd.cli:cli" -o $(DIST_OUT).new
	mv $(DIST_OUT).new $(DIST_OUT)
