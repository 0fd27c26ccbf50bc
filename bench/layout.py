#!/usr/bin/env python3
# Copyright 2026 The ssd authors. Licensed under the Apache License, Version 2.0.
"""layout - lay out, in real namespaces of a lab node, what Docker programs for a big swarm.

Runs inside a lab VM (a real kernel with IPVS), as root, with the standard library only:

    layout.py up N M K DIR [HISTORY] [ports]
                               N VIP services of M backends each, spread over K networks;
                               /tasks also holds HISTORY ended tasks per running one (as swarm
                               keeps them: --task-history-limit 5); ports: every service says
                               its target port (80), so that --probe connects to each backend
    layout.py down DIR         remove every namespace it made

For each network it makes the load-balancer namespace libnetwork would (lb_<id[:9]>, under
DIR/netns): an interface holding the LB address and one /32 alias per VIP, one IPVS
firewall-mark service per VIP with its backends (ipvsadm-restore), the mangle MARK and nat
SNAT rules (iptables-restore) and the IPVS sysctls; and the overlay driver's namespace
(1-<id[:10]>): a bridge, a VXLAN device with the network's VNI, and for every task (each on
one of REMOTE_NODES other nodes, as most tasks are in a big swarm) a permanent neighbour and
a permanent FDB entry. DIR/routes.json is the matching control plane (network inspect,
services, tasks) for standin.py to serve: a real engine cannot host 10,000 tasks in a VM.
"""
from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path

FIRST_FWMARK = 256
FIRST_VNI = 4097
THIS_NODE = "10.99.0.1"
REMOTE_NODES = [f"10.99.0.{i}" for i in range(2, 6)]


def sh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, input=stdin, text=True, check=True)


def ident(rng: random.Random, n: int = 25) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def addr(k: int, i: int) -> str:
    """The i-th address of network k's 10.k+1.0.0/16 (i >= 1)."""
    return f"10.{k + 1}.{i // 256}.{i % 256}"


STAMP = "2026-11-30T08:15:42.123456789Z"  # long settled: every task is judged


def task_record(task_id: str, svc_id: str, slot: int, net_id: str, net_name: str, ip: str,
                rng: random.Random) -> dict:
    """A task as /tasks gives it, with the parts ssd reads (state, timestamp, container, the
    network attachment and its address: swarm against NetworkDB is judged for every task) and
    the common rest of a real record (spec, versions, times), so that both ssd and the floor
    decode as much JSON per task as a real engine sends (about 1 KiB)."""
    return {
        "ID": task_id, "Version": {"Index": rng.randrange(1000, 99999)}, "CreatedAt": STAMP,
        "UpdatedAt": STAMP, "Labels": {}, "ServiceID": svc_id, "Slot": slot, "NodeID": "benchnode",
        "Spec": {"ContainerSpec": {"Image": "nginx:1.27-alpine@sha256:" + ident(rng, 64),
                                   "Init": False, "DNSConfig": {}, "Isolation": "default"},
                 "Resources": {"Limits": {}, "Reservations": {}}, "Placement": {"Platforms": [
                     {"Architecture": "amd64", "OS": "linux"}]},
                 "Networks": [{"Target": net_id}], "ForceUpdate": 0},
        "Status": {"Timestamp": STAMP, "State": "running", "Message": "started",
                   "ContainerStatus": {"ContainerID": ident(rng, 64), "PID": rng.randrange(100, 60000),
                                       "ExitCode": 0}, "PortStatus": {}},
        "DesiredState": "running",
        "NetworksAttachments": [{
            "Network": {"ID": net_id, "Spec": {"Name": net_name, "Labels": {}, "Scope": "swarm",
                                               "DriverConfiguration": {"Name": "overlay"}}},
            "Addresses": [f"{ip}/16"]}]}


def ended(task: dict, n: int, rng: random.Random) -> dict:
    """An earlier task of the same slot, as swarm keeps it once it has ended."""
    old = dict(task, ID=ident(rng), DesiredState="shutdown")
    old["Status"] = dict(task["Status"], State=("shutdown", "failed", "complete")[n % 3],
                         ContainerStatus=dict(task["Status"]["ContainerStatus"], ContainerID=ident(rng, 64)))
    return old


def build(n: int, m: int, k: int, rng: random.Random, history: int = 0, ports: bool = False
          ) -> tuple[list[dict], dict]:
    """Per network: what to program; and the Engine API routes of the same swarm."""
    networks, services, tasks = [], [], []
    mark = FIRST_FWMARK
    for net in range(k):
        net_id = ident(rng)
        name = f"bench{net}"
        lb_ip = addr(net, 65000)
        plan = {"id": net_id, "name": name, "ns": f"lb_{net_id[:9]}", "lb_ip": lb_ip,
                "overlay_ns": f"1-{net_id[:10]}", "vni": FIRST_VNI + net,
                "subnet": f"10.{net + 1}.0.0/16", "services": []}
        inspect_services = {}
        nxt = 2
        for s in range(net, n, k):  # service s lives on network s % k
            svc_name, svc_id = f"svc{s}", ident(rng)
            vip = addr(net, nxt)
            backends = [addr(net, nxt + 1 + j) for j in range(m)]
            nxt += m + 1
            plan["services"].append({"vip": vip, "mark": mark, "backends": backends})
            task_entries = []
            for j, ip in enumerate(backends):
                task_id = ident(rng)
                host = REMOTE_NODES[j % len(REMOTE_NODES)]
                task_entries.append({"Name": f"{svc_name}.{j + 1}.{task_id}", "EndpointID": ident(rng, 64),
                                     "EndpointIP": ip, "Info": {"Host IP": host}})
                tasks.append(task_record(task_id, svc_id, j + 1, net_id, name, ip, rng))
                tasks += [ended(tasks[-1], h, rng) for h in range(history)]
            inspect_services[svc_name] = {"VIP": vip, "LocalLBIndex": mark,
                                          "Ports": [f"Target: 80, Publish: {30000 + s}"] if ports else [],
                                          "Tasks": task_entries}
            services.append({"ID": svc_id, "Spec": {"Name": svc_name},
                             "Endpoint": {"VirtualIPs": [{"NetworkID": net_id, "Addr": f"{vip}/16"}]}})
            mark += 1
        networks.append((plan, {
            "Id": net_id, "Name": name, "Scope": "swarm", "Driver": "overlay", "Ingress": False,
            "Options": {"com.docker.network.driver.overlay.vxlanid_list": str(plan["vni"])},
            "IPAM": {"Config": [{"Subnet": plan["subnet"]}]},
            "Peers": [{"Name": f"node{i}", "IP": ip} for i, ip in enumerate([THIS_NODE, *REMOTE_NODES])],
            "Containers": {f"lb-{name}": {"Name": f"{name}-endpoint", "EndpointID": ident(rng, 64),
                                          "IPv4Address": f"{lb_ip}/16"}},
            "Services": inspect_services}))
    routes = {
        "/_ping": "OK",
        "/version": {"Version": "28.5.2", "ApiVersion": "1.51", "MinAPIVersion": "1.24"},
        "/info": {"Name": "benchnode", "ServerVersion": "28.5.2",
                  "Swarm": {"LocalNodeState": "active", "NodeID": "benchnode", "ControlAvailable": True,
                            "NodeAddr": THIS_NODE, "Cluster": {"DataPathPort": 4789}}},
        "/networks": [{key: raw[key] for key in ("Id", "Name", "Scope", "Driver", "Ingress")}
                      for _, raw in networks],
        "/services": services, "/tasks": tasks,
    }
    for _, raw in networks:
        routes[f"/networks/{raw['Id']}"] = raw
    return [plan for plan, _ in networks], routes


def program(plan: dict, netns_dir: Path) -> None:
    ns = plan["ns"]
    sh("ip", "netns", "add", ns)
    run = ["ip", "netns", "exec", ns]
    lines = ["link add eth0 type dummy", "link set eth0 up", "link set lo up",
             f"addr add {plan['lb_ip']}/16 dev eth0"]
    lines += [f"addr add {svc['vip']}/32 dev eth0" for svc in plan["services"]]
    sh(*run, "ip", "-batch", "-", stdin="\n".join(lines) + "\n")
    ipvs = []
    for svc in plan["services"]:
        ipvs.append(f"-A -f {svc['mark']} -s rr")
        ipvs += [f"-a -f {svc['mark']} -r {ip}:0 -m -w 1" for ip in svc["backends"]]
    sh(*run, "ipvsadm-restore", stdin="\n".join(ipvs) + "\n")
    rules = ["*mangle", ":INPUT ACCEPT [0:0]"]
    rules += [f"-A INPUT -d {svc['vip']}/32 -j MARK --set-xmark {svc['mark']:#x}/0xffffffff"
              for svc in plan["services"]]
    rules += ["COMMIT", "*nat", ":POSTROUTING ACCEPT [0:0]",
              f"-A POSTROUTING -d {plan['subnet']} -m ipvs --ipvs -j SNAT --to-source {plan['lb_ip']}",
              "COMMIT"]
    sh(*run, "iptables-restore", stdin="\n".join(rules) + "\n")
    for name, value in (("conn_reuse_mode", 0), ("expire_nodest_conn", 1),
                        ("expire_quiescent_template", 1), ("conntrack", 1)):
        sh(*run, "sysctl", "-qw", f"net.ipv4.vs.{name}={value}")


def mac(ip: str) -> str:
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


def program_overlay(plan: dict) -> None:
    ns = plan["overlay_ns"]
    sh("ip", "netns", "add", ns)
    run = ["ip", "netns", "exec", ns]
    gateway = plan["subnet"].replace(".0.0/16", ".0.1/16")
    lines = ["link add br0 type bridge", f"addr add {gateway} dev br0",
             f"link add vxlan0 mtu 1450 type vxlan id {plan['vni']} dstport 4789 "
             "learning proxy l2miss l3miss",
             "link set vxlan0 master br0", "link set br0 up", "link set vxlan0 up"]
    fdb = []
    for svc in plan["services"]:
        for j, ip in enumerate(svc["backends"]):
            node = REMOTE_NODES[j % len(REMOTE_NODES)]
            lines.append(f"neigh add {ip} lladdr {mac(ip)} dev vxlan0 nud permanent")
            fdb.append(f"fdb add {mac(ip)} dev vxlan0 dst {node} self permanent")
    sh(*run, "ip", "-batch", "-", stdin="\n".join(lines) + "\n")
    if fdb:
        sh(*run, "bridge", "-batch", "-", stdin="\n".join(fdb) + "\n")


def up(n: int, m: int, k: int, root: Path, history: int = 0, ports: bool = False) -> None:
    down(root)
    root.mkdir(parents=True, exist_ok=True)
    plans, routes = build(n, m, k, random.Random(n * 1000003 + m * 1009 + k), history, ports)
    os.makedirs("/run/netns", exist_ok=True)
    if not (root / "netns").exists():
        (root / "netns").symlink_to("/run/netns")  # ssd reads EXEC_ROOT/netns/<name>
    for plan in plans:
        program(plan, root / "netns")
        program_overlay(plan)
    (root / "routes.json").write_text(json.dumps(routes))
    (root / "namespaces").write_text("\n".join(p["ns"] for p in plans) + "\n")
    (root / "overlays").write_text("\n".join(p["overlay_ns"] for p in plans) + "\n")


def down(root: Path) -> None:
    for listing in (root / "namespaces", root / "overlays"):
        if listing.exists():
            for ns in listing.read_text().split():
                subprocess.run(["ip", "netns", "del", ns], check=False, stderr=subprocess.DEVNULL)
            listing.unlink()


def main(argv: list[str]) -> int:
    if 6 <= len(argv) <= 8 and argv[1] == "up":
        up(int(argv[2]), int(argv[3]), int(argv[4]), Path(argv[5]), int(argv[6]) if len(argv) > 6 else 0,
           argv[7:] == ["ports"])
    elif len(argv) == 3 and argv[1] == "down":
        down(Path(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
