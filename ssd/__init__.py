# Copyright 2026 The ssd authors. Licensed under the Apache License, Version 2.0.
"""ssd - Swarm Service Driller: is this node's service datapath what Docker says?

ssd compares, on one Docker Swarm node, the control plane (what the engine says each
service's VIP, fwmark and tasks are: GET /networks/{id}?verbose=true, and on managers
/services and /tasks) with the kernel datapath that libnetwork programmed from it, in the
place the engine version really programs it (one lb_<network id[:9]> namespace per network
and ingress_sbox since Docker 18.06). It never changes anything: it only reads.

The package is organised by layer; docs/architecture.md draws it. This file holds only what
must run before anything slow or new: the version, and the guard that gives an interpreter
older than 3.11, or a Ctrl-C while Python is still importing, one line and exit status 2.
It must stay valid Python 3.7, so that an old interpreter gets this far; it imports no
module of the package.
"""
from __future__ import annotations

import os
import signal
import sys

__version__ = "0.1.0"
MIN_PYTHON = (3, 11)
# How ssd is started, by the name of what was run: ./ssd.py, the installed `ssd` command or
# the one-file dist/ssd, and python -m ssd (whose argv[0] is "-m" while the package imports).
COMMAND_NAMES = ("ssd", "ssd.py", "-m", "__main__.py")


def _interrupted_early(signum, frame):  # replaced by Python's own handler once main() runs
    os.write(2, b"ssd: interrupted\n")
    os._exit(2)


def _refuse_old_python():
    message = "ssd needs Python {}.{} or later; this is Python {}".format(
        MIN_PYTHON[0], MIN_PYTHON[1], ".".join(str(v) for v in sys.version_info[:3]))
    if not _run_as_command():
        raise ImportError(message)
    sys.stderr.write("ssd: error: " + message + " (run it with python3.11+, or use the container)\n")
    if "--json" in sys.argv[1:]:
        import json
        sys.stdout.write(json.dumps({"schema_version": 1, "mode": "node", "ssd_version": __version__,
                                     "status": "incomplete", "node": None,
                                     "networks": [], "findings": [], "notes": [],
                                     "errors": [{"scope": "ssd", "message": message}]}) + "\n")
    sys.exit(2)


def _run_as_command():
    """Run as ./ssd.py, python -m ssd, dist/ssd, or the `ssd` command an install makes (whose
    wrapper imports this package): the cases where a Ctrl-C is ours to report. An import by a
    test or another program leaves its SIGINT alone."""
    return os.path.basename(sys.argv[0] if sys.argv else "") in COMMAND_NAMES


if _run_as_command():
    signal.signal(signal.SIGINT, _interrupted_early)
if sys.version_info < MIN_PYTHON:
    _refuse_old_python()
