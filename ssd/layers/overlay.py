"""Layer "overlay": each overlay network's namespace (the VXLAN device, a neighbour and an FDB
entry per remote endpoint, ESP state when encrypted) against NetworkDB. Its reader, its checks,
its summary and its block."""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from ssd.base import _ip_order, count, shq
from ssd.catalog import CheckInfo, Layer, declare_layer, register_check
from ssd.kernel.netlink import VXLAN_FLAG_ATTRS
from ssd.kernel.overlay import IPPROTO_ESP, OVERLAY_ESP_MARK, XFRM_POLICY_OUT
from ssd.model import Finding, NotChecked, OverlaySummary, TERMINAL

if TYPE_CHECKING:
    from ssd.collect import Collector
    from ssd.model import (
        Neighbour, NetworkResult, NetworkView, NodeState, OverlayDatapath, Reading, Rule, Ruleset,
        TaskView,
    )


# --- the overlay: VXLAN device, neighbours and FDB against NetworkDB ------------------

def vxlan_mtu(view: NetworkView) -> int:
    """drivers/overlay maxMTU(): the network's MTU (1500) less VXLAN, and ESP when encrypted."""
    mtu = (view.mtu or 1500) - 50
    if view.encrypted:
        mtu -= 26
        mtu -= mtu % 4
    return mtu


def local_vteps(view: NetworkView, state: NodeState) -> frozenset[str]:
    """This node's VTEP addresses: its advertise address, and the Host IP NetworkDB gives its
    own endpoints (the data-path address, when --data-path-addr sets one). Once per network and
    sample: a dozen checks and reports ask, each a pass over 20,000 endpoints on a big swarm."""
    key = ("local_vteps", view.id)
    if key not in state.memo:
        mine = {ep.endpoint_id for ep in view.endpoints.values()}
        state.memo[key] = frozenset({t.host_ip for t in view.all_endpoints() if t.endpoint_id in mine
                                     and t.host_ip} | ({state.node_addr} if state.node_addr else set()))
    return state.memo[key]


def remote_endpoints(view: NetworkView, state: NodeState) -> dict[str, TaskView]:
    """IP -> endpoint for every endpoint NetworkDB places on another node: what the overlay
    driver must have programmed here (its peer table, drivers/overlay/joinleave.go). Computed
    once per network and sample; callers only read it."""
    key = ("remote_endpoints", view.id)
    if key not in state.memo:
        mine = {ep.endpoint_id for ep in view.endpoints.values()}
        local_ips = {ep.ip for ep in view.endpoints.values()}
        vteps = local_vteps(view, state)
        state.memo[key] = {t.ip: t for t in view.all_endpoints()
                           if t.endpoint_id not in mine and t.ip not in local_ips and t.host_ip
                           and t.host_ip not in vteps}
    return state.memo[key]


def _overlay_finding(check: str, message: str, view: NetworkView, ov: OverlayDatapath,
                     subject: str | None, expected: Any, actual: Any, service: str | None = None,
                     what: str = "ip neigh show; bridge fdb show") -> Finding:
    hint = "; ".join(f"nsenter --net={shq(ov.path)} {cmd.strip()}" for cmd in what.split(";"))
    return Finding(check, message, network=view.name, namespace=ov.name, service=service,
                   subject=subject, expected=expected, actual=actual, hint=hint)


@register_check(
    CheckInfo(
        "overlay-namespace-missing",
        "A network with endpoints on this node has no overlay namespace (<epoch>-<network id[:10]>).",
        "Its local tasks cannot reach other nodes; remove the network's local tasks (or restart "
        "dockerd) so that the namespace is created again.", layer="overlay"),
    scope="network")
def check_overlay_namespace(view: NetworkView, state: NodeState) -> list[Finding]:
    if state.overlays is None or view.id not in state.overlays or state.overlays[view.id] is not None:
        return []
    return [Finding("overlay-namespace-missing",
                    f"network {view.name} has {count(len(view.endpoints), 'endpoint')} on this node but no "
                    f"overlay namespace *-{view.id[:10]} in {state.netns_dir}",
                    network=view.name, namespace=f"*-{view.id[:10]}", subject=view.id[:12],
                    expected="the overlay driver's namespace", actual="absent",
                    hint=f"ls {shq(state.netns_dir)}; docker network inspect -v {shq(view.name)}")]


@register_check(
    CheckInfo(
        "overlay-vxlan-config",
        "The network's VXLAN device is missing, down, or its VNI, UDP port, bridge, MTU or flags "
        "differ from what the engine sets. A network with several subnets has one device per subnet, "
        "made when the first endpoint in that subnet joins or is learnt: a subnet no endpoint uses yet "
        "needs none.",
        "Cross-node traffic on that network is lost or fragmented; restart dockerd (it recreates the "
        "namespace when the network's last local endpoint leaves).", layer="overlay"),
    scope="overlay", needs=("links",))
def check_vxlan_config(subject: tuple[NetworkView, OverlayDatapath], state: NodeState) -> list[Finding]:
    view, ov = subject
    devices = {link.vxlan["vni"]: link for link in ov.vxlans() if link.vxlan}
    masters = {link.index: link for link in ov.links or []}
    findings = []

    def bad(what: str, device: str, expected: Any, actual: Any) -> None:
        findings.append(_overlay_finding(
            "overlay-vxlan-config", f"network {view.name}: VXLAN device {device} {what}: expected "
            f"{expected}, found {actual}", view, ov, f"{device} {what.split()[0]}", expected, actual,
            what="ip -d link show"))
    used = subnets_in_use(view)
    for i, vni in enumerate(view.vnis):
        subnet = view.subnets[i] if i < len(view.subnets) else None  # VNIs are in IPAM's order
        link = devices.get(vni)
        if link is None and (subnet is None or subnet in used):
            bad("VNI", "(none)", vni, sorted(devices) or "no VXLAN device")
        if link is None:
            continue
        if state.data_path_port is not None and link.vxlan["port"] != state.data_path_port:
            bad("UDP port", link.name, state.data_path_port, link.vxlan["port"])
        master = masters.get(link.master or -1)
        if master is None or master.kind != "bridge":
            bad("bridge", link.name, "enslaved to the subnet's bridge",
                master.name if master else "no master")
        if link.mtu != vxlan_mtu(view):
            bad("MTU", link.name, vxlan_mtu(view), link.mtu)
        off = sorted(k for k in VXLAN_FLAG_ATTRS if not link.vxlan.get(k))
        if off:
            bad("flags", link.name, "learning proxy l2miss l3miss", "without " + " ".join(off))
        if not link.up:
            bad("state", link.name, "up", "down")
    for vni, link in sorted(devices.items()):
        if view.vnis and vni not in view.vnis:
            bad("VNI", link.name, " or ".join(map(str, view.vnis)), vni)
    return findings


def subnets_in_use(view: NetworkView) -> set[str]:
    """The network's IPv4 subnets holding an endpoint, here or listed: the overlay driver makes a
    subnet's bridge and VXLAN device when the first endpoint in it joins or is learnt from a
    peer (joinSubnetSandbox), so a subnet no endpoint uses yet has none."""
    # As integers (inet_aton): ipaddress objects cost 15 us each, at 20,000 endpoints a network.
    listed = {t.ip for t in view.all_endpoints() if t.ip} | {e.ip for e in view.endpoints.values() if e.ip}
    ips = {int.from_bytes(key[1], "big") for key in map(_ip_order, listed) if key[0] == 0}
    used = set()
    for subnet in view.subnets:
        net = ipaddress.ip_network(subnet, strict=False)
        if net.version != 4:
            continue
        base, mask = int(net.network_address), int(net.netmask)
        if any(ip & mask == base for ip in ips):
            used.add(subnet)
    return used


OVERLAY_PEER_IDS = ("overlay-neighbor-missing", "overlay-neighbor-stale", "overlay-fdb-missing",
                    "overlay-fdb-stale", "overlay-fdb-wrong-node")


@register_check(
    CheckInfo(
        "overlay-esp-missing",
        "An encrypted overlay has remote endpoints on a node this node has no ESP state (SA out, SA in) "
        "or IPsec policy for.",
        "Traffic to that node on encrypted networks is dropped (moby#30727, #30766); allow ESP (IP "
        "protocol 50) between the nodes, then restart dockerd.", layer="overlay"),
    scope="network")
def check_overlay_esp(view: NetworkView, state: NodeState) -> list[Finding]:
    """An encrypted network: every node it has remote endpoints on needs, in this node's own
    namespace, an ESP SA towards it, one from it, and the outbound policy marked 0xD0C4E3."""
    if not view.encrypted or not state.xfrm or state.xfrm.get("error"):
        return []
    states = [x for x in state.xfrm.get("states") or [] if x.get("proto") == IPPROTO_ESP]
    policies = [p for p in state.xfrm.get("policies") or []
                if p.get("dir") == XFRM_POLICY_OUT and p.get("mark") == OVERLAY_ESP_MARK]
    findings = []
    for vtep in sorted({t.host_ip for t in remote_endpoints(view, state).values() if t.host_ip}):
        lacking = [what for what, present in (
            ("ESP SA out", any(x.get("dst") == vtep for x in states)),
            ("ESP SA in", any(x.get("src") == vtep for x in states)),
            ("IPsec policy out", any(p.get("dst") == vtep for p in policies))) if not present]
        if lacking:
            findings.append(Finding(
                "overlay-esp-missing", f"network {view.name} is encrypted, but this node has no "
                f"{', no '.join(lacking)} for node {vtep}", network=view.name, namespace="host",
                subject=vtep, expected=["ESP SA out", "ESP SA in", "IPsec policy out"], actual=lacking,
                hint="ip xfrm state; ip xfrm policy; iptables-save -t mangle | grep 0xd0c4e3"))
    return findings


BPF_JEQ_K, BPF_RSH_K = 0x15, 0x74  # jump if A == k; A >>= k (classic BPF opcodes)


def _u32_vni(rule: Rule) -> int | None:
    """The VNI a rule matches on the VXLAN header, in either form libnetwork writes the match
    (drivers/overlay): xt_u32, '0>>22&0x3C@12&0xFFFFFF00=<VNI << 8>' (iptables-save prints it in
    hex), or xt_bpf (--bytecode "n,op jt jf k,..."), whose program loads the VNI word and jumps on
    equality with a constant: the VNI itself after a right shift by 8 (Debian's 28.5.2, read in
    the lab), or the VNI shifted left by 8 after a mask (moby's bpf.go on master)."""
    test = rule.get("--u32")
    if test and "=" in test:
        try:
            return int(test.rsplit("=", 1)[1].split(":")[0], 0) >> 8
        except ValueError:
            return None
    shifted = False
    for instruction in (rule.get("--bytecode") or "").split(",")[1:]:
        fields = instruction.split()
        if len(fields) != 4 or not all(f.isdigit() for f in fields):
            return None
        op, k = int(fields[0]), int(fields[3])
        if op == BPF_RSH_K and k == 8:
            shifted = True
        elif op == BPF_JEQ_K:
            return k if shifted else k >> 8
    return None


def encryption_rules(rules: Ruleset, vni: int) -> dict[str, bool]:
    """Whether the host has an encrypted overlay's two rules for one VNI (drivers/overlay
    encryption.go): mangle OUTPUT marks its VXLAN 0xD0C4E3, which the IPsec policy matches; filter
    INPUT drops its VXLAN received in cleartext (20.10: after an ACCEPT of --pol ipsec; 23.0+: one
    rule with --pol none, inserted first)."""
    mark = any(r.target == "MARK" and r.mark is not None and r.mark[0] == OVERLAY_ESP_MARK
               and _u32_vni(r) == vni for r in rules.get("mangle", {}).get("OUTPUT", []))
    drop = any(r.target == "DROP" and _u32_vni(r) == vni and r.get("--pol") != "ipsec"
               for r in rules.get("filter", {}).get("INPUT", []))
    return {"mangle OUTPUT MARK 0xd0c4e3": mark, "filter INPUT DROP of cleartext VXLAN": drop}


@register_check(
    CheckInfo(
        "overlay-encryption-rules",
        "The host lacks an encrypted overlay's iptables rules for one of its VNIs: the mangle OUTPUT "
        "mark 0xD0C4E3 its IPsec policy matches, or the filter INPUT rule that drops its VXLAN received "
        "in cleartext.",
        "Without the mark the network's traffic to other nodes is dropped; without the drop, cleartext "
        "VXLAN is accepted. A firewall reload removes them (dockerd restores only the ingress rules): "
        "restart dockerd on this node.", layer="overlay"),
    scope="overlay", needs=("links",))
def check_encryption_rules(subject: tuple[NetworkView, OverlayDatapath], state: NodeState) -> list[Finding]:
    view, ov = subject
    if not view.encrypted or state.host is None or state.host.rules is None:
        return []
    findings = []
    for vni in sorted(link.vxlan["vni"] for link in ov.vxlans() if link.vxlan):
        lacking = [what for what, present in encryption_rules(state.host.rules, vni).items() if not present]
        if not lacking:
            continue
        effect = ("its VXLAN leaves unmarked, so no IPsec policy matches it: other nodes drop it as "
                  "cleartext" if lacking[0].startswith("mangle") else
                  "VXLAN received in cleartext is accepted on an encrypted network")
        findings.append(Finding(
            "overlay-encryption-rules", f"network {view.name} is encrypted, but the host lacks the "
            f"{' and the '.join(lacking)} rule{'s' if len(lacking) > 1 else ''} for its VNI {vni}: {effect}",
            network=view.name, namespace="host", subject=f"VNI {vni}",
            expected=list(encryption_rules(state.host.rules, vni)), actual=list(lacking),
            hint="iptables-save -t mangle | grep -i 0xd0c4e3; iptables-save -t filter | grep u32"))
    return findings


@register_check(
    CheckInfo(
        "overlay-neighbor-missing",
        "A remote endpoint that NetworkDB lists has no permanent neighbour entry on the VXLAN device.",
        "This node cannot reach that task (moby#52661); `docker service update --force <service>` "
        "announces it again; else restart dockerd.", layer="overlay"),
    CheckInfo(
        "overlay-neighbor-stale",
        "A permanent neighbour entry on the VXLAN device is no current remote endpoint (or is a local "
        "one).",
        "Traffic to that IP goes to a dead or wrong endpoint (moby#35401); restart dockerd, or "
        "`ip neigh del` it in the overlay namespace.", layer="overlay"),
    CheckInfo(
        "overlay-fdb-missing",
        "A remote endpoint's MAC has no permanent FDB entry towards its node on the VXLAN device.",
        "Frames to that task are flooded or lost (moby#52661); `docker service update --force "
        "<service>`; else restart dockerd.", layer="overlay"),
    CheckInfo(
        "overlay-fdb-stale",
        "A permanent FDB entry on the VXLAN device belongs to no current endpoint, or points to a node "
        "that is no peer of the network.",
        "A reused IP may be sent to the wrong machine (moby#35807); restart dockerd, or `bridge fdb "
        "del` it in the overlay namespace.", layer="overlay"),
    CheckInfo(
        "overlay-fdb-wrong-node",
        "The FDB entry of a remote endpoint points to another node than the one NetworkDB says "
        "hosts it.",
        "Packets for that task go to the wrong node (moby#49908); `docker service update --force "
        "<service>`; else restart dockerd on this node.", layer="overlay"),
    scope="overlay", needs=("neighbours", "fdb"))
def check_overlay_peers(subject: tuple[NetworkView, OverlayDatapath], state: NodeState) -> list[Finding]:
    """Every remote endpoint: a permanent neighbour (IP -> MAC) and a permanent self FDB entry
    (MAC -> its node's VTEP) on the VXLAN device; nothing else but one unlisted endpoint per
    peer node (its load balancer or ingress-sbox endpoint, which network inspect does not list,
    but for ingress on 20.10)."""
    return peer_verdicts(*subject, state)[0]


def peer_verdicts(view: NetworkView, ov: OverlayDatapath, state: NodeState
                  ) -> tuple[list[Finding], list[str]]:
    """The peer check's findings, and the unlisted entries a worker cannot judge (computed once
    per sample: the check and the network's summary both ask)."""
    key = ("peer_verdicts", view.id)
    if key not in state.memo:
        state.memo[key] = _peer_verdicts(view, ov, state)
    return state.memo[key]


def _peer_verdicts(view: NetworkView, ov: OverlayDatapath, state: NodeState
                   ) -> tuple[list[Finding], list[str]]:
    remote = remote_endpoints(view, state)
    owner = {t.ip: svc.name for svc in view.services.values() for t in svc.tasks}
    neighbours = {n.ip: n for n in ov.neighbours or [] if n.permanent and n.ip}
    fdb = {f.mac: f for f in ov.fdb or [] if f.permanent and f.self_ and f.mac and f.ip}
    findings = []
    explained: set[str] = set()
    for ip, task in remote.items():  # the findings are put in address order below, not the 20,000
        neigh = neighbours.get(ip)
        entry = fdb.get(neigh.mac or "") if neigh is not None else None
        if entry is not None and entry.ip == task.host_ip:
            explained.add(neigh.mac or "")
            continue  # programmed as it should be: the common case, 20,000 times on a big swarm
        where = f"network {view.name}: {_endpoint_label(task, owner)} ({ip}) on node {task.host_ip}"
        if neigh is None:
            # Its FDB row, if left, is not stale: overlay MACs are 02:42 + the IP (ov_endpoint.go).
            explained.add(mac_from_ip(ip))
            findings.append(_overlay_finding(
                "overlay-neighbor-missing", f"{where} has no permanent neighbour entry on the VXLAN "
                "device", view, ov, ip, f"{ip} lladdr <its MAC> PERMANENT", "absent", owner.get(ip)))
            continue
        explained.add(neigh.mac or "")
        entry = fdb.get(neigh.mac or "")
        if entry is None:
            findings.append(_overlay_finding(
                "overlay-fdb-missing", f"{where} (MAC {neigh.mac}) has no permanent FDB entry towards "
                f"{task.host_ip}", view, ov, ip, f"{neigh.mac} dst {task.host_ip} self permanent",
                "absent", owner.get(ip)))
        elif entry.ip != task.host_ip:
            findings.append(_overlay_finding(
                "overlay-fdb-wrong-node", f"{where}: its FDB entry (MAC {neigh.mac}) points to "
                f"{entry.ip}, not to {task.host_ip}", view, ov, ip, task.host_ip, entry.ip, owner.get(ip)))
    findings.sort(key=lambda f: _ip_order(f.subject or ""))
    unverifiable: list[str] = []
    findings += _stale_peers(view, ov, state, remote, neighbours, fdb, explained, unverifiable)
    return findings, unverifiable


def mac_from_ip(ip: str) -> str:
    """The MAC libnetwork gives an endpoint with none set (netutils.GenerateMACFromIP)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed[-4:])


def _endpoint_label(task: TaskView, owner: dict[str, str]) -> str:
    return f"task {task.name}" if task.ip in owner else f"endpoint {task.name or task.endpoint_id[:12]}"


def _stale_peers(view: NetworkView, ov: OverlayDatapath, state: NodeState, remote: dict[str, TaskView],
                 neighbours: dict[str, Neighbour], fdb: dict[str, Neighbour], explained: set[str],
                 unverifiable: list[str]) -> list[Finding]:
    """Entries no listed endpoint explains. NetworkDB lists a task only once it is started (or,
    with a health check, healthy: executor controller.go activateServiceBinding), while the
    overlay programs it from its join: a manager explains such an entry by swarm's task at that
    address; a worker cannot, and reports it as unverifiable rather than stale."""
    local_ips = {ep.ip for ep in view.endpoints.values()}
    being_born = {ip for t in (state.swarm_tasks or {}).values() if t.state not in TERMINAL
                  for ip in [t.addresses.get(view.id)] if ip}
    vteps = local_vteps(view, state)
    peers = {ip for _, ip in view.peers} | {t.host_ip for t in view.all_endpoints() if t.host_ip}
    # One unlisted endpoint per remote peer node: its load balancer, unless NetworkDB lists that
    # (20.10 lists ingress's among the endpoints of no service, as ingress-endpoint).
    listed_lb = {t.host_ip for t in view.others if t.name.endswith("-endpoint")}
    allowance = peers - vteps - listed_lb
    findings = []
    unlisted = ((ip, neigh) for ip, neigh in neighbours.items() if ip not in remote)
    for ip, neigh in sorted(unlisted, key=lambda kv: _ip_order(kv[0])):
        entry = fdb.get(neigh.mac or "")
        dst = entry.ip if entry else None
        if ip not in local_ips and dst in peers - vteps and ip in being_born:
            explained.add(neigh.mac or "")
            continue
        if ip not in local_ips and dst in allowance:
            allowance.discard(dst)
            explained.add(neigh.mac or "")
            continue
        if ip not in local_ips and dst in peers - vteps and state.swarm_tasks is None:
            unverifiable.append(ip)
            explained.add(neigh.mac or "")
            continue
        why = ("is a local endpoint, programmed as remote" if ip in local_ips else
               "is no endpoint NetworkDB lists" + (f" (FDB: node {dst})" if dst else ""))
        findings.append(_overlay_finding(
            "overlay-neighbor-stale", f"network {view.name}: permanent neighbour {ip} (MAC {neigh.mac}) "
            f"on {neigh.device} {why}", view, ov, ip, "no entry", f"{ip} lladdr {neigh.mac}"))
        explained.add(neigh.mac or "")  # one finding for the pair
    for mac, entry in sorted((mac, entry) for mac, entry in fdb.items() if mac not in explained):
        if entry.ip in vteps or entry.ip not in peers:
            why = (f"points to this node ({entry.ip})" if entry.ip in vteps else
                   f"points to {entry.ip}, which is no peer of the network in NetworkDB")
        else:
            why = f"(towards {entry.ip}) belongs to no endpoint NetworkDB lists"
        findings.append(_overlay_finding(
            "overlay-fdb-stale", f"network {view.name}: permanent FDB entry {mac} on {entry.device} {why}",
            view, ov, mac, "no entry", f"{mac} dst {entry.ip}"))
    return findings


def read_overlay_layer(collector: Collector, state: NodeState, reading: Reading) -> None:
    """Each network's overlay namespace, and the node's IPsec state when one is encrypted."""
    state.overlays = read_overlays(collector, state.views, reading.not_checked, reading.notes)
    if state.overlays is None or not any(v.encrypted and v.id in state.overlays for v in state.views):
        return
    state.xfrm = collector.xfrm()
    if state.xfrm is None:
        reading.notes.append("this snapshot holds no IPsec state: the encrypted overlays' ESP was not "
                             "checked")
    elif state.xfrm.get("error"):
        reading.not_checked.append(NotChecked("host", f"{state.xfrm['error']}; ESP checks skipped"))


def read_overlays(collector: Collector, views: list[NetworkView], not_checked: list[NotChecked],
                  notes: list[str]) -> dict[str, OverlayDatapath | None] | None:
    """Each network's overlay namespace, by network ID (None: no such namespace here)."""
    if not collector.has_overlays:
        notes.append("this snapshot (format 1) holds no overlay namespaces: overlay checks skipped")
        return None
    out: dict[str, OverlayDatapath | None] = {}
    for view in views:
        if not view.instantiated or not view.endpoints:
            continue
        path = collector.overlay_path(view)
        ov = collector.overlay(path) if path else None
        if ov is not None and ov.error:
            not_checked.append(NotChecked(f"network {view.name}", f"{ov.error}; overlay checks skipped"))
        out[view.id] = ov
    return out


def overlay_summary(view: NetworkView, state: NodeState) -> OverlaySummary | None:
    if state.overlays is None or view.id not in state.overlays:
        return None
    ov = state.overlays[view.id]
    remote = remote_endpoints(view, state)
    unverifiable = peer_verdicts(view, ov, state)[1] if ov and not ov.error and ov.neighbours is not None \
        and ov.fdb is not None else []
    return OverlaySummary(namespace=ov.name if ov else None, checked=ov is not None and not ov.error,
                          remote_endpoints=len(remote),
                          remote_nodes=len({t.host_ip for t in remote.values()}), unverifiable=unverifiable)


def summarise_overlay(result: NetworkResult, state: NodeState, reading: Reading) -> None:
    result.overlay = overlay_summary(result.view, state)
    if result.overlay and result.overlay.unverifiable:
        ips = result.overlay.unverifiable
        reading.notes.append(
            f"network {result.view.name}: {count(len(ips), 'endpoint')} on other nodes "
            f"{'is' if len(ips) == 1 else 'are'} programmed in the overlay but not listed by NetworkDB "
            f"({', '.join(ips[:3])}{', ...' if len(ips) > 3 else ''}): tasks starting or waiting for "
            "their health check, or stale entries; only a manager (/tasks) can tell which")


def overlay_json(net: NetworkResult, status: str) -> dict | None:
    ov = net.overlay
    return None if ov is None else {
        "namespace": ov.namespace, "checked": ov.checked, "status": status,
        "remote_endpoints": ov.remote_endpoints, "remote_nodes": ov.remote_nodes}


def describe_overlay(net: NetworkResult) -> tuple[str, str, bool] | None:
    ov = net.overlay
    if ov is None:
        return None
    header = f"Verifying overlay for network {net.view.name}"
    return (header + (f" (netns {ov.namespace})" if ov.namespace else ""),
            f"{ov.remote_endpoints} remote endpoints on {count(ov.remote_nodes, 'other node')}", True)


LAYER = declare_layer(Layer("overlay", 40, "overlay (VXLAN), against NetworkDB on this node",
                            was_read=lambda net: bool(net.overlay and net.overlay.checked),
                            summarise=summarise_overlay, describe=describe_overlay, json=overlay_json))
