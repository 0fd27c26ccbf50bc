"""The command line: the options, the checks on their combinations, the entry points of every
mode (the node check, gossip-consistency, --all-nodes, the swarm-wide job's per-node command),
the time limit, and cli(), the `ssd` command."""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import sys
import textwrap
import time
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ssd import __version__
from ssd.base import (
    CheckError, DEFAULT_EXEC_ROOT, DEFAULT_FLEET_TIMEOUT, DEFAULT_HOST, DEFAULT_SETTLE, FLEET_MEMBER,
    MODES, _short, printable, printable_report, seconds,
)
from ssd.collect import Collector
from ssd.engine import engine_of, require
from ssd.kernel.prober import PROBE_LIMIT, PROBE_TRIES
from ssd.output import OutputError, check_target, emit, emit_json, print_not_checked, write_file
from ssd.report import (
    EXIT_CODES, NAGIOS_CODES, Painter, error_document, nagios_line, nagios_state, overall_status,
    render_nagios, render_text, run_nagios_state, to_json, write_prometheus,
)
from ssd.run import node_check, settled_check
from ssd.snapshot import mode_of, replaying, snapshot_document, write_snapshot
from ssd.swarmwide.answers import fleet_answer, gossip_hash
from ssd.swarmwide.fleet import fleet_live
from ssd.swarmwide.job import STOP_SIGNALS
from ssd.swarmwide.gossip import gossip_from_snapshots, gossip_live
from ssd.swarmwide.fleetwatch import (
    LiveFeed, MemberWatch, fleet_watch, fleet_watch_status, fleet_watch_to_json, merged_timeline,
    render_fleet_watch,
)
from ssd.html import fleet_html, timeline_html
from ssd.watch import Recorder, Run, Timeline, duration, read_timeline, size, watch
from ssd.swarmwide.report import (
    fleet_status, fleet_to_json, gossip_status, gossip_to_json, render_fleet, render_fleet_nagios,
    render_gossip, render_gossip_nagios,
)

if TYPE_CHECKING:
    from ssd.engine import Engine
    from ssd.model import RunResult


EXAMPLES = """examples:
  ssd ov2                     check overlay network ov2 and ingress on this node
  ssd                         check every swarm overlay network on this node, and ingress
  ssd --json ov2 | jq .status machine-readable verdict (consistent/inconsistent/incomplete)
  ssd -q --settle 5           cron/monitoring: print only problems, re-sample after 5 s
  ssd -H tcp://127.0.0.1:2375 ov2
  ssd ov2 gossip-consistency --image ssd:latest
                              on a manager: do all nodes hold the same view of ov2?
  ssd --snapshot node2.json ov2
                              check, and save what was read, to check it anywhere:
  ssd --from node2.json       the same check on the saved snapshot
  ssd ov2 gossip-consistency --from node1.json --from node2.json
  ssd --all-nodes --gossip --image ssd:latest
                              on a manager: every node checked, one matrix of
                              nodes x networks, and every node's view compared
  ssd --all-nodes --snapshot-dir case-1234/ ov2
                              the whole swarm's snapshots for a support case
  ssd --nagios -t 50 ov2      a Monitoring Plugins check, bounded to 50 s
  ssd --context prod ov2      through a Docker context (TLS included), as docker does
  docker run --rm --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW \\
      --net=host -v /var/run/docker.sock:/var/run/docker.sock \\
      -v /var/run/docker/netns:/var/run/docker/netns:ro,rslave ssd ov2

exit status: 0 consistent, 1 inconsistencies found, 2 could not check,
             3 swarm still converging (a finding about work swarm has not finished).
"""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and a JSON verdict under --json, an UNKNOWN
    line under --nagios), exit 2. argv: the arguments parsed, main()'s, not always sys.argv."""
    argv: ClassVar[list[str]] = []

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"ssd: error: {message} (see ssd --help)\n")
        with contextlib.suppress(OutputError):
            if "--nagios" in self.argv:
                emit(nagios_line("UNKNOWN", f"usage: {message}", {}))
                sys.exit(NAGIOS_CODES["UNKNOWN"])
            if "--json" in self.argv:
                emit(json.dumps(error_document(message, mode_of(self.argv)), indent=2) + "\n")
        sys.exit(NAGIOS_CODES["UNKNOWN"] if "--nagios" in self.argv else 2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ssd", description=textwrap.fill(
            "Check that this swarm node's load-balancer datapath (IPVS, iptables, VIP aliases, the "
            "overlay, the embedded DNS) matches what Docker's control plane says. The live check "
            "runs as root (it enters network namespaces and reads IPVS and iptables); checking a "
            "snapshot (--from) needs no privilege.", width=80),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("networks", nargs="*", metavar="NETWORK",
                        help="network name, ID or unique ID prefix (default: all swarm overlays); "
                             "'NETWORK gossip-consistency' compares every node's view of NETWORK")
    parser.add_argument("-H", "--host", metavar="ADDRESS",
                        help=f"Engine API address, e.g. tcp://HOST:2376 (default: DOCKER_HOST, else "
                             f"the Docker context in use, else {DEFAULT_HOST}); TLS from "
                             "DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as for docker")
    parser.add_argument("-c", "--context", metavar="NAME",
                        help="reach the daemon through this Docker context (default: DOCKER_CONTEXT, "
                             "else the one docker context use chose)")
    parser.add_argument("--exec-root",
                        help="dockerd's --exec-root; namespaces are under EXEC_ROOT/netns "
                             f"(default: {DEFAULT_EXEC_ROOT})")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document")
    output.add_argument("--nagios", action="store_true",
                        help="print one Monitoring Plugins line and exit 0 OK, 1 WARNING (partly "
                             "checked), 2 CRITICAL (inconsistent), 3 UNKNOWN (could not check)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show what was compared: VIPs, tasks, expected and found values")
    parser.add_argument("--no-color", action="store_true", help="no colour (also: NO_COLOR)")
    parser.add_argument("--settle", type=seconds(3600, allow_zero=True),
                        metavar="SECONDS",
                        help="report only what a second sample SECONDS later still shows "
                             f"(default: {DEFAULT_SETTLE:g}; 0 disables)")
    parser.add_argument("-t", "--timeout", type=seconds(86400, allow_zero=False), metavar="SECONDS",
                        help="give up after SECONDS: exit 2 (UNKNOWN under --nagios), saying so "
                             "(default: no limit; --all-nodes and gossip-consistency: how long to "
                             f"wait for every node's answer, default {DEFAULT_FLEET_TIMEOUT:g})")
    parser.add_argument("--probe", action="store_true",
                        help="also send bounded test traffic (changes nothing): echo requests "
                             "(small and full-size) from each network's load balancer to every other "
                             "node's endpoints, TCP connections to backends and to every node's "
                             f"published ports; at most {PROBE_LIMIT:g} s, {PROBE_TRIES} echo requests "
                             "per endpoint and size, one connection per backend and port")
    parser.add_argument("--prometheus", metavar="FILE",
                        help="also write the verdict as Prometheus metrics to FILE (node_exporter's "
                             "textfile collector: FILE ends in .prom), atomically; '-': write them "
                             "to stdout instead of the report")
    parser.add_argument("--snapshot", metavar="FILE",
                        help="also write everything the check read to FILE (JSON), to check "
                             "it elsewhere with --from; '-': write it to stdout instead of the report")
    parser.add_argument("--from", dest="from_", action="append", metavar="FILE",
                        help="check a snapshot instead of this node (repeat with "
                             "gossip-consistency to compare nodes)")
    fleet = parser.add_argument_group("the whole swarm (on a manager; ssd runs as a short-lived "
                                      "service on every node)")
    fleet.add_argument("--all-nodes", action="store_true",
                       help="run the node check on every node and print one nodes x networks matrix")
    fleet.add_argument("--gossip", action="store_true",
                       help="with --all-nodes: also compare every node's view of each network "
                            "(gossip-consistency) in the same run")
    fleet.add_argument("--snapshot-dir", metavar="DIR",
                       help="with --all-nodes: save every node's snapshot in DIR, one file per node")
    fleet.add_argument("--image", help="--all-nodes and gossip-consistency: the ssd image to run on "
                                       "every node (default: the image ssd runs in, if in a container)")
    watching = parser.add_argument_group("watch: check again and again (one node)")
    watching.add_argument("--watch", action="store_true",
                          help="keep checking, every --interval and at once when swarm reports a change; "
                               "a line per run, what appeared and cleared; on stop (Ctrl-C or --for), "
                               "each finding's episodes. Exit 1 if any finding was seen")
    watching.add_argument("--interval", type=seconds(86400, allow_zero=False), default=30.0,
                          metavar="SECONDS", help="with --watch: seconds between runs (default: 30)")
    watching.add_argument("--for", dest="for_", type=duration, metavar="DURATION",
                          help="with --watch: stop after DURATION (seconds, or 90s, 15m, 2h); "
                               "default: until Ctrl-C (with --all-nodes, required: every node watches "
                               "for DURATION and the manager merges their timelines)")
    watching.add_argument("--record", metavar="DIR",
                          help="with --watch: write DIR/timeline.jsonl (a line per run: its time and "
                               "report) and the snapshots of every run that changed the verdict or the "
                               "findings, and of the run before it (each checkable with --from)")
    watching.add_argument("--keep", type=int, default=100, metavar="N",
                          help="with --record: keep at most N snapshots, the oldest dropped (default: 100)")
    watching.add_argument("--max-size", type=size, default=size("500M"), metavar="SIZE",
                          help="with --record: at most SIZE of ssd's files in DIR (default: 500M)")
    parser.add_argument("--html", metavar="FILE",
                        help="also write one self-contained HTML page to FILE (to attach to a ticket): "
                             "with --all-nodes the node x network matrix linked to the findings; with "
                             "--watch (or --from DIR/timeline.jsonl) the timeline, episodes as bars")
    parser.add_argument("--debug", action="store_true",
                        help="on an internal error (a bug of ssd's), print its traceback")
    parser.add_argument("--version", action="version", version=f"ssd {__version__}")
    return parser


GOSSIP_HELP = f"""usage: ssd NETWORK gossip-consistency [--from FILE --from FILE ...] [-H ADDRESS]
                                      [-c NAME] [--image IMAGE] [-t SECONDS]
                                      [--json | --nagios] [-v] [--no-color]

On a manager: do all nodes hold the same view of NETWORK's gossiped state (NetworkDB's
services, VIPs and tasks)? ssd runs itself on every node as a short-lived global service
(always removed), collects each node's view, re-samples a few times, and reports what
stays different and on which nodes. With --from, compares saved snapshots instead (no
service, no privilege).

options:
  --from FILE       a node's snapshot (ssd --snapshot FILE NETWORK on that node); repeat
  -H, --host ADDRESS / -c, --context NAME
                    where the manager's Engine API is, as for the node check
  --image IMAGE     the ssd image to run on every node (default: the image ssd runs in)
  -t, --timeout SECONDS
                    how long to wait for every node's answer (default: {DEFAULT_FLEET_TIMEOUT:g})
  --json, --nagios  one JSON document, or one Monitoring Plugins line
  -v, --verbose     what every node holds, not only the differences

exit status: 0 every node agrees, 1 views differ, 2 could not compare.
"""


def mode_help(argv: list[str]) -> str | None:
    """The help of `ssd NETWORK gossip-consistency --help`, rather than the node check's."""
    if "gossip-consistency" in argv and ("-h" in argv or "--help" in argv):
        return GOSSIP_HELP
    return None


def use_colour(args: argparse.Namespace) -> bool:
    # no-color.org: NO_COLOR disables colour when it is set and not empty.
    return (not args.no_color and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb" and sys.stdout is not None and sys.stdout.isatty())


def fail(args: argparse.Namespace, message: str, kind: str = "error") -> int:
    message = printable(message)
    print(f"ssd: {kind}: {message}", file=sys.stderr)
    if getattr(args, "prometheus", None):
        try:  # a monitor must see "could not check", not last run's stale verdict
            write_prometheus(args.prometheus, None, 0.0)
        except (CheckError, OSError) as exc:
            print(f"ssd: error: cannot write {args.prometheus}: {exc}", file=sys.stderr)
    with contextlib.suppress(OutputError):  # stdout may be what failed: stderr has the line
        if getattr(args, "nagios", False):
            emit(nagios_line("UNKNOWN", message, {}))
            return NAGIOS_CODES["UNKNOWN"]
        if args.json:  # monitoring parses stdout: give it a verdict that agrees with the exit code
            emit(json.dumps(error_document(message, getattr(args, "mode", "node")), indent=2) + "\n")
    return NAGIOS_CODES["UNKNOWN"] if getattr(args, "nagios", False) else 2


def interrupted(args: argparse.Namespace, line: str) -> int:
    print(line, file=sys.stderr)
    if getattr(args, "prometheus", None):  # the last verdict is not current any more
        with contextlib.suppress(CheckError, OSError):
            write_prometheus(args.prometheus, None, 0.0)
    if args.nagios:
        emit(nagios_line("UNKNOWN", "interrupted", {}))
        return NAGIOS_CODES["UNKNOWN"]
    return 2


def job_interrupted(args: argparse.Namespace, what: str, not_removed: list[str]) -> int:
    """Ctrl-C or SIGTERM in a run that started a service: say whether it is gone."""
    if not_removed:
        failure = not_removed[0]
        return interrupted(args, f"ssd: interrupted; could not remove {failure}: docker service rm "
                           + failure.split(":")[0])
    return interrupted(args, f"ssd: interrupted (its {what} was removed)")


class TimedOut(BaseException):
    """-t expired. A BaseException, like KeyboardInterrupt: no `except Exception` on the way
    (the Engine API's error handling) may turn it into an ordinary error."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimedOut in the main thread once SECONDS have passed (a Monitoring Plugins runner's
    -t: the plugin says UNKNOWN itself rather than being killed without a word)."""
    if not seconds:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: the gossip service is removed


def main_gossip(args: argparse.Namespace, mode: str) -> int:
    if args.prometheus:
        args.prometheus = None  # not this mode's: leave the node check's file alone
        return fail(args, f"--prometheus writes the node check's metrics, not {mode}'s")
    if len(args.networks) != 1:
        return fail(args, f"{mode} compares one network: ssd NETWORK {mode}")
    network = args.networks[0]
    if mode == "gossip-hash":  # the per-node command the gossip service runs
        try:
            answer = gossip_hash(Collector(engine_of(args), args.exec_root), network)
        except CheckError as exc:
            return fail(args, str(exc))
        node = answer["node"]
        if args.json:  # one line: the coordinator reads it back from the service's log
            emit(json.dumps(answer, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n")
        elif answer["instantiated"]:
            emit(f"Node id: {node['id']} ({node['hostname']}) gossip hash {answer['digest']}\n")
        else:
            emit(f"Node id: {node['id']} ({node['hostname']}) network {network} not instantiated here\n")
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = gossip_from_snapshots(args.from_, network) if args.from_ else gossip_live(args, network)
    except CheckError as exc:
        return fail(args, str(exc))
    except KeyboardInterrupt as exc:
        return job_interrupted(args, "gossip service", getattr(exc, "not_removed", []))
    print_not_checked(result.not_checked)
    if args.nagios:
        emit(render_gossip_nagios(result))
        answered = sum(n.status == "answered" for n in result.nodes)
        return NAGIOS_CODES[nagios_state(gossip_status(result), answered >= 2)]
    if args.json:
        emit_json(gossip_to_json(result))
    else:
        emit(printable_report(render_gossip(result, Painter(use_colour(args)), args.verbose)))
    return EXIT_CODES[gossip_status(result)]


def main_member(args: argparse.Namespace) -> int:
    """The per-node command of fleet mode's service: the node check as one JSON line, its
    snapshot inside it with --snapshot -. The verdict is in the answer: exit 0."""
    try:
        collector = Collector(engine_of(args), args.exec_root)
        collector.probing = args.probe  # --all-nodes --probe: each node probes from where it is
        node, result = settled_check(collector, args.networks, args.settle, live=True)
        doc = snapshot_document(collector, node, args.networks, args.settle) if args.snapshot else None
        answer = fleet_answer(collector, node, result, doc)
    except CheckError as exc:
        return fail(args, str(exc))
    emit(json.dumps(answer, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n")
    return 0


def fleet_misuse(args: argparse.Namespace) -> str | None:
    """Why these options do not go together with fleet mode (or need it), if they do not."""
    if not args.all_nodes:
        for flag, value in (("--gossip", args.gossip), ("--snapshot-dir", args.snapshot_dir)):
            if value:
                return f"{flag} goes with --all-nodes"
        return None
    for flag, value, instead in (
            ("--from", args.from_, "check snapshots one by one with --from"),
            ("--snapshot", args.snapshot, "use --snapshot-dir DIR"),
            ("--prometheus", args.prometheus, "run ssd --prometheus on each node, or use --json")):
        if value:
            return f"{flag} is not for --all-nodes: {instead}"
    return None


def main_fleet(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.snapshot_dir:
            os.makedirs(args.snapshot_dir, mode=0o700, exist_ok=True)
            check_target(os.path.join(args.snapshot_dir, ".ssd-write-test"), "snapshot")
        if args.html:
            check_target(args.html, "page")
        result = fleet_live(args)
        if args.html:
            write_file(args.html, fleet_html(result, fleet_status(result)).encode(), 0o600, "page")
    except OSError as exc:
        return fail(args, f"cannot use {args.snapshot_dir}: {exc.strerror or _short(exc)}")
    except CheckError as exc:
        return fail(args, str(exc))
    except KeyboardInterrupt as exc:
        return job_interrupted(args, "service", getattr(exc, "not_removed", []))
    print_not_checked(result.not_checked)
    if args.nagios:
        emit(render_fleet_nagios(result))
        return NAGIOS_CODES[nagios_state(fleet_status(result), any(n.report for n in result.nodes))]
    if args.json:
        emit_json(fleet_to_json(result))
    else:
        emit(printable_report(render_fleet(result, Painter(use_colour(args)), args.quiet, args.verbose)))
    return EXIT_CODES[fleet_status(result)]


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, KeyboardInterrupt
    for signum in STOP_SIGNALS - {signal.SIGINT}:  # stop as Ctrl-C does (the service removed)
        signal.signal(signum, _interrupt)
    parser = build_parser()
    parser.argv = sys.argv[1:] if argv is None else list(argv)
    if mode_help(parser.argv):
        emit(mode_help(parser.argv) or "")
        return 0
    args = parser.parse_args(parser.argv)
    args.mode = mode_of(args.networks[-1:] + (["--all-nodes"] if args.all_nodes else []))
    try:
        return dispatch(args)
    except OutputError as exc:  # the report could not be written: the verdict is lost, say so
        return fail(args, str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug: "could not check", never "inconsistent"
        return internal_error(args, exc)


def internal_error(args: argparse.Namespace | None, exc: BaseException) -> int:
    """An exception nobody foresaw is a bug of ssd's: one line (the traceback with --debug),
    exit 2 (Nagios UNKNOWN), `incomplete` in the metrics file; never exit 1, which means
    findings."""
    if args is not None and getattr(args, "debug", False):
        traceback.print_exception(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    message = (f"{type(exc).__name__}: {_short(exc)}{where}; please report it with the output of "
               "--debug")
    if args is None:
        print(f"ssd: internal error: {message}", file=sys.stderr)
        return 2
    with contextlib.suppress(Exception):
        return fail(args, message, "internal error")
    return 2


def from_misuse(args: argparse.Namespace) -> str | None:
    """Options that say how to read a live node mean nothing with --from: refuse them rather than
    ignore them silently."""
    if not args.from_:
        return None
    for flag, value in (("-H", args.host), ("--context", args.context), ("--exec-root", args.exec_root),
                        ("--settle", args.settle), ("--image", args.image),
                        ("--probe", args.probe or None)):
        if value is not None:
            return (f"{flag} is for reading a live node; --from checks a snapshot as it was "
                    "taken (its settle sample included)")
    if args.from_.count("-") > 1:
        return "standard input is read once: give --from - for one snapshot only"
    return None


def output_misuse(args: argparse.Namespace) -> str | None:
    if args.prometheus == "-" and args.snapshot == "-":
        return "--prometheus - and --snapshot - both want stdout: give one of them a FILE"
    if args.prometheus == "-" and (args.json or args.nagios):
        return "--prometheus - writes the metrics instead of the report: drop --json/--nagios"
    return None


def resolve_defaults(args: argparse.Namespace) -> None:
    """Fill what was not given; left None until now so that from_misuse can tell."""
    args.exec_root = args.exec_root or DEFAULT_EXEC_ROOT
    args.settle = DEFAULT_SETTLE if args.settle is None else args.settle
    args.wait = args.timeout or DEFAULT_FLEET_TIMEOUT  # the swarm-wide modes' wait for nodes


def node_report(args: argparse.Namespace, result: RunResult, seconds: float) -> str:
    """The node check's report in the form asked for; none when stdout carries the snapshot or
    the metrics (--snapshot -, --prometheus -): the verdict is then the exit status."""
    if "-" in (args.snapshot, args.prometheus):
        return ""
    if args.nagios:
        return render_nagios(result, seconds)
    if args.json:
        # JSON holds no NaN or Infinity (which JSON has not): a bug that made one is exit 2
        return json.dumps(to_json(result), indent=2, allow_nan=False) + "\n"
    return printable_report(render_text(result, Painter(use_colour(args)), args.quiet, args.verbose))


def html_misuse(args: argparse.Namespace) -> str | None:
    if args.html and not (args.all_nodes or args.watch or timeline_source(args)):
        return ("--html draws --all-nodes' matrix or a watch's timeline: add --all-nodes or --watch, "
                "or give --from DIR/timeline.jsonl")
    if args.html == "-":
        return "--html writes a file: give it a FILE"
    return None


def timeline_source(args: argparse.Namespace) -> str | None:
    """--from DIR/timeline.jsonl (a watch's record) with --html: the timeline drawn again."""
    if args.from_ and len(args.from_) == 1 and args.from_[0].endswith(".jsonl") and not args.networks:
        return args.from_[0]
    return None


def main_timeline(args: argparse.Namespace, source: str) -> int:
    try:
        check_target(args.html, "page")
        timeline, node = read_timeline(source)
        write_file(args.html, timeline_html(timeline, node, timeline.last or time.time()).encode(),
                   0o600, "page")
    except CheckError as exc:
        return fail(args, str(exc))
    for line in timeline.summary(timeline.last or time.time()):
        emit(line + "\n")
    return timeline.exit_status_code()


def watch_misuse(args: argparse.Namespace) -> str | None:
    """--watch is a node check repeated: what is one-shot by nature is refused, not ignored."""
    if not args.watch:
        given = [flag for flag, value in (("--for", args.for_), ("--record", args.record)) if value]
        return f"{given[0]} is for --watch" if given else None
    for flag, value in (("--nagios", args.nagios), ("--from", args.from_), ("--snapshot", args.snapshot)):
        if value:
            why = {"--nagios": "a Monitoring Plugin is one run: run ssd --nagios from the monitoring "
                               "system's schedule, or --watch --prometheus FILE",
                   "--from": "a snapshot does not change: check it once",
                   "--snapshot": "--record DIR keeps the snapshots of the runs that changed something"}[flag]
            return f"--watch with {flag}: {why}"
    if args.all_nodes:
        if not args.for_:
            return ("--all-nodes --watch needs --for DURATION: every node's watch runs as a job of "
                    "swarm's, which must end")
        for flag, value in (("--record", args.record), ("--gossip", args.gossip),
                            ("--snapshot-dir", args.snapshot_dir)):
            if value:
                return f"--all-nodes --watch with {flag}: not built; run --watch {flag} on a node"
    if args.networks and args.networks[-1] in MODES:
        return f"--watch is for the node check, not {args.networks[-1]}"
    if args.prometheus == "-":
        return "--watch rewrites the metrics file after every run: give --prometheus a FILE"
    if args.keep < 1:
        return "--keep: give at least 1"
    return None


def watch_check(args: argparse.Namespace, engine: Engine, snapshots: bool):
    """One run of a watch: the node check with the watch's Engine connection, never longer
    than --timeout; what could not be checked is the run's, not the watch's end."""
    def check() -> Run:
        started = time.monotonic()
        try:
            with time_limit(args.timeout):
                result, doc = node_check(args, engine, want_snapshot=snapshots)
        except CheckError as exc:
            return Run(None, None, time.monotonic() - started, str(exc))
        except TimedOut:
            return Run(None, None, time.monotonic() - started,
                       f"the check did not finish within {args.timeout:g} s")
        return Run(result, doc, time.monotonic() - started)
    return check


def main_watch_member(args: argparse.Namespace) -> int:
    """A node's part of --all-nodes --watch: its watch for --for, silent, then one JSON line of
    what changed at each run (ssd.swarmwide.fleetwatch). The verdict is in the answer: exit 0."""
    gc.enable()
    try:
        engine = engine_of(args)
    except CheckError as exc:
        return fail(args, str(exc))
    member = MemberWatch(live=sys.stderr)  # each change also as it happens, for the manager to show
    watch(args, watch_check(args, engine, False), engine.api, None, None, None, member)
    emit(json.dumps(member.answer(), sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n")
    return 0


def main_fleet_watch(args: argparse.Namespace) -> int:
    """--all-nodes --watch: every node's watch as one job; one timeline for the swarm."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.html:
            check_target(args.html, "page")
        # the changes as they happen, where a person reads them (text, not --json or --quiet)
        result = fleet_watch(args, None if args.json or args.quiet else LiveFeed(emit))
        status = fleet_watch_status(result)
        if args.html:
            write_file(args.html, timeline_html(merged_timeline(result), f"every node ({len(result.nodes)})",
                                                time.time(), "Swarm").encode(), 0o600, "page")
    except CheckError as exc:
        return fail(args, str(exc))
    except KeyboardInterrupt as exc:
        return job_interrupted(args, "service", getattr(exc, "not_removed", []))
    print_not_checked(result.not_checked)
    if args.json:
        emit_json(fleet_watch_to_json(result))
    else:
        emit(render_fleet_watch(result, args.quiet))
    return EXIT_CODES[status]


def main_watch(args: argparse.Namespace) -> int:
    """--watch: the node check again and again with one Engine connection (ssd.watch)."""
    gc.enable()  # one run per process frees what it built by exiting; a watch must collect
    try:  # what it writes is refused before any work, as for one run
        recorder = Recorder(args.record, args.keep, args.max_size) if args.record else None
        if args.html:
            check_target(args.html, "page")
        if args.prometheus:
            require("prometheus_client")
            check_target(args.prometheus, "metrics")
        engine = engine_of(args)
    except CheckError as exc:
        return fail(args, str(exc))
    check = watch_check(args, engine, recorder is not None)

    def metrics(run: Run, episodes: dict[str, int]) -> None:
        write_prometheus(args.prometheus, run.result, run.seconds, episodes)

    def page(timeline: Timeline, run: Run) -> None:
        node = run.result.node.hostname if run.result is not None else "this node"
        write_file(args.html, timeline_html(timeline, node, time.time()).encode(), 0o600, "page")

    try:
        return watch(args, check, engine.api, metrics if args.prometheus else None, recorder,
                     page if args.html else None)
    except CheckError as exc:
        return fail(args, str(exc))


def dispatch(args: argparse.Namespace) -> int:
    misuse = (fleet_misuse(args) or from_misuse(args) or output_misuse(args) or watch_misuse(args)
              or html_misuse(args))
    if misuse:
        args.prometheus = None  # a usage error: leave the metrics file alone
        return fail(args, misuse)
    resolve_defaults(args)
    if args.networks and args.networks[-1] == FLEET_MEMBER:
        args.networks.pop()
        return main_watch_member(args) if args.watch else main_member(args)
    if args.networks and args.networks[-1] in MODES:
        if args.all_nodes:
            return fail(args, f"--all-nodes is a mode of its own: use --all-nodes --gossip, not "
                              f"{args.networks[-1]}")
        return main_gossip(args, args.networks.pop())
    if args.all_nodes:
        return main_fleet_watch(args) if args.watch else main_fleet(args)
    if args.watch:
        return main_watch(args)
    if args.html:
        return main_timeline(args, str(timeline_source(args)))
    if args.from_ and args.snapshot:
        return fail(args, "--from checks a snapshot, --snapshot takes one: use one of them")
    started = time.monotonic()
    try:
        if args.snapshot:
            check_target(args.snapshot, "snapshot")
        if args.prometheus:  # before the check, not after it
            try:
                require("prometheus_client")
                check_target(args.prometheus, "metrics")
            except CheckError:
                args.prometheus = None  # no point trying again in fail()
                raise
        with time_limit(args.timeout):
            result, doc = node_check(args)
        if args.prometheus:
            write_prometheus(args.prometheus, result, time.monotonic() - started)
        if doc is not None:
            write_snapshot(doc, args.snapshot)  # "-": emit()s the snapshot itself
        with replaying(args.from_[0]) if args.from_ else contextlib.nullcontext():
            report = node_report(args, result, time.monotonic() - started)
    except CheckError as exc:
        return fail(args, str(exc))
    except KeyboardInterrupt:
        return interrupted(args, "ssd: interrupted")
    except TimedOut:
        return fail(args, f"the check did not finish within {args.timeout:g} s (-t {args.timeout:g}); "
                          "nothing was reported: a daemon or a namespace may be hanging")
    print_not_checked(result.not_checked)
    emit(report)
    if args.nagios:
        return NAGIOS_CODES[run_nagios_state(result)]
    return EXIT_CODES[overall_status(result)]


def cli() -> None:
    """The `ssd` command an install makes (its entry point), and ./ssd.py or python -m ssd."""
    # No cyclic garbage collection: one run, then os._exit. What a run builds is trees that
    # reference counting frees; the collector only walked them, again and again, while the API's
    # JSON was decoded into a million objects: at 20,000 tasks under the lab's emulation, 1.1 s
    # of 9.1, and the same peak memory without it.
    gc.disable()
    try:
        status = main()
    except KeyboardInterrupt:  # before main's own handlers are in place (e.g. while importing)
        print("ssd: interrupted", file=sys.stderr)
        status = 2
    except Exception as exc:  # noqa: BLE001 - a bug before the options were read: still one line
        status = internal_error(None, exc)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the verdict is out: a late Ctrl-C changes nothing
    if PROFILERS & sys.modules.keys():  # they write what they measured once the program returns
        sys.exit(status)
    # Everything is written (emit flushes; snapshots and metrics are renamed into place): leave
    # without the interpreter's teardown, which frees every object of the run one by one (0.3 s
    # at 1,000 services under the lab's emulation, more than some of ssd's checks take).
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(status)


PROFILERS = {"cProfile", "profile", "coverage", "trace", "pyinstrument"}
