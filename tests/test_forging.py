"""What ssd prints cannot be forged by what it reads: a name from NetworkDB, the Engine API or a
snapshot with a newline, an escape sequence or a carriage return in it is printed escaped (the
text report keeps its lines, --nagios stays one line), and a name in a command ssd suggests is
quoted for the shell."""
from __future__ import annotations

import json
import shlex

from helpers import EXAMPLES, run_ssd

FORGED = "s1\x1b[2K\r\nservice s1... OK\nSSD OK - all fine"
HOST = "node2\x1b]0;pwned\x07\nSSD OK - node2"
EVIL = "s1;touch /tmp/ssd-pwned #"


def forged(tmp_path, service: str = FORGED, host: str = HOST) -> str:
    """The stale-backend recording (a worker: no /services), with service s1 of ov2 renamed in
    NetworkDB's view and the node's name replaced, in every sample."""
    doc = json.loads((EXAMPLES / "stale-backend-node2.json").read_text())
    for sample in doc["samples"]:
        api = sample["api"]
        if "GET /info" in api:  # (read once, in the first sample)
            api["GET /info"]["Name"] = host
        services = api["GET /networks/zintqg6wran9din4t6yyq2xsn"]["Services"]
        services[service] = services.pop("s1")
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_the_text_report_keeps_its_lines(tmp_path):
    proc = run_ssd("--from", forged(tmp_path), env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout and "\x07" not in proc.stdout
    assert not any(line.startswith(("SSD OK", "service s1... OK")) for line in proc.stdout.splitlines())
    assert "s1\\x1b[2K\\r\\nservice s1... OK\\nSSD OK - all fine" in proc.stdout
    assert proc.stdout.startswith("Node node2\\x1b]0;pwned\\x07\\nSSD OK - node2 (")


def test_nagios_stays_one_line(tmp_path):
    proc = run_ssd("--from", forged(tmp_path), "--nagios")
    assert proc.returncode == 2 and proc.stdout.count("\n") == 1 and proc.stdout.startswith("SSD CRITICAL")
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout


def test_json_carries_no_raw_control_character(tmp_path):
    proc = run_ssd("--from", forged(tmp_path), "--json")
    doc = json.loads(proc.stdout)
    assert "\x1b" not in json.dumps(doc, ensure_ascii=False)
    assert doc["node"]["hostname"] == "node2\\x1b]0;pwned\\x07\\nSSD OK - node2"


def test_a_name_in_a_suggested_command_is_quoted(tmp_path):
    proc = run_ssd("--from", forged(tmp_path, service=EVIL, host="node2"), "--json")
    finding = next(f for f in json.loads(proc.stdout)["findings"] if f["service"] == EVIL)
    assert f"docker service update --force {shlex.quote(EVIL)}" in finding["hint"], finding["hint"]
    # as a shell reads it: the name stays one word, no second command
    assert shlex.split(finding["hint"].split("; docker ")[-1]) == ["service", "update", "--force", EVIL]
