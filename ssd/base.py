"""What every module may use and nothing else defines: the defaults and kernel constants, the
expected failures (CheckError: one line on stderr, exit 2; SnapshotError), plural counts and
short error text, the JSON documents' schema version and the modes' names. Imports nothing of ssd."""
from __future__ import annotations

import argparse
import math
import re
import shlex
import socket


DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_EXEC_ROOT = "/var/run/docker"
DEFAULT_SETTLE = 2.0  # seconds between a node check's two samples
DEFAULT_FLEET_TIMEOUT = 120.0  # seconds the swarm-wide modes wait for every node
DEFAULT_VXLAN_PORT = 4789
AF_INET = 2
FIRST_FWMARK = 256  # libnetwork's fwMarkCtr starts here and only grows


# IPVS forwarding methods (IP_VS_CONN_F_FWD_MASK bits of the destination's conn flags).
FWD_METHODS = {0: "Masq", 1: "Local", 2: "Tunnel", 3: "Route", 4: "Bypass"}
IP_VS_SVC_F_PERSISTENT = 0x1
IPVS_SYSCTL_DIR = "/proc/sys/net/ipv4/vs"


class CheckError(Exception):
    """An expected failure: one line on stderr, exit status 2."""


def count(n: int, noun: str) -> str:
    """'1 network', '3 networks': a report reads as English, never 'node(s)'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


class SnapshotError(CheckError):
    pass


def _ip_order(ip: str) -> tuple[int, bytes | str]:
    """Sort key of an address: numeric for IPv4 (inet_aton is 20x cheaper than ipaddress)."""
    try:
        return (0, socket.inet_aton(ip))
    except OSError:
        return (1, ip)


# Every JSON document ssd prints carries schema_version (bumped when a field changes meaning or
# goes; new fields do not bump it) and mode; schemas/ holds a JSON Schema for each kind.
SCHEMA_VERSION = 1


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


# --- --all-nodes (fleet mode): the node check on every node, by one job ---------------

FLEET_MEMBER = "fleet-member"  # the per-node command of fleet mode's service (not for people)


def seconds(limit: float, allow_zero: bool):
    """An argparse type: a finite number of seconds in (0 or more than 0) .. limit."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        low_ok = value >= 0 if allow_zero else value > 0
        if not math.isfinite(value) or not low_ok or value > limit:
            low = "0" if allow_zero else "more than 0"
            raise argparse.ArgumentTypeError(f"{text!r}: give {low} to {limit:g} seconds")
        return value
    return parse


MODES = ("gossip-consistency", "gossip-hash")


def shq(word: object) -> str:
    """A word of a command ssd suggests, quoted for the shell: names come from the Engine API,
    NetworkDB and other nodes, and an operator pastes the command as root."""
    return shlex.quote(str(word))


# Control characters (C0 with newline and tab, DEL, C1) and the Unicode controls that reorder
# or break a line as a terminal shows it.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# What Painter writes to colour a word: the only control sequences a text report may carry.
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def printable(text: str) -> str:
    """text with every control character written as an escape (\\n, \\x1b...): a name from the
    Engine API, NetworkDB, a snapshot or another node is printed where a terminal or a monitoring
    system would obey a newline or an escape sequence in it."""
    if not _UNPRINTABLE.search(text):
        return text  # the usual case, at the cost of one scan
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def printable_report(text: str) -> str:
    """A whole text report: printable() but for its line breaks and its own colours."""
    if not _UNPRINTABLE.search(_COLOUR.sub("", text).replace("\n", "")):
        return text
    return "\n".join(_printable_line(line) for line in text.split("\n"))


def _printable_line(line: str) -> str:
    pieces = _COLOUR.split(line)
    colours = _COLOUR.findall(line)
    out = [printable(pieces[0])]
    for colour, piece in zip(colours, pieces[1:], strict=True):
        out += [colour, printable(piece)]
    return "".join(out)


def printable_strings(value: object) -> object:
    """A document from outside (another node's answer) with printable() applied to every string
    in it, keys included."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_strings(v) for v in value]
    if isinstance(value, dict):
        return {printable(k) if isinstance(k, str) else k: printable_strings(v) for k, v in value.items()}
    return value
