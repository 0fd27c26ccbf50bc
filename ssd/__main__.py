"""python -m ssd, and the one-file dist/ssd (a zip application whose entry is this module)."""
from ssd.cli import cli

cli()
