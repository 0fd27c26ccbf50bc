"""/proc: the IPVS sysctls of a namespace, the conntrack table's fill, and the host's other
prerequisites (IP forwarding, the data-path interface's MTU)."""
from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

from ssd.base import IPVS_SYSCTL_DIR, _short
from ssd.kernel.netlink import (
    NETLINK_ROUTE, NetlinkSocket, RTM_GETLINK, _IFINFOMSG, decode_link, read_addresses,
)


def read_sysctls() -> dict[str, int] | None:
    if not os.path.isdir(IPVS_SYSCTL_DIR):
        return None
    values = {}
    for name in ("conn_reuse_mode", "expire_nodest_conn", "expire_quiescent_template", "conntrack"):
        with contextlib.suppress(OSError, ValueError), \
                open(os.path.join(IPVS_SYSCTL_DIR, name)) as fh:
            values[name] = int(fh.read().strip())
    return values


# --- the host's prerequisites: forwarding, conntrack, the data-path interface ---------

CONNTRACK_DIR = "/proc/sys/net/netfilter"


def read_conntrack() -> dict[str, int] | None:
    """This thread's namespace's conntrack table: entries in use and the maximum (None: no
    conntrack module loaded, so nothing to fill)."""
    values = {}
    for key in ("count", "max"):
        try:
            with open(os.path.join(CONNTRACK_DIR, f"nf_conntrack_{key}")) as fh:
                values[key] = int(fh.read().strip())
        except (OSError, ValueError):
            return None
    return values


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def read_host_prereqs() -> dict:
    """What the node's own namespace must provide for overlays and the routing mesh, as plain
    data: IPv4 forwarding, its conntrack table, and each interface's MTU, addresses and driver."""
    out: dict[str, Any] = {"error": None, "ip_forward": _read_int("/proc/sys/net/ipv4/ip_forward"),
                           "conntrack": read_conntrack(), "links": []}
    try:
        addresses = read_addresses()
        with NetlinkSocket(NETLINK_ROUTE) as sock:
            links = [decode_link(m) for m in
                     sock.request(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), dump=True)]
    except OSError as exc:
        out["error"] = f"cannot read this node's interfaces: {exc.strerror or _short(exc)}"
        return out
    for link in links:
        if not addresses.get(link["name"]):
            continue  # only an interface with an address can carry the data path
        try:  # sysfs, as the node sees it: the driver behind the interface (none for virtual ones)
            driver = os.path.basename(os.readlink(f"/sys/class/net/{link['name']}/device/driver"))
        except OSError:
            driver = None
        out["links"].append({"name": link["name"], "mtu": link["mtu"], "driver": driver,
                             "addresses": [ip for ip, _ in addresses[link["name"]]]})
    return out
