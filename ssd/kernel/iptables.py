"""iptables: `iptables-save` (nf_tables) and `iptables-legacy-save` run in a namespace, parsed
into the model's rules, the two backends merged; a table an older iptables cannot read is
unreadable, not empty."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ssd.base import _short
from ssd.model import Rule

if TYPE_CHECKING:
    from ssd.model import Ruleset


# Where the iptables binaries ssd runs as root are looked for: $PATH's absolute directories, then
# the system's. An empty or relative entry of $PATH (PATH=:/usr/bin, PATH=bin) would find a file
# of the current directory first: such entries are skipped.
_SYSBIN = os.pathsep.join([*(d for d in os.environ.get("PATH", "").split(os.pathsep) if os.path.isabs(d)),
                           "/usr/sbin", "/sbin"])


def iptables_backends() -> dict[str, str]:
    """backend name -> iptables-save binary. Both are read: the kernel applies both."""
    found = {}
    for backend, binary in (("nf_tables", "iptables-nft-save"), ("legacy", "iptables-legacy-save")):
        path = shutil.which(binary, path=_SYSBIN)
        if path:
            found[backend] = path
    if not found:
        path = shutil.which("iptables-save", path=_SYSBIN)
        if path:
            found["default"] = path
    return found


def parse_iptables_save(text: str) -> Ruleset:
    """Parse iptables-save output (either backend) into table -> chain -> rules."""
    rules: Ruleset = {}
    table = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            rules.setdefault(table, {})
        elif line.startswith(":") and table is not None:
            rules[table].setdefault(line[1:].split()[0], [])
        elif line.startswith("-A ") and table is not None:
            rule = parse_rule(table, line)
            rules[table].setdefault(rule.chain, []).append(rule)
    return rules


def parse_rule(table: str, line: str) -> Rule:
    # iptables-save quotes only values with spaces (comments): shlex only where needed.
    tokens = shlex.split(line) if '"' in line or "'" in line else line.split()
    chain = tokens[1]
    opts: dict[str, str | bool] = {}
    negated: set[str] = set()
    matches: list[str] = []
    negate = False
    i = 2
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negate = True
            i += 1
            continue
        if tok in ("-m", "--match") and i + 1 < len(tokens):
            matches.append(tokens[i + 1])
            i += 2
            continue
        if tok.startswith("-"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            value: str | bool = True
            if nxt is not None and nxt != "!" and not nxt.startswith("-"):
                value = nxt
                i += 1
            key = {"--protocol": "-p", "--destination": "-d", "--source": "-s",
                   "--jump": "-j", "--destination-port": "--dport",
                   "--source-port": "--sport"}.get(tok, tok)
            opts.setdefault(key, value)
            if negate:
                negated.add(key)
        negate = False
        i += 1
    return Rule(table=table, chain=chain, text=line, opts=opts, negated=frozenset(negated),
                matches=tuple(matches))


# iptables-nft is not forward compatible: an older iptables-save prints this comment instead of
# the rules a newer iptables wrote. Such a table is unreadable, not empty.
INCOMPATIBLE_TABLE = re.compile(r"^# Table [`'\"]?(\w+)[`'\"]? is incompatible", re.M)


def unreadable_tables(texts: dict[str, str]) -> list[str]:
    return sorted({t for text in texts.values() for t in INCOMPATIBLE_TABLE.findall(text)})


def merge_rulesets(parts: Iterable[Ruleset]) -> Ruleset:
    merged: Ruleset = {}
    for part in parts:
        for table, chains in part.items():
            for chain, rules in chains.items():
                merged.setdefault(table, {}).setdefault(chain, []).extend(rules)
    return merged


def docker_chains(rules: Ruleset) -> bool:
    return any(chain.startswith("DOCKER") for chains in rules.values() for chain in chains)


def read_iptables(backends: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """iptables-save text of the current namespace per backend, and what failed."""
    if not backends:
        return {}, "no iptables-save binary found (install iptables)"
    texts, failures = {}, []
    for backend, binary in backends.items():
        try:
            proc = subprocess.run([binary], check=False, capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            failures.append(f"{os.path.basename(binary)}: {_short(exc)}")
            continue
        if proc.returncode != 0:
            reason = _short(Exception(proc.stderr or f"exit status {proc.returncode}"))
            failures.append(f"{os.path.basename(binary)}: {reason}")
            continue
        texts[backend] = proc.stdout
    return texts, None if texts else "; ".join(failures)
