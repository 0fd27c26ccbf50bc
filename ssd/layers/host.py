"""Layer "host": this node's prerequisites: IP forwarding, conntrack tables near full, an
underlay MTU too small for the overlays. Its reader and its checks."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ssd.base import shq
from ssd.catalog import CheckInfo, Layer, declare_layer, register_check
from ssd.layers.overlay import local_vteps
from ssd.model import Finding, NotChecked

if TYPE_CHECKING:
    from ssd.collect import Collector
    from ssd.model import NodeState, Reading


# --- this node's prerequisites: forwarding, conntrack, the underlay's MTU -------------

CONNTRACK_FULL = 0.9  # of nf_conntrack_max: past it a burst of connections finds no room
VXLAN_OVERHEAD = 50  # outer Ethernet is not counted: IP 20, UDP 8, VXLAN 8, inner Ethernet 14
ESP_OVERHEAD = 26  # what drivers/overlay budgets for ESP on an encrypted network


def data_path_interface(state: NodeState) -> dict | None:
    """The interface holding this node's VTEP address (the data-path address, else the
    advertise address), from the host's interfaces. None: not known, or not on an interface
    (an address behind NAT)."""
    prereqs = state.host_prereqs or {}
    vteps = {ip for v in state.views if v.instantiated for ip in local_vteps(v, state)}
    if not vteps and state.node_addr:
        vteps = {state.node_addr}
    for link in prereqs.get("links") or []:
        if vteps & set(link.get("addresses") or []):
            return link
    return None


@register_check(
    CheckInfo(
        "ip-forward-off",
        "IPv4 forwarding (net.ipv4.ip_forward) is off on this node.",
        "Published ports and traffic from containers to other networks die here; `sysctl -w "
        "net.ipv4.ip_forward=1` (and find what turned it off: a sysctl.d file, a firewall tool, "
        "dockerd --ip-forward=false).", layer="host"),
    scope="node")
def check_ip_forward(_: NodeState, state: NodeState) -> list[Finding]:
    if (state.host_prereqs or {}).get("ip_forward") != 0:
        return []
    return [Finding("ip-forward-off", "IPv4 forwarding is off on this node (net.ipv4.ip_forward=0): "
                    "the routing mesh cannot forward published ports to ingress_sbox, nor containers "
                    "reach other networks", namespace="host", subject="net.ipv4.ip_forward",
                    expected=1, actual=0, hint="sysctl net.ipv4.ip_forward; grep -r ip_forward /etc/sysctl*")]


@register_check(
    CheckInfo(
        "conntrack-full",
        "A connection-tracking table (this node's, or a load-balancer namespace's) is 90% full or more.",
        "New connections are dropped once it is full (`nf_conntrack: table full` in dmesg); raise "
        "net.netfilter.nf_conntrack_max, or find what opens so many connections (`conntrack -S`).",
        layer="host"),
    scope="node")
def check_conntrack(_: NodeState, state: NodeState) -> list[Finding]:
    tables = [(None, "host", "", (state.host_prereqs or {}).get("conntrack"))]
    tables += [(lb.network.name, lb.datapath.name, lb.datapath.path, lb.datapath.conntrack)
               for lb in state.lbs]
    findings = []
    for network, name, path, table in tables:
        if not table or not table.get("max") or table["count"] < CONNTRACK_FULL * table["max"]:
            continue
        where = "this node's own namespace" if path == "" else f"load-balancer namespace {name}"
        prefix = f"nsenter --net={shq(path)} " if path else ""
        findings.append(Finding(
            "conntrack-full", f"the conntrack table of {where} holds {table['count']} of at most "
            f"{table['max']} connections ({100 * table['count'] // table['max']}%): new connections are "
            "dropped when it is full", network=network, namespace=name, subject="nf_conntrack",
            expected=f"< {int(CONNTRACK_FULL * 100)}% of {table['max']}", actual=table["count"],
            hint=f"{prefix}conntrack -S; {prefix}conntrack -C; dmesg | grep 'table full'"))
    return findings


@register_check(
    CheckInfo(
        "underlay-mtu",
        "The interface that carries this node's data path has a smaller MTU than an overlay's packets "
        "need (its VXLAN device's MTU plus 50 bytes of VXLAN, plus ESP when encrypted).",
        "Full-size packets between nodes are fragmented or lost (large responses hang while small "
        "ones pass); create the network with `-o com.docker.network.driver.mtu=<underlay MTU - 50>`, "
        "or raise the underlay's MTU.", layer="host"),
    scope="node")
def check_underlay_mtu(_: NodeState, state: NodeState) -> list[Finding]:
    link = data_path_interface(state)
    if link is None or not link.get("mtu"):
        return []
    findings = []
    for view in state.views:
        ov = (state.overlays or {}).get(view.id)
        own = ov.own_vxlans(view.vnis) if ov is not None and ov.error is None else []
        if not own:
            continue
        vxlan = own[0]
        need = vxlan.mtu + VXLAN_OVERHEAD + (ESP_OVERHEAD if view.encrypted else 0)
        if link["mtu"] >= need:
            continue
        findings.append(Finding(
            "underlay-mtu", f"network {view.name}'s VXLAN device has MTU {vxlan.mtu}, so its packets "
            f"between nodes are {need} bytes, but {link['name']}, which carries this node's data path, "
            f"has MTU {link['mtu']}: full-size packets are fragmented or lost",
            network=view.name, namespace="host", subject=link["name"], expected=f">= {need}",
            actual=link["mtu"], hint=f"ip link show {shq(link['name'])}; "
            f"docker network inspect {shq(view.name)} --format '{{{{json .Options}}}}'"))
    return findings


def host_notes(state: NodeState) -> list[str]:
    """Known driver problems of the data-path interface: a note, with the command that avoids it."""
    link = data_path_interface(state)
    if link is None or link.get("driver") != "vmxnet3":
        return []
    return [f"{link['name']}, which carries this node's data path, uses the vmxnet3 driver, whose VXLAN "
            "checksum offload corrupts overlay packets on some ESXi and kernel versions (cross-node "
            "traffic fails while every layer looks right); if --probe finds other nodes unreachable, "
            f"try `ethtool -K {link['name']} tx-checksum-ip-generic off`"]


def read_host_layer(collector: Collector, state: NodeState, reading: Reading) -> None:
    """The node's own prerequisites: forwarding, conntrack, the data-path interface."""
    state.host_prereqs = collector.host_prereqs()
    if state.host_prereqs and state.host_prereqs.get("error"):
        reading.not_checked.append(NotChecked("host", f"{state.host_prereqs['error']}; MTU not checked"))
    reading.notes += host_notes(state)


LAYER = declare_layer(Layer("host", 50, "host settings, against what overlays and load balancers need"))
