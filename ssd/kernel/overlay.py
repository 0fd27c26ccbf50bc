"""An overlay namespace over netlink: the VXLAN device, its neighbour and FDB entries, and (for
encrypted overlays) the host's ESP states and policies (xfrm)."""
from __future__ import annotations

import socket
import struct

from ssd.base import AF_INET, _short
from ssd.kernel.namespaces import entered_netns
from ssd.kernel.netlink import (
    AF_BRIDGE, NDA_DST, NDA_LLADDR, NETLINK_ROUTE, NTF_SELF, NUD_PERMANENT, NetlinkSocket, RTM_GETLINK,
    RTM_GETNEIGH, _IFINFOMSG, _NDMSG, _ip, _mac, decode_link, nla_parse,
)


# The kernel writes a VXLAN device's rows in one order (neigh_fill_info: NDA_DST then NDA_LLADDR;
# vxlan_fdb_info: NDA_LLADDR then NDA_DST): read at fixed offsets when the headers say so, else
# attribute by attribute. Half the cost of a row, at 20,000 rows per overlay on a large swarm.
_NEIGH_FIXED = struct.Struct("=B3xiHBBHH4sHH6s")  # ndmsg, NDA_DST (8: IPv4), NDA_LLADDR (10)
_FDB_FIXED = struct.Struct("=B3xiHBBHH6s2xHH4s")  # ndmsg, NDA_LLADDR (10, padded), NDA_DST (8)


def decode_neighbour(msg: bytes) -> dict:
    """One RTM_NEWNEIGH message: an ARP neighbour (AF_INET) or an FDB entry (AF_BRIDGE)."""
    if len(msg) >= 32:
        if msg[0] == AF_INET:
            _, index, state, flags, _, len1, kind1, ip, len2, kind2, mac = _NEIGH_FIXED.unpack_from(msg)
            fixed = (len1, kind1, len2, kind2) == (8, NDA_DST, 10, NDA_LLADDR)
        else:
            _, index, state, flags, _, len1, kind1, mac, len2, kind2, ip = _FDB_FIXED.unpack_from(msg)
            fixed = (len1, kind1, len2, kind2) == (10, NDA_LLADDR, 8, NDA_DST)
        if fixed:
            return {"ifindex": index, "dst": socket.inet_ntoa(ip), "mac": mac.hex(":"),
                    "permanent": bool(state & NUD_PERMANENT), "self": bool(flags & NTF_SELF)}
    _, index, state, flags, _ = _NDMSG.unpack_from(msg)
    attrs = nla_parse(msg, _NDMSG.size)
    dst = attrs.get(NDA_DST)
    return {"ifindex": index, "dst": _ip(dst, socket.AF_INET6 if dst and len(dst) == 16 else AF_INET),
            "mac": _mac(attrs.get(NDA_LLADDR)), "permanent": bool(state & NUD_PERMANENT),
            "self": bool(flags & NTF_SELF)}


def read_overlay() -> dict:
    """Links, IPv4 neighbours and bridge FDB of the current thread's namespace, as plain data."""
    with NetlinkSocket(NETLINK_ROUTE) as sock:
        links = [decode_link(m) for m in
                 sock.request(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), dump=True)]
        vxlans = {link["index"] for link in links if link["kind"] == "vxlan"}
        # Only rows on VXLAN devices: the bridge's learned rows for local veths are not programmed.
        def on_vxlan(family: int) -> list[dict]:
            rows = (decode_neighbour(m) for m in
                    sock.request(RTM_GETNEIGH, _NDMSG.pack(family, 0, 0, 0, 0), dump=True))
            return [r for r in rows if r["ifindex"] in vxlans]
        return {"error": None, "links": links, "neighbours": on_vxlan(AF_INET), "fdb": on_vxlan(AF_BRIDGE)}


# Encrypted overlays (drivers/overlay/encryption.go): in the node's own namespace, per remote
# node, ESP security associations (out: primary key; in: one per key) and one outbound policy
# for UDP to the VXLAN port, marked 0xD0C4E3 by the network's mangle rule.
NETLINK_XFRM = 6
XFRM_MSG_GETSA, XFRM_MSG_GETPOLICY = 0x12, 0x15
XFRMA_MARK = 21
IPPROTO_ESP, XFRM_POLICY_OUT = 50, 1
OVERLAY_ESP_MARK = 0xD0C4E3


# xfrm_usersa_info: id.daddr, id.spi, id.proto, saddr, family; xfrm_userpolicy_info: sel.daddr,
# sel.saddr, sel.dport, sel.family, sel.proto, dir.
_XFRM_SA = struct.Struct("=56x16s4sB3x16s116xH")
_XFRM_POLICY = struct.Struct("=16s16s2s6xH2xB115xB")


def decode_xfrm_state(msg: bytes) -> dict:
    dst, spi, proto, src, family = _XFRM_SA.unpack_from(msg)
    return {"src": _ip(src, family), "dst": _ip(dst, family), "spi": int.from_bytes(spi, "big"),
            "proto": proto}


def decode_xfrm_policy(msg: bytes) -> dict:
    dst, src, dport, family, proto, direction = _XFRM_POLICY.unpack_from(msg)
    mark = nla_parse(msg, 168).get(XFRMA_MARK)  # after the 168-byte xfrm_userpolicy_info
    return {"src": _ip(src, family), "dst": _ip(dst, family), "dport": int.from_bytes(dport, "big"),
            "proto": proto, "dir": direction,
            "mark": struct.unpack_from("=I", mark)[0] if mark and len(mark) >= 4 else None}


def read_xfrm() -> dict:
    """The IPsec state of this namespace (the node's own), as plain data; never raises."""
    try:
        with NetlinkSocket(NETLINK_XFRM) as sock:
            states = [decode_xfrm_state(m) for m in sock.request(XFRM_MSG_GETSA, b"", dump=True)
                      if len(m) >= _XFRM_SA.size]
            policies = [decode_xfrm_policy(m) for m in sock.request(XFRM_MSG_GETPOLICY, b"", dump=True)
                        if len(m) >= _XFRM_POLICY.size]
        return {"error": None, "states": states, "policies": policies}
    except OSError as exc:
        return {"error": f"cannot read the IPsec (xfrm) state: {exc.strerror or _short(exc)}"}


def read_overlay_namespace(path: str) -> dict:
    try:
        with entered_netns(path):
            return read_overlay()
    except FileNotFoundError:
        return {"error": f"namespace {path} does not exist (it may have vanished mid-run)"}
    except OSError as exc:
        return {"error": f"cannot read namespace {path}: {exc.strerror or _short(exc)}"}
