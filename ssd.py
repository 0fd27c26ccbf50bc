#!/usr/bin/env python3
# Copyright 2026 The ssd authors. Licensed under the Apache License, Version 2.0.
"""./ssd.py from a checkout: the ssd command, run from the package beside this file (ssd/).

The tool is the package; this launcher only starts it, as the original README showed it run.
Kept valid Python 3.7: the package's first module refuses an older interpreter in one line."""
from ssd.cli import cli

if __name__ == "__main__":
    cli()
