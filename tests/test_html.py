"""--html: one self-contained page (no script, no fetch, names escaped), and what a real browser
shows of it.

Tier 1: the pages built from a timeline and from a fleet result; `--from DIR/timeline.jsonl
--html` redraws a recorded watch (examples/watch/timeline.jsonl, recorded in the lab). The
browser: Debian's chromium, headless, renders the page (its DOM after layout holds every
episode's bar) and takes the screenshot docs/watch-timeline.png is made from.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from ssd.model import Finding
from ssd.swarmwide.answers import FleetNode, FleetResult
from ssd.html import fleet_html, timeline_html
from ssd.watch import Timeline
from helpers import REPO, one_line, run_ssd

EVIL = "web<script>alert(1)</script>\x1b[2J"
RECORDED = REPO / "examples" / "watch" / "timeline.jsonl"


def self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and "default-src 'none'" in page
    assert "<script" not in page.lower() and not re.search(r"(src|href)=\"(?!#)", page), \
        "the page fetches or links outside itself"
    assert "\x1b" not in page


def intermittent() -> Timeline:
    line = Timeline()
    fault = Finding("vip-alias-missing", f"VIP of {EVIL} gone", network="ov2", namespace="lb_x", service=EVIL)
    other = Finding("overlay-fdb-missing", "fdb entry gone", network="ov2", namespace="1-x", subject="10.0.1.7")
    runs = [[], [fault], [fault, other], [other], [], [fault]]
    for i, found in enumerate(runs):
        line.add(1_800_000_000.0 + 30 * i, "inconsistent" if found else "consistent", found)
    return line


def test_the_timeline_page_draws_each_episode_escaped():
    page = timeline_html(intermittent(), "node2", 1_800_000_200.0)
    self_contained(page)
    assert page.count('class="episode"') == 3  # two of the VIP (it came back), one of the FDB entry
    assert "web&lt;script&gt;" in page and EVIL not in page
    assert "2 findings seen, 3 episodes" in page


def test_the_fleet_page_links_each_failing_cell_to_its_findings():
    bad = json.loads(run_ssd("--from", str(REPO / "examples" / "missing-dnat-node2.json"), "--json").stdout)
    good = json.loads(run_ssd("--from", str(REPO / "examples" / "healthy-node1.json"), "--json").stdout)
    bad["findings"][0]["message"] += EVIL
    nets = [(n["name"], n["id"]) for n in good["networks"]]
    result = FleetResult(nets, [FleetNode("n1", "node1", good), FleetNode("n2", "node2", bad),
                                FleetNode("n3", "node3", None, "no answer within 120 s")], [], 3.2, [], [])
    page = fleet_html(result, "inconsistent")
    self_contained(page)
    links = re.findall(r'<a href="#([^"]+)">FAIL 1</a>', page)
    assert len(links) == 1 and f'id="{links[0]}"' in page, page
    assert "ingress-dnat-missing" in page and "&lt;script&gt;" in page
    assert "no answer within 120 s" in page


def test_a_recorded_watch_is_drawn_again_from_its_timeline(tmp_path):
    out = tmp_path / "watch.html"
    proc = run_ssd("--from", str(RECORDED), "--html", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr  # a finding was seen
    assert "ipvs-backend-missing" in proc.stdout and "1 episode," in proc.stdout, proc.stdout
    page = out.read_text()
    self_contained(page)
    assert page.count('class="episode"') == 1 and "Node <b>node2</b>" in page


@pytest.mark.parametrize("content, says", [
    ('{"time": 1}\n', "line 1 is not a run of ssd --watch --record"),
    ('{"unix_time": NaN, "report": {}}\n', "line 1 is not a run"),
    ("[" * 100000 + "\n", "line 1 is not a run"),
    ("", "holds no run of a watch"),
])
def test_a_timeline_that_is_not_one_is_one_line(tmp_path, content, says):
    source = tmp_path / "timeline.jsonl"
    source.write_text(content)
    line = one_line(run_ssd("--from", str(source), "--html", str(tmp_path / "x.html")))
    assert says in line, line


def test_html_alone_says_what_it_draws():
    assert "--html draws --all-nodes' matrix or a watch's timeline" in one_line(run_ssd("--html", "x.html"))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is not installed: make install installs it (Debian's package)"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--user-data-dir=/tmp/ssd-chromium",
                           *args], capture_output=True, text=True, timeout=120, check=False)


def test_a_real_browser_shows_the_recorded_episodes(tmp_path):
    page = tmp_path / "watch.html"
    assert run_ssd("--from", str(RECORDED), "--html", str(page)).returncode == 1
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    bars = re.findall(r'<rect class="episode" x="([\d.]+)" y="\d+" width="([\d.]+)"', dom.stdout)
    assert len(bars) == 1 and float(bars[0][1]) > 20, dom.stdout[:3000]  # a bar, wide enough to see
    shot = tmp_path / "watch.png"
    taken = chromium("--window-size=1240,260", f"--screenshot={shot}", page.as_uri())
    assert taken.returncode == 0 and shot.stat().st_size > 5000, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
