"""Network namespaces: entering one (setns on a file ssd opens itself, never created), and
reading a whole namespace's datapath at once (IPVS, iptables, addresses, sysctls) as raw data
the read-ahead child can send back, then turned into the model's Datapath."""
from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any

from ssd.base import _short
from ssd.kernel.iptables import (
    docker_chains, merge_rulesets, parse_iptables_save, read_iptables, unreadable_tables,
)
from ssd.kernel.netlink import IpvsUnavailable, read_addresses, read_ipvs
from ssd.kernel.procfs import read_conntrack, read_sysctls
from ssd.model import Datapath, IpvsDest, IpvsService, Link, Neighbour, OverlayDatapath


# --- namespaces -----------------------------------------------------------------------

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes  # Python 3.11 only: not worth importing on every run
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def entered_netns(path: str) -> Iterator[None]:
    """Run the block (and the processes it starts) inside the network namespace at path.

    Opens the namespace file itself and never creates one (pyroute2's netns helpers do
    when the path is missing). setns() moves only the calling thread; it moves back after.
    """
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(target)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise OSError(errno.EINVAL, "not a network namespace (stale file?)") from exc
            raise
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def read_namespace(path: str, backends: dict[str, str], want_ipvs: bool = True) -> dict:
    """Everything ssd compares, read inside one namespace ("": this one), as plain JSON data.

    Kept raw (iptables-save text per backend, the decoded IPVS table) so that a snapshot
    holds what the kernel said, and checking it later runs the same parser as a live run.
    """
    raw: dict[str, Any] = {"error": None, "ipvs": None, "ipvs_error": None, "ipvs_missing": False,
                           "iptables": {}, "iptables_error": None, "addresses": None, "sysctls": None}
    try:
        with entered_netns(path) if path else contextlib.nullcontext():
            if want_ipvs:
                try:
                    raw["ipvs"] = [ipvs_raw(s) for s in read_ipvs()]
                except IpvsUnavailable as exc:
                    raw["ipvs_error"], raw["ipvs_missing"] = str(exc), True
                except Exception as exc:  # noqa: BLE001 - any netlink failure: report, check the rest
                    raw["ipvs_error"] = f"IPVS dump failed: {_short(exc)}"
                raw["sysctls"] = read_sysctls()
                raw["conntrack"] = read_conntrack()
            raw["iptables"], raw["iptables_error"] = read_iptables(backends)
            raw["addresses"] = read_addresses()
    except FileNotFoundError:
        raw["error"] = f"namespace {path} does not exist (it may have vanished mid-run)"
    except OSError as exc:
        raw["error"] = f"cannot read namespace {path}: {exc.strerror or _short(exc)}"
    return raw


def ipvs_raw(svc: IpvsService) -> dict:
    """An IPVS service as plain data (dataclasses.asdict deep-copies: 10x slower at 20,000 dests)."""
    return {"family": svc.family, "fwmark": svc.fwmark, "protocol": svc.protocol,
            "address": svc.address, "port": svc.port, "scheduler": svc.scheduler, "flags": svc.flags,
            "timeout": svc.timeout,
            "dests": [{"address": d.address, "port": d.port, "weight": d.weight, "forwarding": d.forwarding}
                      for d in svc.dests]}


def datapath_from_raw(path: str, raw: dict) -> Datapath:
    """The Datapath the checks compare, from read_namespace()'s data (live or snapshot)."""
    ipvs = None
    if raw.get("ipvs") is not None:
        ipvs = [IpvsService(**{**s, "dests": [IpvsDest(**d) for d in s.get("dests") or []]})
                for s in raw["ipvs"]]
    texts: dict[str, str] = raw.get("iptables") or {}
    parsed = {backend: parse_iptables_save(text) for backend, text in texts.items()}
    addresses = raw.get("addresses")
    iptables_error = raw.get("iptables_error")
    unreadable = unreadable_tables(texts)
    if unreadable:
        iptables_error = (f"this iptables cannot read table(s) {', '.join(unreadable)}, written by a "
                          "newer iptables ('is incompatible'): run ssd with an iptables at least as "
                          "new as the host's (the ssd image, or the host's own binaries)")
    return Datapath(
        path=path, name=os.path.basename(path) if path else "host", ipvs=ipvs,
        ipvs_error=raw.get("ipvs_error"),
        rules=merge_rulesets(parsed.values()) if parsed and not unreadable else None,
        backends_with_docker_chains=[b for b, rules in parsed.items() if docker_chains(rules)],
        iptables_error=iptables_error,
        addresses=None if addresses is None else
        {name: [(ip, int(plen)) for ip, plen in addrs] for name, addrs in addresses.items()},
        sysctls=raw.get("sysctls"), error=raw.get("error"),
        ipvs_missing=bool(raw.get("ipvs_missing")), conntrack=raw.get("conntrack"))


def overlay_from_raw(path: str, raw: dict) -> OverlayDatapath:
    links = None if raw.get("links") is None else [
        Link(index=int(x["index"]), name=str(x["name"]), kind=x.get("kind"), mtu=int(x.get("mtu") or 0),
             master=x.get("master"), up=bool(x.get("up")), vxlan=x.get("vxlan")) for x in raw["links"]]
    names = {link.index: link.name for link in links or []}

    def rows(key: str) -> list[Neighbour] | None:
        if raw.get(key) is None:
            return None
        return [Neighbour(names.get(r["ifindex"]) or str(r["ifindex"]), r.get("dst"), r.get("mac"),
                          bool(r.get("permanent")), bool(r.get("self"))) for r in raw[key]]
    return OverlayDatapath(path=path, name=os.path.basename(path), links=links,
                           neighbours=rows("neighbours"), fdb=rows("fdb"), error=raw.get("error"))
