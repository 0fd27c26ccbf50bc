"""The catalog: what ssd knows. The layers (declared by their modules with declare_layer), the
check ids with their meaning and action, the check registry (register_check, run_checks and the
scopes a check runs on), the engine eras (engine_model) and the known engine bugs. No I/O."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssd.base import CheckError

if TYPE_CHECKING:
    from ssd.model import Datapath, Finding, NetworkResult, NodeState, Reading


@dataclass(frozen=True)
class CheckInfo:
    """One check id, declared once, in the registration of the check that reports it. The ids
    are part of the product: --json carries them, monitoring keys on them and docs/checks.md's
    table is made from these declarations (make docs). Add new ids; never rename one."""
    id: str
    meaning: str  # what is wrong, in one sentence
    action: str  # what to do
    layer: str = "kernel"  # a key of LAYERS: which layer disagrees with the one above it


def _always(net: NetworkResult) -> bool:
    return True


@dataclass(frozen=True)
class Layer:
    """One layer ssd compares, declared once, in its own module of ssd/layers/, with
    declare_layer(). Everything about a layer follows from its declaration and each check id's
    layer: which findings are the layer's, its per-network status (JSON, fleet), its block in the
    text report (from describe), and the line under each of its findings. The load balancer's
    block (per service, and the host's ingress rules) is the kernel's, drawn by the report."""
    name: str  # the one name of the layer: check ids' layer, JSON's "layer", the docs
    rank: int  # its place in every report, top first
    against: str  # under each finding: which layer disagrees, against which
    # whether the layer was read for one network; else its status is "error"
    was_read: Callable[[NetworkResult], bool] = _always
    # what it keeps of one network for the reports, once every phase has read (ssd.run)
    summarise: Callable[[NetworkResult, NodeState, Reading], None] | None = None
    # a block of its own under each network: (header, summary, shown when clean), or None when
    # the layer was not read there (its findings, if any, follow the networks)
    describe: Callable[[NetworkResult], tuple[str, str, bool] | None] | None = None
    # its part of each network in --json, given its status there (None: not read there)
    json: Callable[[NetworkResult, str], dict | None] | None = None
    # the key of that part, where the JSON contract named it before the layer had one name
    # (networkdb's is "swarm"); else the layer's name
    json_key: str | None = None


LAYERS: dict[str, Layer] = {}  # every declared layer, by name, in rank order


def declare_layer(layer: Layer) -> Layer:
    if layer.name in LAYERS:
        raise ValueError(f"layer {layer.name!r} is declared twice")
    ordered = sorted([*LAYERS.values(), layer], key=lambda each: each.rank)
    LAYERS.clear()
    LAYERS.update((each.name, each) for each in ordered)
    return layer


CHECKS: dict[str, CheckInfo] = {}  # every check id, filled by register_check where its check is


@dataclass(frozen=True)
class KnownIssue:
    """An engine bug that produces a finding, from the moby source and issue tracker.

    Only entries checked against the moby source of each release or its issue tracker, each with
    its link. affected: [first, fixed) release ranges where the source has the bug, or, for a
    report without a known fix, the releases it was reported on (an open report runs to 999)."""
    ref: str
    url: str
    checks: frozenset[str]
    affected: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...]
    fixed_in: str | None
    what: str


KNOWN_ISSUES = (
    KnownIssue(
        "moby#51656", "https://github.com/moby/moby/issues/51656",
        frozenset({"ipvs-service-missing", "mark-missing", "ingress-dnat-missing", "ingress-filter-missing"}),
        (((18, 6, 0), (29, 7, 0)),), "29.7.0 (moby#51657)",
        "if a published port was changed with --update-order start-first, the VIP alias already "
        "existed and the engine skipped the whole load balancer; `docker service update --force`"),
    KnownIssue(
        "firewalld/firewalld#503", "https://github.com/firewalld/firewalld/issues/503",
        frozenset({"ingress-dnat-missing", "ingress-filter-missing", "ingress-jump-missing"}),
        (((0, 0, 0), (25, 0, 13)), ((26, 0, 0), (29, 0, 0))), "29.0.0 (moby#50443) and 25.0.13 (moby#50445)",
        "if firewalld was reloaded, it removed DOCKER-INGRESS and this engine does not restore "
        "it; restart dockerd"),
    KnownIssue(
        "moby#41896", "https://github.com/moby/moby/issues/41896",
        frozenset({"ipvs-backend-weight"}), (((19, 3, 0), (25, 0, 13)), ((26, 0, 0), (29, 0, 0))), None,
        "during a rolling update, tasks being replaced can keep weight 1 (a bulk sync that "
        "carries ServiceDisabled is handled as an add); 29.0 rewrote that handler, not "
        "confirmed as the fix"),
    KnownIssue(
        "moby#33790", "https://github.com/moby/moby/issues/33790",
        frozenset({"ipvs-backend-stale"}), (((17, 3, 0), (18, 4, 0)),), None,
        "an exited task's IP can stay a destination (reported on 17.03-18.03, still open)"),
    KnownIssue(
        "moby/swarmkit#2937", "https://github.com/moby/swarmkit/issues/2937",
        frozenset({"ingress-filter-missing", "ingress-dnat-missing", "mark-missing", "ipvs-service-missing"}),
        (((18, 6, 0), (29, 7, 0)),), "29.7.0 (moby#51657)",
        "after --update-order start-first, --publish-add dropped the service's published ports "
        "until dockerd restarted (the report of what moby#51656 explains)"),
    KnownIssue(
        "moby#35082", "https://github.com/moby/moby/issues/35082",
        frozenset({"sysctl"}), (((17, 9, 0), (20, 10, 0)),), "20.10.0 (libnetwork#2491)",
        "stalls under many parallel connections: the load balancer lacked conn_reuse_mode=0, "
        "expire_nodest_conn=1, expire_quiescent_template=1"),
    KnownIssue(
        "moby#35675", "https://github.com/moby/moby/issues/35675",
        frozenset({"ipvs-backend-stale"}), (((17, 9, 0), (17, 10, 0)),), None,
        "traffic for one service's VIP went to another service's task (reported on 17.09)"),
    KnownIssue(
        "moby#25985", "https://github.com/moby/moby/issues/25985",
        frozenset({"ipvs-backend-stale"}), (((1, 12, 0), (1, 13, 0)),), None,
        "after service updates, old task IPs stayed in the VIP's destinations and requests went "
        "to the wrong containers (reported on 1.12)"),
    KnownIssue(
        "moby#28564", "https://github.com/moby/moby/issues/28564",
        frozenset({"ipvs-service-missing"}), (((1, 12, 0), (1, 13, 0)),), None,
        "some VIPs timed out: dockerd logged 'Failed to create real server ... fwmark: no such "
        "process' (reported on 1.12)"),
    KnownIssue(
        "moby#45089", "https://github.com/moby/moby/issues/45089",
        frozenset({"ingress-dnat-missing", "ingress-filter-missing"}),
        (((23, 0, 0), (999, 0, 0)),), None,
        "some published ports do not open on some nodes, different ports on different nodes "
        "(reported on 23.0.1, open)"),
    KnownIssue(
        "moby#46636", "https://github.com/moby/moby/issues/46636",
        frozenset({"iptables-split-brain"}), (((24, 0, 0), (999, 0, 0)),), None,
        "with iptables-legacy as the host's default, swarm's published ports do not work: "
        "rules land in both backends (reported on 24.0, open)"),
)


def known_issues(check: str, engine_version: str) -> list[dict]:
    """The known engine bugs behind a finding of this check on this engine, and the ones this
    engine is fixed for (so that the operator does not chase them)."""
    release = parse_release(engine_version)
    out = []
    for issue in KNOWN_ISSUES:
        if check not in issue.checks or release is None:
            continue
        affected = any(first <= release < fixed for first, fixed in issue.affected)
        # past the bug's first release and outside every affected range: this engine has the fix
        fixed = issue.fixed_in is not None and release >= min(first for first, _ in issue.affected)
        if affected or fixed:
            out.append({"ref": issue.ref, "url": issue.url, "affects_this_engine": affected,
                        "fixed_in": issue.fixed_in, "what": issue.what})
    return out


@dataclass
class EngineModel:
    """What this engine version programs: where the load balancer lives, which chain marks VIPs,
    which sysctls it sets (from libnetwork's source of each release; docs/checks.md's table)."""
    version: str
    release: tuple[int, int, int]
    era: str  # per-container | lb-sandbox-18.06 | lb-sandbox
    known: bool

    @property
    def per_container(self) -> bool:
        return self.era == "per-container"

    @property
    def lb_location(self) -> str:
        """Where a network's load balancer lives: 'named' (lb_<id> / ingress_sbox, 18.09+),
        'by-address' (18.06: a random sandbox name; found by its LB IP) or 'per-container'."""
        return {"lb-sandbox": "named", "lb-sandbox-18.06": "by-address"}.get(self.era, "per-container")

    @property
    def mark_chain(self) -> str:
        return "OUTPUT" if self.per_container else "INPUT"

    @property
    def filter_jump_chain(self) -> str:
        return "DOCKER-FORWARD" if self.release >= (28, 0, 1) else "FORWARD"

    @staticmethod
    def runs_jobs(api_version: str) -> bool:
        """Whether the API (as negotiated) has global-job services: 1.41, engine 20.10. Before,
        the swarm-wide modes run a plain global service that does not restart its task."""
        return tuple(int(x) for x in api_version.split(".")[:2]) >= (1, 41)

    def lb_sysctls(self, nat_mode: bool) -> dict[str, int]:
        if self.per_container:
            return {}
        want = {"expire_nodest_conn": 1}
        if self.release >= (20, 10, 0):
            want.update(conn_reuse_mode=0, expire_quiescent_template=1)
        if nat_mode:
            want["conntrack"] = 1
        return want


def parse_release(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def engine_model(version: str) -> EngineModel:
    """Map an engine version to the datapath it programs (datapath.md section 1)."""
    release = parse_release(version)
    if release is None:
        raise CheckError(f"engine version {version!r} is not one ssd can read")
    if release < (17, 4, 0):
        raise CheckError(f"engine {version} is too old: ssd needs 17.04 or later "
                         "(verbose network inspect, API 1.28)")
    if release < (18, 6, 0):
        era = "per-container"
    elif release < (18, 9, 0):
        era = "lb-sandbox-18.06"
    else:
        era = "lb-sandbox"
    return EngineModel(version=version, release=release, era=era, known=release < (30, 0, 0))


# Every check is one function, registered with the ids it reports, the scope it runs on and the
# parts of a namespace's datapath it reads; run_checks() runs them all on one NodeState. A part
# that could not be read (None: no IPVS in this kernel, no iptables binary...) skips the checks
# that need it, and the reason is already a NotChecked. To add a check: write fn(subject, state)
# in its layer's module and decorate it with @register_check(CheckInfo(id, meaning, action), ...);
# then make docs.

SCOPES: dict[str, Callable[[NodeState], list[tuple[Any, Datapath | None]]]] = {
    "node": lambda st: [(st, None)],  # once per run
    "network": lambda st: [(v, None) for v in st.views if v.instantiated],
    "lb": lambda st: [(lb, lb.datapath) for lb in st.lbs],  # each load-balancer namespace
    "datapath": lambda st: [(dp, dp) for dp in st.datapaths()],  # every LB namespace read, host too
    "host-rules": lambda st: [(st.host, st.host)] if st.host is not None and st.ingress is not None else [],
    "ingress-tasks": lambda st: [(st.ingress, None)] if st.ingress is not None else [],
    # each network whose embedded DNS was asked, with what it answered
    "dns": lambda st: [((v, p), p) for v in st.views for p in [(st.dns or {}).get(v.id)] if p is not None],
    # each overlay namespace read, with its network's view
    "overlay": lambda st: [((v, ov), ov) for v in st.views for ov in [(st.overlays or {}).get(v.id)]
                           if ov is not None and ov.error is None],
    "probe": lambda st: [(st, None)] if st.probe_results is not None else [],  # --probe ran
}


@dataclass(frozen=True)
class Check:
    ids: tuple[str, ...]
    scope: str
    needs: tuple[str, ...]  # fields of the scope's datapath it reads (ipvs, rules...; links, fdb...)
    run: Callable[[Any, NodeState], list[Finding]]


REGISTRY: list[Check] = []


def register_check(*infos: CheckInfo, scope: str, needs: tuple[str, ...] = ()):
    """Register fn(subject, state) -> findings as the check that reports these ids, on every
    subject of its scope whose datapath has the parts it needs."""
    ids = tuple(info.id for info in infos)
    taken = [i for i in ids if i in CHECKS]
    if not ids or taken or len(set(ids)) < len(ids) or scope not in SCOPES:
        raise ValueError(f"register_check: no id, an id declared twice {taken} or an unknown scope {scope!r}")

    def register(fn: Callable[[Any, NodeState], list[Finding]]):
        CHECKS.update((info.id, info) for info in infos)
        REGISTRY.append(Check(ids, scope, needs, fn))
        return fn
    return register


def run_checks(state: NodeState) -> list[Finding]:
    findings: list[Finding] = []
    for check in REGISTRY:
        for subject, dp in SCOPES[check.scope](state):
            if dp is None or all(getattr(dp, part) is not None for part in check.needs):
                found = check.run(subject, state)
                stray = {f.check for f in found} - set(check.ids)
                if stray:  # a programming error, caught by the tests: ids are declared where they fire
                    raise ValueError(f"{check.run.__name__} emitted {sorted(stray)}, not registered for it")
                findings += found
    return findings
