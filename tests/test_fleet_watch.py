"""--all-nodes --watch: every node's watch as one job, one timeline for the swarm (issue 44).

Tier 1: the coordinator runs as a process against the fake swarm; each node's answer is what
a real node's watch sends (MemberWatch fed with node checks run on the recorded 26.1 node:
healthy, or with an IPVS backend taken out of its recording). Tier 2: the member itself,
watching the recorded node laid out in real namespaces.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import queue
import threading
import time

import pytest

import ssd.report
import ssd.run
import ssd.snapshot
import ssd.watch
from fake_swarm import FakeSwarm
from schemas import validate
from fake_engine import FakeEngine
from test_fleet import API, NETS, RECORDED, SNAPSHOT, drop_backend, fleet
from ssd.swarmwide.fleetwatch import LIVE_MARK, MAX_CHANGES, MemberWatch

T0 = 1_780_000_000.0  # the watch's first run (2026-05-28)


def result_of(fault=None) -> ssd.model.RunResult:
    doc = copy.deepcopy(RECORDED)
    if fault:
        fault(doc)
    collector = ssd.snapshot.SnapshotCollector(doc, str(SNAPSHOT))
    return ssd.run.settled_check(collector, [], 0, live=False)[1]


HEALTHY, FAULTY = result_of(), result_of(drop_backend)


@pytest.fixture
def fake(tmp_path):
    with FakeEngine(str(tmp_path / "docker.sock")) as engine:
        engine.routes["/networks"] = API["GET /networks"]
        for name, ident in NETS.items():
            engine.routes[f"/networks/{ident}"] = engine.routes[f"/networks/{name}"] = \
                API[f"GET /networks/{ident}"]
        yield engine


def watch_answer(node: str, faulty_runs: set[int], runs: int = 12, interval: float = 15.0) -> str:
    """What a node's watch answers: runs every interval, the fault present at faulty_runs."""
    return watch_streams(node, faulty_runs, runs, interval)[0]


def watch_streams(node: str, faulty_runs: set[int], runs: int = 12, interval: float = 15.0
                  ) -> tuple[str, str]:
    """What a node's watch writes: its answer (stdout) and its live lines (stderr)."""
    live = io.StringIO()
    member, timeline = MemberWatch(live), ssd.watch.Timeline()
    for number in range(1, runs + 1):
        result = FAULTY if number in faulty_runs else HEALTHY
        when = T0 + (number - 1) * interval
        status = ssd.report.overall_status(result)
        change = timeline.add(when, status, result.findings)
        member(when, number, ssd.watch.Run(result, None, 0.1), status, change)
    answer = member.answer()
    answer["node"]["id"] = node  # (the recording's node answers for each of the fake's)
    return json.dumps(answer, separators=(",", ":")) + "\n", live.getvalue()


def backends_vanish_on_node2_and_node3(node, sample):
    if node.startswith("n2"):
        return "complete", watch_answer(node, {3, 4, 5, 6, 7}), ""
    if node.startswith("n3"):
        return "complete", watch_answer(node, {3, 4, 5, 6}), ""
    return "complete", watch_answer(node, set()), ""


def test_a_fault_on_two_nodes_is_one_screen_of_the_swarm(fake):
    swarm = FakeSwarm(fake, backends_vanish_on_node2_and_node3)
    proc = fleet(fake, "--watch", "--for", "3m", "--interval", "15")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout
    assert "3 nodes watched from 2026-05-28" in text and "every 15 s (runs: node1 12, node2 12, node3 12)" in text
    lines = text.splitlines()
    appeared = [line for line in lines if " + ipvs-backend-missing" in line]
    cleared = [line for line in lines if " - ipvs-backend-missing" in line]
    assert [line.split()[1] for line in appeared] == ["node2", "node3"], text
    assert [line.split()[1] for line in cleared] == ["node3", "node2"], text  # node3 first: in time order
    summary = next(line for line in lines if line.startswith("  ipvs-backend-missing"))
    assert "node2 1 episode" in summary and "total 1m15s" in summary and "node3 1 episode" in summary
    assert "total 1m00s" in summary and summary.endswith("never on node1"), summary
    # the job: every node's watch for the duration, and the wait for answers after it
    args = swarm.created[0]["TaskTemplate"]["ContainerSpec"]["Args"]
    assert args[:5] == ["fleet-member", "--watch", "--for", "180", "--interval"], args
    assert swarm.removed == ["svc0"]


def test_the_json_timeline_holds_every_event_and_each_nodes_episodes(fake):
    FakeSwarm(fake, backends_vanish_on_node2_and_node3)
    proc = fleet(fake, "--watch", "--for", "180", "--interval", "15", "--json")
    doc = json.loads(proc.stdout)
    validate(doc)
    assert doc["mode"] == "all-nodes-watch" and doc["status"] == "inconsistent" and proc.returncode == 1
    assert {n["hostname"]: (n["status"], n["runs"]) for n in doc["nodes"]} == {
        "node1": ("consistent", 12), "node2": ("inconsistent", 12), "node3": ("inconsistent", 12)}
    [finding] = doc["findings"]
    assert finding["check"] == "ipvs-backend-missing" and sorted(finding["nodes"]) == ["node2", "node3"]
    assert finding["nodes"]["node2"] == [{"start": T0 + 30, "end": T0 + 105}]
    kinds = [(e["node"], e["kind"]) for e in doc["events"]]
    assert kinds == [("node2", "verdict"), ("node2", "appeared"), ("node3", "verdict"), ("node3", "appeared"),
                     ("node3", "verdict"), ("node3", "cleared"), ("node2", "verdict"), ("node2", "cleared")]
    assert [e["unix_time"] for e in doc["events"]] == sorted(e["unix_time"] for e in doc["events"])


def test_a_quiet_swarm_is_consistent(fake):
    FakeSwarm(fake, lambda node, sample: ("complete", watch_answer(node, set()), ""))
    proc = fleet(fake, "--watch", "--for", "10m", "--json")
    doc = json.loads(proc.stdout)
    validate(doc)
    assert proc.returncode == 0 and doc["status"] == "consistent" and not doc["events"] and not doc["findings"]


@pytest.mark.parametrize("answer, says", [
    (lambda node: watch_answer("n9zzzzzzzzzzzzzzzzzzzzzzz", {2}), "claims to come from node n9zzz"),
    (lambda node: json.dumps({**json.loads(watch_answer(node, set())), "changes": [{"unix_time": "soon"}]})
     + "\n", "not a watch's timeline"),
    (lambda node: json.dumps({"format": "something else"}) + "\n", "not an answer of this ssd"),
])
def test_a_node_whose_answer_is_not_believed_is_named_and_the_others_judged(fake, answer, says):
    def answers(node, sample):
        return "complete", answer(node) if node.startswith("n3") else watch_answer(node, set()), ""
    FakeSwarm(fake, answers)
    proc = fleet(fake, "--watch", "--for", "60", "--json")
    doc = json.loads(proc.stdout)
    validate(doc)
    node3 = next(n for n in doc["nodes"] if n["hostname"] == "node3")
    assert says in node3["reason"] and node3["status"] == "incomplete", node3
    assert proc.returncode == 2 and doc["status"] == "incomplete" and "Traceback" not in proc.stderr
    assert [n["status"] for n in doc["nodes"] if n["hostname"] != "node3"] == ["consistent", "consistent"]


def test_the_member_sends_at_most_max_changes():
    member, timeline = MemberWatch(), ssd.watch.Timeline()
    for number in range(1, MAX_CHANGES + 12):
        result = FAULTY if number % 2 else HEALTHY
        status = ssd.report.overall_status(result)
        member(T0 + number, number, ssd.watch.Run(result, None, 0.1), status,
               timeline.add(T0 + number, status, result.findings))
    answer = member.answer()
    assert len(answer["changes"]) == MAX_CHANGES and answer["dropped"] == 11 and answer["runs"] == MAX_CHANGES + 11


@pytest.mark.parametrize("args, says, code", [
    (["--watch"], "--all-nodes --watch needs --for DURATION", 2),
    (["--watch", "--for", "60", "--record", "/tmp/x"], "--all-nodes --watch with --record: not built", 2),
    (["--watch", "--for", "60", "--nagios"], "--watch with --nagios", 3),  # (UNKNOWN, as a plugin's)
])
def test_misuse_is_one_line(fake, args, says, code):
    proc = fleet(fake, *args)
    assert proc.returncode == code and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
        proc.stderr


def test_the_html_page_has_a_lane_per_node_and_finding(fake, tmp_path):
    FakeSwarm(fake, backends_vanish_on_node2_and_node3)
    page = tmp_path / "swarm.html"
    proc = fleet(fake, "--watch", "--for", "180", "--html", str(page))
    html = page.read_text()
    assert proc.returncode == 1 and "Swarm <b>every node (3)</b>" in html
    assert html.count('class="episode"') == 2 and "node2: network" in html and "node3: network" in html


FAULTS = {"n1": set(), "n2": {3, 4, 5, 6, 7}, "n3": {3, 4, 5, 6}}


def lines_of(proc, into: queue.Queue) -> None:
    for line in proc.stdout:
        into.put((time.monotonic(), line))
    into.put((time.monotonic(), None))


def test_changes_are_printed_as_they_happen_and_once(fake):
    """The nodes' tasks do not finish until the test has read their changes on ssd's output:
    on code that prints only at the end, they are never read (and the tasks finish at 30 s)."""
    released = threading.Event()

    def answers(node, sample):
        out, err = watch_streams(node, FAULTS[node[:2]])
        return "complete", out, err

    swarm = FakeSwarm(fake, answers, finishes=lambda index, poll: released.is_set())
    proc = fleet(fake, "--watch", "--for", "3m", "--interval", "15", popen=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lines_of, args=(proc, lines), daemon=True).start()
    before: list[str] = []
    deadline = time.monotonic() + 30
    while sum(" - ipvs-backend-missing" in line for line in before) < 2 and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            _, line = lines.get(timeout=0.5)
            if line is None:
                break
            before.append(line)
    released.set()
    after = _rest(lines)
    assert proc.wait(timeout=60) == 1, proc.stderr.read()
    live = "".join(before)
    assert "3 nodes watching for 3m00s, a run every 15 s; changes as they happen" in live, live
    # (in the order the log brings them: each node's in its own order)
    assert sorted(line.split()[1] for line in before if " + ipvs-backend-missing" in line) == ["node2", "node3"]
    assert sorted(line.split()[1] for line in before if " - ipvs-backend-missing" in line) == ["node2", "node3"]
    rest = "".join(after)
    assert "ipvs-backend-missing [" not in rest.split("findings across the swarm:")[0], rest  # not twice
    assert "(runs: node1 12, node2 12, node3 12)" in rest and "never on node1" in rest, rest
    assert swarm.removed == ["svc0"]


def _rest(lines: queue.Queue) -> list[str]:
    out = []
    while True:
        _, line = lines.get(timeout=60)
        if line is None:
            return out
        out.append(line)


@pytest.mark.parametrize("stderr", [
    LIVE_MARK + "{not json}\n",
    LIVE_MARK + json.dumps({"unix_time": "soon", "status": "inconsistent", "appeared": [], "cleared": []}) + "\n",
    "Traceback (most recent call last): a line of its own\n",
    LIVE_MARK + "[" * 100_000 + "}\n",
])
def test_a_live_line_that_is_not_a_change_is_not_shown(fake, stderr):
    def answers(node, sample):
        out, err = watch_streams(node, FAULTS[node[:2]])
        return "complete", out, stderr if node.startswith("n3") else err

    FakeSwarm(fake, answers)
    proc = fleet(fake, "--watch", "--for", "3m", "--interval", "15")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    # node3's changes come from its answer, at the end; nothing of its stderr is printed
    lines = proc.stdout.splitlines()
    assert [line.split()[1] for line in lines if " + ipvs-backend-missing" in line] == ["node2", "node3"]
    assert "not json" not in proc.stdout and "soon" not in proc.stdout and "Traceback" not in proc.stdout


def test_a_failed_members_error_is_its_own_line_not_its_live_lines(fake):
    def answers(node, sample):
        out, err = watch_streams(node, FAULTS[node[:2]])
        if node.startswith("n3"):
            return "failed", "", err + "ssd: the engine went away\n"
        return "complete", out, err

    FakeSwarm(fake, answers)
    proc = fleet(fake, "--watch", "--for", "3m", "--interval", "15", "--json")
    doc = json.loads(proc.stdout)
    node3 = next(n for n in doc["nodes"] if n["hostname"] == "node3")
    assert node3["reason"] == "task failed: ssd: the engine went away", node3


# --- tier 2: the member on real namespaces ---------------------------------------------------

def test_the_member_watches_then_answers_one_line(node, engine):
    member = node.ssd(engine.url, "--settle", "0", "ov2", "fleet-member", "--watch", "--for", "3",
                      "--interval", "1")
    assert member.returncode == 0, member.stderr
    assert member.stdout.count("\n") == 1, member.stdout
    answer = json.loads(member.stdout)
    live = [line for line in member.stderr.splitlines() if line.startswith(LIVE_MARK)]
    assert [json.loads(line[len(LIVE_MARK):]) for line in live] == answer["changes"], member.stderr
    assert answer["format"] == "ssd-watch-answer" and answer["runs"] >= 2, answer
    assert answer["changes"][0]["run"] == 1 and answer["node"]["hostname"]
    assert answer["status"] == json.loads(node.ssd(engine.url, "--settle", "0", "--json", "ov2").stdout)["status"]
