"""Load the real recordings in tests/fixtures (dockerd 20.10.24, swarm mode) as ssd's views.

The recordings are command outputs (`docker network inspect -v`, `iptables -t X -S`,
`ipvsadm-save -n`, `ip -d addr`) with the command as a first `#` line. These helpers turn
them into the inputs of ssd's pure checks, and into the raw JSON the fake Engine API serves.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import ssd.catalog
import ssd.kernel.iptables
import ssd.model
import ssd.run
import ssd.snapshot
import ssd.views

FIXTURES = Path(__file__).parent / "fixtures"
ONE_NODE = FIXTURES / "engine-20.10-1node"


def text(name: str, root: Path = ONE_NODE) -> str:
    """A recording without its leading `# command` line."""
    lines = (root / name).read_text().splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines) + "\n"


def recorded_json(name: str, root: Path = ONE_NODE):
    return json.loads(text(name, root))


def save_format(ns: str, root: Path = ONE_NODE) -> str:
    """`iptables -t T -S` recordings of one namespace as one iptables-save document."""
    out = []
    for table in ("filter", "mangle", "nat"):
        path = root / f"netns-{ns}-iptables-{table}.txt"
        if not path.exists():
            continue
        out.append(f"*{table}")
        for line in text(path.name, root).splitlines():
            if line.startswith("-P "):
                out.append(f":{line.split()[1]} {line.split()[2]} [0:0]")
            elif line.startswith("-N "):
                out.append(f":{line.split()[1]} - [0:0]")
            elif line.startswith("-A "):
                out.append(line)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def ipvs_from_save(save: str) -> list[ssd.model.IpvsService]:
    """Parse `ipvsadm-save -n` (test-side only: ssd itself reads IPVS over netlink)."""
    services: dict[int, ssd.model.IpvsService] = {}
    fwd = {"-m": "Masq", "-g": "Route", "-i": "Tunnel"}
    for line in save.splitlines():
        tok = line.split()
        if not tok:
            continue
        mark = int(tok[tok.index("-f") + 1])
        if tok[0] == "-A":
            services[mark] = ssd.model.IpvsService(family=2, fwmark=mark, protocol=0, address=None, port=0,
                                             scheduler=tok[tok.index("-s") + 1], flags=0x2, timeout=0)
        elif tok[0] == "-a":
            addr, port = tok[tok.index("-r") + 1].rsplit(":", 1)
            method = next(fwd[t] for t in tok if t in fwd)
            services[mark].dests.append(ssd.model.IpvsDest(address=addr, port=int(port),
                                                     weight=int(tok[tok.index("-w") + 1]),
                                                     forwarding=method))
    return list(services.values())


def addresses_from_ip(output: str) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+) .*? (\S+)$", output, re.M):
        out.setdefault(m.group(3), []).append((m.group(1), int(m.group(2))))
    return out


def datapath(ns: str, sysctls: dict[str, int] | None = None) -> ssd.model.Datapath:
    """The recorded namespace as ssd.read_datapath would have returned it."""
    ipvs_file = ONE_NODE / f"netns-{ns}-ipvsadm-save.txt"
    return ssd.model.Datapath(
        path=f"/var/run/docker/netns/{ns}", name=ns,
        ipvs=ipvs_from_save(text(ipvs_file.name)) if ipvs_file.exists() else None,
        ipvs_error=None, rules=ssd.kernel.iptables.parse_iptables_save(save_format(ns)),
        backends_with_docker_chains=["nf_tables"], iptables_error=None,
        addresses=addresses_from_ip(text(f"netns-{ns}-ip-addr.txt")),
        sysctls=dict(sysctls if sysctls is not None else
                     {"conn_reuse_mode": 0, "expire_nodest_conn": 1,
                      "expire_quiescent_template": 1, "conntrack": 1}))


def host_datapath() -> ssd.model.Datapath:
    return ssd.model.Datapath(path="", name="host", ipvs=None, ipvs_error=None,
                        rules=ssd.kernel.iptables.parse_iptables_save(text("host-iptables-save.txt")),
                        backends_with_docker_chains=["nf_tables"], iptables_error=None,
                        addresses=None, sysctls=None)


def services_json() -> list[dict]:
    return recorded_json("service-inspect.txt")


def network_json(name: str) -> dict:
    return recorded_json(f"network-inspect-{name}-verbose.txt")[0]


def network_view(name: str, manager: bool = True) -> ssd.model.NetworkView:
    protocols = ssd.views.service_protocols(services_json()) if manager else None
    return ssd.views.build_network_view(network_json(name), protocols)


def tasks_json(desired: str = "running", state: str = "running") -> list[dict]:
    """/tasks as a manager answers it, for the tasks the recording shows (service-ps.txt)."""
    services = {s["Spec"]["Name"]: s["ID"] for s in services_json()}
    tasks = []
    for line in text("service-ps.txt").splitlines()[1:]:
        task_id, name = line.split()[:2]
        tasks.append({"ID": task_id, "ServiceID": services[name.split(".")[0]],
                      "DesiredState": desired, "Status": {"State": state}})
    return tasks


MODEL = ssd.catalog.engine_model("20.10.24+dfsg1")
SANDBOX_OF = {line.split()[0]: line.split()[2].rsplit("/", 1)[1]
              for line in (ONE_NODE / "container-sandbox-map.txt").read_text().splitlines()}


OV2_ID = "pgt602lciopl6tkmdz0l85c64"  # ov2's network ID in the 28.5.2 recordings


def fixture(name: str) -> dict:
    """A snapshot recorded in the lab, tests/fixtures/snapshot-<name>.json (read afresh: tests
    edit what they get). The one loader of the tier-1 modules."""
    return json.loads((FIXTURES / f"snapshot-{name}.json").read_text())


def replay(doc: dict) -> ssd.model.RunResult:
    """A snapshot checked as `ssd --from` checks it (no settling: the recorded samples only)."""
    _, result = ssd.run.settled_check(ssd.snapshot.SnapshotCollector(doc, "fixture"), [], 0, live=False)
    return result


def check_ids(result: ssd.model.RunResult) -> list[str]:
    return sorted(f.check for f in result.findings)
