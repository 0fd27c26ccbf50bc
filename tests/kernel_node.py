"""Lay the recorded swarm node out in real network namespaces of this machine's kernel.

Namespaces are named and filled as dockerd 20.10.24 filled them in the recording:
<exec-root>/netns/lb_oc6rqvyvp, ingress_sbox and the task sandboxes, each with its
interfaces, addresses and iptables rules restored from the recording, plus one more
namespace that plays the node's root namespace (the host rules). This kernel has no IPVS,
so the IPVS tables and the `-m ipvs` SNAT rules cannot exist here; everything else is real.
Nothing outside these namespaces (and the temporary folder) is touched.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fake_resolver import FakeResolver, libnetwork_records
from recorded import ONE_NODE, network_json, save_format, text
from helpers import REPO

LB_NAMESPACES = ("lb_oc6rqvyvp", "ingress_sbox")
TASK_NAMESPACES = ("096d4a69176a", "a75afa981e5f", "fa51c6f34b00", "8a5be7db5257", "72c299b351d1")
OVERLAY_NAMESPACES = ("1-oc6rqvyvpk", "1-vilwkwmrxy")  # the overlay driver's: ov2, ingress


def sh(*args: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    cmd = (["nsenter", f"--net={ns}"] if ns else []) + list(args)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def vxlan_device(ns: str) -> dict:
    """The recorded overlay namespace's VXLAN device and bridge, from its `ip -d addr`."""
    dump = text(f"netns-{ns}-ip-addr.txt")
    vx = re.search(r"vxlan0@\S+ .*? mtu (\d+) .*?\n.*?\n\s+vxlan id (\d+) .*?dstport (\d+) (.*?)\n", dump)
    bridge = re.search(r"inet (\S+) .*? br0$", dump, re.M)
    return {"mtu": vx.group(1), "vni": vx.group(2), "port": vx.group(3),
            "flags": [f for f in vx.group(4).split() if f in ("proxy", "l2miss", "l3miss")],
            "gateway": bridge.group(1)}


def interfaces(ns: str) -> dict[str, list[str]]:
    """ifname -> CIDR addresses, from the recorded `ip -d addr` of namespace ns."""
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"inet (\S+) .*? (\S+)$", text(f"netns-{ns}-ip-addr.txt"), re.M):
        if m.group(2) != "lo":
            out.setdefault(m.group(2), []).append(m.group(1))
    return out


class KernelNode:
    """The recorded node in real namespaces under tmp/exec-root/netns; tmp/host is the host."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.exec_root = tmp / "exec-root"
        self.netns_dir = self.exec_root / "netns"
        self.host = str(tmp / "host")
        self.bound: list[str] = []
        self.resolvers: dict[str, FakeResolver] = {}  # task namespace -> its embedded DNS

    def ns(self, name: str) -> str:
        return str(self.netns_dir / name)

    def create(self) -> KernelNode:
        self.netns_dir.mkdir(parents=True)
        self._bind(self.host)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.host)  # as dockerd sets it on a node
        # the interface that carries the node's data path: its address is the Host IP of the
        # recorded node's endpoints
        sh("ip", "link", "add", "ens4", "mtu", "1500", "type", "veth", "peer", "name", "ens4p", ns=self.host)
        sh("ip", "addr", "add", "10.99.0.1/24", "dev", "ens4", ns=self.host)
        sh("ip", "link", "set", "ens4", "up", ns=self.host)
        sh("iptables-nft-restore", ns=self.host, stdin=text("host-iptables-save.txt"))
        for name in LB_NAMESPACES + TASK_NAMESPACES:
            path = self.ns(name)
            self._bind(path)
            for ifname, cidrs in interfaces(name).items():
                sh("ip", "link", "add", ifname, "type", "veth", "peer", "name", f"{ifname}p", ns=path)
                sh("ip", "link", "set", ifname, "up", ns=path)
                for cidr in cidrs:
                    sh("ip", "addr", "add", cidr, "dev", ifname, ns=path)
            # The kernel here lacks the ipvs match, as it lacks IPVS: those rules cannot exist.
            rules = "\n".join(line for line in save_format(name).splitlines() if "-m ipvs" not in line)
            sh("iptables-nft-restore", ns=path, stdin=rules + "\n")
            if name in TASK_NAMESPACES:
                self.start_resolver(name, rules)
        for name in OVERLAY_NAMESPACES:
            self.create_overlay(name)
        return self

    def start_resolver(self, name: str, rules: str) -> None:
        """The embedded DNS at the ports the task's recorded DNAT rules send port 53 to."""
        ports = dict(re.findall(r"-p (udp|tcp) .*--dport 53 -j DNAT --to-destination 127\.0\.0\.11:(\d+)",
                                rules))
        sh("ip", "link", "set", "lo", "up", ns=self.ns(name))
        self.resolvers[name] = FakeResolver(self.ns(name), int(ports["udp"]), int(ports["tcp"]),
                                            libnetwork_records(network_json("ov2")))

    def create_overlay(self, name: str, **change: str) -> None:
        """The overlay namespace as the driver builds it: br0 with the gateway, vxlan0 in it
        (learning on, as netlink creates it; the recording's iproute2 prints only `nolearning`)."""
        dev = {**vxlan_device(name), **change}
        path = self.ns(name)
        if path not in self.bound:
            self._bind(path)
        # No IPv6 link-local addresses: their DAD would change the state the read-only test compares.
        sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
           ns=path)
        sh("ip", "link", "add", "br0", "type", "bridge", ns=path)
        sh("ip", "addr", "add", dev["gateway"], "dev", "br0", ns=path)
        sh("ip", "link", "add", "vxlan0", "mtu", dev["mtu"], "type", "vxlan", "id", dev["vni"],
           "dstport", dev["port"], "learning", *dev["flags"], ns=path)
        sh("ip", "link", "set", "vxlan0", "master", "br0", ns=path)
        for ifname in ("br0", "vxlan0"):
            sh("ip", "link", "set", ifname, "up", ns=path)

    def _bind(self, path: str) -> None:
        Path(path).touch()
        sh("unshare", f"--net={path}", "true")
        self.bound.append(path)

    def remove(self, name: str) -> None:
        """Take one namespace away, as dockerd does when it deletes a sandbox."""
        subprocess.run(["umount", self.ns(name)], check=True)
        self.bound.remove(self.ns(name))
        (self.netns_dir / name).unlink()

    def destroy(self) -> None:
        for resolver in self.resolvers.values():
            resolver.stop()
        for path in reversed(self.bound):
            subprocess.run(["umount", "-l", path], capture_output=True, check=False)
            Path(path).unlink(missing_ok=True)
        self.bound.clear()

    def state(self) -> dict[str, str]:
        """Every namespace's rules (both backends) and addresses, to prove ssd changed nothing."""
        out = {}
        for path in self.bound:
            for tool in ("iptables-nft-save", "iptables-legacy-save", "ip6tables-nft-save"):
                dump = sh(tool, ns=path, check=False)
                # Packet counters move with ssd's own DNS queries: traffic, not state.
                out[f"{path} {tool}"] = "\n".join(re.sub(r" \[\d+:\d+\]$", "", x) for x in dump.splitlines()
                                                  if not x.startswith("#"))
            out[f"{path} addr"] = sh("ip", "-o", "addr", ns=path)
            out[f"{path} link"] = sh("ip", "-o", "link", ns=path)
        out["netns files"] = " ".join(sorted(os.listdir(self.netns_dir)))
        return out

    def ssd(self, engine_url: str, *args: str, env: dict | None = None,
            wrap: list[str] | None = None) -> subprocess.CompletedProcess:
        """Run ssd as a user does, as a process, with this node's root namespace as its own."""
        cmd = [*(wrap or []), "nsenter", f"--net={self.host}", sys.executable, str(REPO / "ssd.py"),
               "-H", engine_url, "--exec-root", str(self.exec_root), *args]
        full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        full_env.pop("DOCKER_HOST", None)
        return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=120, check=False)


assert ONE_NODE.exists()
