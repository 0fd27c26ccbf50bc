"""Netlink, read with a plain socket and decoded with struct: IPVS over generic netlink (services
and destinations), addresses, links. Only the message types and attributes the checks use;
pyroute2 is the tests' reference decoder."""
from __future__ import annotations

import errno
import os
import socket
import struct

from ssd.base import AF_INET, FWD_METHODS
from ssd.model import IpvsDest, IpvsService


# --- netlink: IPVS over generic netlink, and addresses --------------------------------
# Read with a plain netlink socket and decoded with struct: only the message types and
# attributes the checks use. pyroute2's general decoder cost 84 % of a run at 1,000 services
# (bench/), and importing it 6 s of a 15 s run in the lab's VMs.

NETLINK_ROUTE, NETLINK_GENERIC = 0, 16
RTM_GETLINK, RTM_GETADDR = 18, 22
IFLA_IFNAME, IFA_ADDRESS, IFA_LOCAL = 3, 1, 2
_IFINFOMSG, _IFADDRMSG = struct.Struct("=BxHiII"), struct.Struct("=BBBBI")
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300


# Set by the kernel on a dump's messages when the table changed while it was dumped (a swarm
# churning): what was read may miss or repeat rows, so it is read again, DUMP_TRIES times at most.
NLM_F_DUMP_INTR, DUMP_TRIES = 0x10, 3
GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 0x10, 3, 1, 2
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER


# linux/ip_vs.h
IPVS_GENL_VERSION = 1
IPVS_CMD_GET_SERVICE, IPVS_CMD_GET_DEST = 4, 8
IPVS_CMD_ATTR_SERVICE, IPVS_CMD_ATTR_DEST = 1, 2
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK, SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT = range(1, 9)
DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT, DEST_ADDR_FAMILY = 1, 2, 3, 4, 11
IP_VS_CONN_F_FWD_MASK = 0x7
_NLMSGHDR = struct.Struct("=IHHII")
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: the enum's & runs Python code, once per datagram
_GENLHDR_LEN = 4
_NLA_HEADER = struct.Struct("=HH").unpack_from  # (length, type): bound once, called per attribute


def nla_parse(data: bytes, start: int = 0, end: int | None = None) -> dict[int, bytes]:
    """Netlink attributes type -> payload (the last one wins, as in the kernel's nla_parse)."""
    end = len(data) if end is None else end
    attrs = {}
    header = _NLA_HEADER
    while start + 4 <= end:
        length, kind = header(data, start)
        if length < 4 or start + length > end:
            break  # truncated: keep what was whole
        attrs[kind & NLA_TYPE_MASK] = data[start + 4:start + length]
        start += (length + 3) & ~3
    return attrs


def nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)


def _u(attrs: dict[int, bytes], kind: int, fmt: str = "=I") -> int:
    value = attrs.get(kind)
    return struct.unpack_from(fmt, value)[0] if value and len(value) >= struct.calcsize(fmt) else 0


def _ip(raw: bytes | None, family: int) -> str | None:
    if raw is None:
        return None
    if family == socket.AF_INET6 and len(raw) >= 16:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return socket.inet_ntop(socket.AF_INET, raw[:4]) if len(raw) >= 4 else None


def decode_ipvs_service(genl: bytes) -> IpvsService:
    """An IPVS service from the attributes of an IPVS_CMD_GET_SERVICE reply (after its genl header)."""
    svc = nla_parse(nla_parse(genl).get(IPVS_CMD_ATTR_SERVICE, b""))
    family = _u(svc, SVC_AF, "=H")
    return IpvsService(family=family, fwmark=_u(svc, SVC_FWMARK), protocol=_u(svc, SVC_PROTOCOL, "=H"),
                       address=_ip(svc.get(SVC_ADDR), family), port=_u(svc, SVC_PORT, ">H"),
                       scheduler=svc.get(SVC_SCHED_NAME, b"").split(b"\0", 1)[0].decode(errors="replace"),
                       flags=_u(svc, SVC_FLAGS), timeout=_u(svc, SVC_TIMEOUT))


# The kernel (ip_vs_genl_fill_dest) writes a destination's attributes ADDR (16 bytes), PORT,
# FWD_METHOD, WEIGHT first. The fast path reads those four at their fixed offsets when the
# headers say they are there, and walks the rest only for ADDR_FAMILY, building nothing; any
# other layout takes the general path.
_DEST_HEAD = struct.Struct("=HH16sHH2s2xHHIHHI")  # ADDR, PORT (+pad), FWD_METHOD, WEIGHT
_DEST_HEAD_TYPES = (20, DEST_ADDR, 6, DEST_PORT, 8, DEST_FWD_METHOD, 8, DEST_WEIGHT)
_U16 = struct.Struct("=H").unpack_from


def decode_ipvs_dest(genl: bytes, service_family: int = AF_INET) -> IpvsDest:
    """A destination from an IPVS_CMD_GET_DEST reply; its family is the service's unless it says."""
    if len(genl) >= 4 + _DEST_HEAD.size:  # the message is the one nested attribute DEST: read in place
        outer, okind = _NLA_HEADER(genl, 0)
        if okind & NLA_TYPE_MASK == IPVS_CMD_ATTR_DEST and 4 + _DEST_HEAD.size <= outer <= len(genl):
            (alen, akind, addr, plen, pkind, port, flen, fkind, fwd, wlen, wkind, weight
             ) = _DEST_HEAD.unpack_from(genl, 4)
            if (alen, akind & NLA_TYPE_MASK, plen, pkind & NLA_TYPE_MASK, flen, fkind & NLA_TYPE_MASK,
                    wlen, wkind & NLA_TYPE_MASK) == _DEST_HEAD_TYPES:
                family = _dest_family(genl, 4 + _DEST_HEAD.size, outer) or service_family
                method = fwd & IP_VS_CONN_F_FWD_MASK
                return IpvsDest(address=str(_ip(addr, family)), port=int.from_bytes(port, "big"),
                                weight=weight, forwarding=FWD_METHODS.get(method, str(method)))
    data = nla_parse(genl).get(IPVS_CMD_ATTR_DEST, b"")
    dest = nla_parse(data)
    family = _u(dest, DEST_ADDR_FAMILY, "=H") or service_family
    method = _u(dest, DEST_FWD_METHOD) & IP_VS_CONN_F_FWD_MASK
    return IpvsDest(address=str(_ip(dest.get(DEST_ADDR), family)), port=_u(dest, DEST_PORT, ">H"),
                    weight=_u(dest, DEST_WEIGHT), forwarding=FWD_METHODS.get(method, str(method)))


def _dest_family(data: bytes, start: int, end: int) -> int:
    """IPVS_DEST_ATTR_ADDR_FAMILY between start and end, or 0."""
    header = _NLA_HEADER
    while start + 4 <= end:
        length, kind = header(data, start)
        if length < 4 or start + length > end:
            return 0
        kind &= NLA_TYPE_MASK
        if kind == DEST_ADDR_FAMILY:
            return _U16(data, start + 4)[0] if length >= 6 else 0
        start += (length + 3) & ~3
    return 0


def ipvs_service_key(svc: IpvsService) -> bytes:
    """The nested IPVS_CMD_ATTR_SERVICE that names one service in a destination dump."""
    inner = nla(SVC_AF, struct.pack("=H", svc.family))
    if svc.fwmark:
        inner += nla(SVC_FWMARK, struct.pack("=I", svc.fwmark))
    else:
        family = socket.AF_INET6 if svc.family == socket.AF_INET6 else socket.AF_INET
        addr = socket.inet_pton(family, svc.address or ("::" if family == socket.AF_INET6 else "0.0.0.0"))
        inner += (nla(SVC_PROTOCOL, struct.pack("=H", svc.protocol)) + nla(SVC_ADDR, addr.ljust(16, b"\0"))
                  + nla(SVC_PORT, struct.pack(">H", svc.port)))
    return nla(IPVS_CMD_ATTR_SERVICE, inner)


class NetlinkSocket:
    """One netlink socket, in the namespace of the thread that opens it; one request at a
    time, read to its end (NLMSG_DONE for a dump, the ACK otherwise)."""

    def __init__(self, protocol: int) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.seq = 0
        # One receive buffer for the socket's life: a dump of 1,250 IPVS services is 2,500
        # datagrams, and a fresh 64 KiB buffer for each cost more than reading it.
        self.buffer = bytearray(1 << 16)
        self.view = memoryview(self.buffer)

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def request(self, kind: int, body: bytes, dump: bool, skip: int = 0) -> list[bytes]:
        """The payload (after the netlink header) of every reply message. A dump the kernel says
        was interrupted is read again; one interrupted every time is an error (OSError EAGAIN),
        never a partial table that would read as missing or stale entries."""
        for _ in range(DUMP_TRIES if dump else 1):
            replies, interrupted = self._exchange(kind, body, dump, skip)
            if not interrupted:
                return replies
        raise OSError(errno.EAGAIN, f"the table kept changing while it was read (netlink dump "
                                    f"interrupted {DUMP_TRIES} times in a row)")

    def _exchange(self, kind: int, body: bytes, dump: bool, skip: int = 0) -> tuple[list[bytes], bool]:
        """One request's replies, each without its netlink header and `skip` more bytes (the
        generic netlink header): one copy per message, straight from the receive buffer."""
        self.seq += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, self.seq, 0) + body)
        replies = []
        interrupted = False
        data, view, header, seq_now = self.buffer, self.view, _NLMSGHDR.unpack_from, self.seq
        while True:
            # one datagram; a dump fills <= 32 KiB
            size, _, flags, _ = self.sock.recvmsg_into([data])
            if flags & _MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, "netlink reply larger than 64 KiB")
            offset = 0
            while offset + 16 <= size:  # 16: the netlink header
                length, kind, msg_flags, seq, _ = header(data, offset)
                if length < 16:
                    raise OSError(errno.EBADMSG, "malformed netlink reply")
                start, offset = offset + 16, offset + ((length + 3) & ~3)
                if seq != seq_now:
                    continue  # a late reply to an earlier request
                interrupted |= bool(msg_flags & NLM_F_DUMP_INTR)
                if kind == NLMSG_DONE:
                    return replies, interrupted
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, start)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return replies, interrupted  # the ACK
                replies.append(bytes(view[start + skip:start + length - 16]))


class GenlSocket(NetlinkSocket):
    def __init__(self) -> None:
        super().__init__(NETLINK_GENERIC)

    def request(self, family: int, cmd: int, version: int, attrs: bytes = b"",  # type: ignore[override]
                dump: bool = False) -> list[bytes]:
        """The attributes (after the genl header) of every reply message."""
        body = struct.pack("=BBH", cmd, version, 0) + attrs
        return super().request(family, body, dump, skip=_GENLHDR_LEN)

    def family_id(self, name: str) -> int:
        [reply] = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1,
                               nla(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"))
        return _u(nla_parse(reply), CTRL_ATTR_FAMILY_ID, "=H")


class IpvsUnavailable(Exception):
    pass


def read_ipvs() -> list[IpvsService]:
    """Dump the IPVS table of the current thread's namespace: services, then each one's dests."""
    with GenlSocket() as sock:
        try:
            family = sock.family_id("IPVS")
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise IpvsUnavailable("this kernel has no IPVS (generic netlink family IPVS not found; "
                                      "is the ip_vs module available?)") from exc
            raise
        services = [decode_ipvs_service(m) for m in
                    sock.request(family, IPVS_CMD_GET_SERVICE, IPVS_GENL_VERSION, dump=True)]
        for svc in services:
            svc.dests = [decode_ipvs_dest(m, svc.family) for m in
                         sock.request(family, IPVS_CMD_GET_DEST, IPVS_GENL_VERSION, ipvs_service_key(svc),
                                      dump=True)]
        return services


def read_addresses() -> dict[str, list[tuple[str, int]]]:
    """IPv4 addresses by interface name in the current thread's namespace (rtnetlink dumps)."""
    with NetlinkSocket(NETLINK_ROUTE) as sock:
        names = {}
        for msg in sock.request(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), dump=True):
            index = _IFINFOMSG.unpack_from(msg)[2]
            name = nla_parse(msg, _IFINFOMSG.size).get(IFLA_IFNAME, b"")
            names[index] = name.split(b"\0", 1)[0].decode(errors="replace")
        out: dict[str, list[tuple[str, int]]] = {}
        for msg in sock.request(RTM_GETADDR, _IFADDRMSG.pack(AF_INET, 0, 0, 0, 0), dump=True):
            family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(msg)
            if family != AF_INET:
                continue
            attrs = nla_parse(msg, _IFADDRMSG.size)
            ip = _ip(attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS), AF_INET)
            out.setdefault(names.get(index, str(index)), []).append((ip, prefixlen))
        return out


# --- netlink: an overlay namespace (VXLAN device, neighbours, FDB) --------------------
# libnetwork's overlay driver keeps, per network and node, one namespace with a bridge (the
# subnet's gateway) and a VXLAN device enslaved to it, and programs every remote endpoint
# twice (drivers/overlay/peerdb.go peerAddOp): a permanent neighbour (endpoint IP -> MAC) and a
# permanent `self` FDB entry (MAC -> the VTEP address of the endpoint's node) on the VXLAN device.

RTM_GETNEIGH = 30
IFLA_ADDRESS, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 4, 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VXLAN_FLAG_ATTRS = {"learning": 7, "proxy": 11, "l2miss": 13, "l3miss": 14}  # IFLA_VXLAN_*, u8
IFLA_VXLAN_ID, IFLA_VXLAN_PORT = 1, 15
NDA_DST, NDA_LLADDR = 1, 2
AF_BRIDGE = 7
NUD_PERMANENT, NTF_SELF = 0x80, 0x02
IFF_UP = 0x1
_NDMSG = struct.Struct("=B3xiHBB")  # family, ifindex, state, flags, type


def _mac(raw: bytes | None) -> str | None:
    return raw.hex(":") if raw else None  # 30x the join of formatted bytes: one per row of 20,000


def decode_link(msg: bytes) -> dict:
    """One RTM_NEWLINK message: what the overlay check reads of an interface."""
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(msg)
    attrs = nla_parse(msg, _IFINFOMSG.size)
    info = nla_parse(attrs.get(IFLA_LINKINFO, b""))
    kind = info.get(IFLA_INFO_KIND, b"").split(b"\0", 1)[0].decode(errors="replace") or None
    link = {"index": index, "name": attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace"),
            "kind": kind, "mtu": _u(attrs, IFLA_MTU), "master": _u(attrs, IFLA_MASTER) or None,
            "up": bool(flags & IFF_UP), "mac": _mac(attrs.get(IFLA_ADDRESS)), "vxlan": None}
    if kind == "vxlan":
        data = nla_parse(info.get(IFLA_INFO_DATA, b""))
        link["vxlan"] = {"vni": _u(data, IFLA_VXLAN_ID), "port": _u(data, IFLA_VXLAN_PORT, ">H"),
                         **{name: bool(_u(data, kind_, "=B")) for name, kind_ in VXLAN_FLAG_ATTRS.items()}}
    return link
