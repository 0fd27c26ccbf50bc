"""--html FILE: one self-contained page to attach to a ticket (no script, no fetch, every name
escaped): the fleet's node x network matrix, each cell linked to its findings; a watch's
timeline, a lane per finding, its episodes as bars, the finding's text on hover (SVG titles)."""
from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from ssd import __version__
from ssd.base import count, printable

if TYPE_CHECKING:
    from ssd.swarmwide.answers import FleetResult
    from ssd.watch import Timeline

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 10px;text-align:left}
td.ok{background:#e6f4ea}td.fail{background:#fce8e6;font-weight:bold}td.error{background:#fef7e0}
td.skip{background:#f1f3f4;color:#666}a{color:inherit}
.finding{margin:6px 0 10px 0;padding-left:10px;border-left:3px solid #d93025}
.meta{color:#666;font-size:12px}svg text{font:12px system-ui,sans-serif}
"""
CELL_CLASS = {"OK": "ok", "-": "ok", "PARTIAL": "error", "NOT CHECKED": "error", "no answer": "error",
              "not asked": "skip"}


def esc(value: object) -> str:
    return html.escape(printable(str(value)), quote=True)


def page(title: str, body: list[str]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" "
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"meta\">ssd {esc(__version__)}, written {stamp}</p>"
            + "".join(body) + "</body></html>\n")


# --- the fleet: a matrix, each cell linked to its findings ----------------------------

def fleet_html(result: FleetResult, status: str) -> str:
    from ssd.swarmwide.report import _host_rule, fleet_cell
    columns = [(name, ident) for name, ident in result.networks] + [("host ports", None)]
    body = [f"<p>Verdict: <b>{esc(status)}</b>; {count(len(result.nodes), 'node')}, "
            f"{count(len(result.networks), 'network')}, {result.seconds:.1f} s</p>",
            "<table><tr><th>node</th>" + "".join(f"<th>{esc(name)}</th>" for name, _ in columns) + "</tr>"]
    details = []
    for index, node in enumerate(result.nodes):
        row = f"<tr><th>{esc(node.label)}</th>"
        findings = [f for f in (node.report or {}).get("findings") or [] if isinstance(f, dict)]
        for name, ident in columns:
            cell = fleet_cell(node, ident)
            kind = CELL_CLASS.get(cell, "fail")
            anchor = f"n{index}-{esc(name)}"
            mine = [f for f in findings if (_host_rule(f) if ident is None
                                             else f.get("network") == name and not _host_rule(f))]
            text = f"<a href=\"#{anchor}\">{esc(cell)}</a>" if mine else esc(cell)
            row += f"<td class=\"{kind}\">{text}</td>"
            if mine:
                details.append(f"<h2 id=\"{anchor}\">{esc(node.label)}: {esc(name)}</h2>"
                               + "".join(_finding_block(f) for f in mine))
        if node.report is None:
            details.append(f"<h2>{esc(node.label)}</h2><p>{esc(node.reason or node.status)}</p>")
        body.append(row + "</tr>")
    body.append("</table>")
    body += details
    if result.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")
    return page("ssd --all-nodes", body)


def _finding_block(finding: dict) -> str:
    parts = [f"<b>{esc(finding.get('check'))}</b> [{esc(finding.get('layer'))}]: "
             f"{esc(finding.get('message'))}"]
    for key in ("namespace", "service", "subject", "expected", "actual", "action"):
        if finding.get(key) not in (None, "", []):
            parts.append(f"<div class=\"meta\">{key}: {esc(finding[key])}</div>")
    return f"<div class=\"finding\">{''.join(parts)}</div>"


# --- a watch: a lane per finding, its episodes as bars --------------------------------

LANE, LABEL, WIDTH = 22, 420, 760  # px: a lane's height, the labels' width, the time axis's


def timeline_html(timeline: Timeline, node: str, now: float, what: str = "Node") -> str:
    start, end = timeline.started or now, max(timeline.last or now, now)
    length = max(end - start, 1.0)
    tracks = sorted(timeline.tracks.values(), key=lambda t: (t.episodes[0].start, t.check, t.place))
    height = LANE * (len(tracks) + 2)
    svg = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{LABEL + WIDTH + 60}\" height=\"{height}\">"]
    for tick in range(5):
        x = LABEL + WIDTH * tick / 4
        when = time.strftime("%H:%M:%S", time.gmtime(start + length * tick / 4))
        svg.append(f"<line x1=\"{x:.0f}\" y1=\"0\" x2=\"{x:.0f}\" y2=\"{height - LANE}\" stroke=\"#ddd\"/>"
                   f"<text x=\"{x:.0f}\" y=\"{height - 6}\" text-anchor=\"middle\">{when}</text>")
    for lane, track in enumerate(tracks):
        y = LANE * lane + 4
        svg.append(f"<text x=\"0\" y=\"{y + 13}\"><title>{esc(track.place)}</title>"
                   f"{esc(track.check)} {esc(_short_place(track.place))}</text>")
        for episode in track.episodes:
            stop = episode.end if episode.end is not None else end
            x = LABEL + WIDTH * (episode.start - start) / length
            w = max(3.0, WIDTH * (stop - episode.start) / length)
            still = " (still there)" if episode.end is None else ""
            tip = (f"{track.check} [{track.layer}] {track.place}: {track.message}\n"
                   f"{_stamp(episode.start)} to {_stamp(stop)}{still}, {stop - episode.start:.0f} s")
            svg.append(f"<rect class=\"episode\" x=\"{x:.1f}\" y=\"{y}\" width=\"{w:.1f}\" "
                       f"height=\"{LANE - 8}\" fill=\"#d93025\"><title>{esc(tip)}</title></rect>")
    svg.append("</svg>")
    runs = ", ".join(f"{n} {status}" for status, n in sorted(timeline.statuses.items()))
    body = [f"<p>{esc(what)} <b>{esc(node)}</b>: {count(timeline.runs, 'run')} from {_stamp(start)} "
            f"to {_stamp(end)} "
            f"({esc(runs)}); {count(len(tracks), 'finding')} seen, "
            f"{count(sum(len(t.episodes) for t in tracks), 'episode')}. Hover a bar for the finding.</p>"]
    body.append("".join(svg) if tracks else "<p>No finding appeared.</p>")
    return page(f"ssd --watch: {node}", body)


def _short_place(place: str) -> str:
    return place if len(place) <= 48 else place[:47] + "…"


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
