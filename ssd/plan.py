"""The remediation plan: the fixes of a report's findings, each once, least disruptive first,
with what each fixes. A dry run: ssd prints it and changes nothing.

The fix of a finding comes from its check's declared action (ssd.catalog.CHECKS): a service's
forced update where the action names one, else the host command it names (a sysctl), else a
dockerd restart where the action's first remedy is one, else the action itself to read."""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ssd.base import printable, shq
from ssd.catalog import CHECKS

if TYPE_CHECKING:
    from ssd.model import Finding

# Least disruptive first: one service's tasks replaced (a rolling update, swarm-wide, from any
# manager); a node setting changed; every container of one node restarted with its dockerd
# (unless live-restore); then what needs a person (a firewall, an MTU, a network recreated).
SERVICE, SETTING, RESTART, MANUAL = 1, 2, 3, 4
EVERYWHERE = "any manager"  # where a service update runs: it concerns every node


@dataclass
class Step:
    rank: int
    where: str  # a node's hostname, or EVERYWHERE
    command: str  # to paste (names quoted), or the action to read (MANUAL)
    checks: list[str] = field(default_factory=list)
    findings: int = 0
    networks: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # where its findings are

    def lines(self, number: int) -> list[str]:
        """The step as the text report prints it (80 columns): the command on its own line,
        whole, so that it pastes; what it fixes wrapped below it."""
        what = (f"{self.findings} finding{'s' if self.findings != 1 else ''}"
                + (f" on {', '.join(self.networks)}" if self.networks else "")
                + (f" of {', '.join(self.nodes)}" if self.where == EVERYWHERE else "")
                + f" ({', '.join(self.checks)})")
        head = f"  {number}. on {self.where}: "
        if self.rank == MANUAL:
            return [printable(line) for line in textwrap.wrap(
                f"{head}{self.command} - {what}", width=80, subsequent_indent="     ")]
        return [printable(f"{head}{self.command}")] + [printable(line) for line in textwrap.wrap(
            f"fixes {what}", width=80, initial_indent="     ", subsequent_indent="     ")]

    def to_json(self) -> dict:
        manual = self.rank == MANUAL
        return {"order": self.rank, "where": self.where, "command": None if manual else self.command,
                "action": self.command if manual else None, "checks": self.checks,
                "findings": self.findings, "networks": self.networks, "nodes": self.nodes}


def fix_of(finding: Finding, node: str) -> tuple[int, str, str]:
    """(rank, where, command or action) for one finding on node."""
    info = CHECKS.get(finding.check)
    action = info.action if info else ""
    if finding.service and "docker service update --force" in action:
        return SERVICE, EVERYWHERE, f"docker service update --force {shq(finding.service)}"
    setting = re.search(r"`(sysctl -w [^`]+)`", action)
    if setting:
        return SETTING, node, setting.group(1)
    # "<the effect>; <a remedy>; ...": a remedy that begins with restarting dockerd is one;
    # "allow ESP ..., then restart dockerd" needs a person first.
    remedies = [part.strip().lower() for part in action.split(";")]
    if any(part.startswith(("restart dockerd", "restarting dockerd")) for part in remedies):
        return RESTART, node, "systemctl restart docker"
    return MANUAL, node, f"{finding.check}: {action}" if action else finding.check


def make_plan(findings_by_node: dict[str, list[Finding]]) -> list[Step]:
    """Every finding's fix, each fix once (a service's update once for all nodes), ordered least
    disruptive first, then by how much each fixes."""
    steps: dict[tuple[int, str, str], Step] = {}
    for node, findings in findings_by_node.items():
        for finding in findings:
            rank, where, command = fix_of(finding, node)
            step = steps.setdefault((rank, where, command), Step(rank, where, command))
            step.findings += 1
            for values, value in ((step.checks, finding.check), (step.networks, finding.network),
                                  (step.nodes, node)):
                if value and value not in values:
                    values.append(value)
    return sorted(steps.values(), key=lambda s: (s.rank, -s.findings, s.where, s.command))


def plan_lines(steps: list[Step]) -> list[str]:
    if not steps:
        return []
    lines = ["Plan (a dry run: ssd changed nothing; least disruptive first, each fix once):"]
    for number, step in enumerate(steps, 1):
        lines += step.lines(number)
    return lines
