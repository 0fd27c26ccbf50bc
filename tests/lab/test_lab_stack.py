"""Tier 3: a real stack (issue 22), deployed with `docker stack deploy` as operators deploy them.

lab/stacks/shop.yml joins the seed: db (hostname `db`, alias `database`), api (hostname
api-<slot>, a health check, a published port, start-first updates, on two networks), cache
(dnsrr, a health check) and vault (global, on an encrypted network, alias `secrets`). The
stack adds each service's short name as an alias. Healthy, every node is consistent on every
network of the stack; then api's tasks on node1 and node2 start failing their health check (the
executor disables them and, httpd ignoring SIGTERM, waits the whole 180 s grace before killing
them while swarm still says running): still consistent, the manager says what it is draining.
Last, the encrypted network's mark rule deleted on node3 is found there and nowhere else.
"""
from __future__ import annotations

import json
import time

import pytest
from labkit import lab
from test_lab import NODES, SHARE, found_only_on, sh, ssd, ssd_everywhere, with_fault

pytestmark = pytest.mark.lab

STACK = "shop"
NETWORKS = ("shop_back", "shop_front", "shop_secure")
REPLICAS = {"shop_db": 2, "shop_api": 3, "shop_cache": 2, "shop_vault": 3}
STACK_FILE = "/lab/repo/lab/stacks/shop.yml"  # the checkout, mounted read-only in every node


def wait(node: int, condition: str, seconds: int = 300) -> None:
    sh(node, f"for _ in $(seq {seconds}); do if {condition}; then exit 0; fi; sleep 1; done; "
             f"echo 'timed out: {condition}' >&2; exit 1")


def listed(node: int, network: str) -> dict[str, int]:
    """How many tasks of each service NetworkDB on node lists on network (none: not there)."""
    out = sh(node, f"docker network inspect -v {network} 2>/dev/null || echo '[]'")
    nets = json.loads(out)
    services = (nets[0].get("Services") or {}) if nets else {}
    return {name: len(svc.get("Tasks") or []) for name, svc in services.items() if name}


def converged(seconds: float = 1500) -> None:
    """Swarm runs every replica, healthy, and each node's NetworkDB lists them all."""
    deadline = time.monotonic() + seconds
    want = {"shop_back": {"shop_db": 2, "shop_api": 3, "shop_cache": 2}, "shop_front": {"shop_api": 3},
            "shop_secure": {"shop_vault": 3}}
    while True:
        running = sh(1, "docker service ls --filter label=com.docker.stack.namespace=shop "
                        "--format '{{.Name}} {{.Replicas}}'")
        replicas = {line.split()[0]: line.split()[1] for line in running.splitlines()}
        ok = all(replicas.get(s) == f"{n}/{n}" for s, n in REPLICAS.items())
        if ok:
            views = {(node, net): listed(node, net) for node in NODES for net in NETWORKS}
            ok = all(views[(node, net)] in ({}, want[net]) for node, net in views)
        if ok:
            return
        assert time.monotonic() < deadline, f"the stack never converged: {replicas}"
        time.sleep(5)


@pytest.fixture(scope="module")
def stack(swarm):
    sh(1, f"docker stack deploy --resolve-image never -c {STACK_FILE} {STACK} >/dev/null")
    converged()
    yield
    sh(1, f"docker stack rm {STACK} >/dev/null")
    wait(1, f"[ -z \"$(docker network ls -q --filter label=com.docker.stack.namespace={STACK})\" ]")


RECORDED = SHARE.parent.parent / "examples"  # snapshots for examples/ (copied by hand, reviewed)


def keep(node: int, name: str, *networks: str) -> None:
    """A snapshot of node, as a user takes one, kept as lab/state/examples/<name>.json."""
    proc = lab("ssd", f"node{node}", "--settle", "2", "--snapshot", "-", *networks)
    assert proc.returncode in (0, 1, 3), proc.stderr
    RECORDED.mkdir(parents=True, exist_ok=True)
    (RECORDED / f"{name}.json").write_text(proc.stdout)


def by_name(doc: dict) -> dict[str, dict]:
    return {n["name"]: n for n in doc["networks"]}


def test_the_stack_is_consistent_on_every_node(stack):
    for node, (code, doc, stderr) in ssd_everywhere(*NETWORKS).items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
        nets = by_name(doc)
        assert set(NETWORKS) <= set(nets), (node, sorted(nets))  # every node runs api and vault
        assert nets["shop_secure"]["overlay"]["status"] == "ok"
        for net in ("shop_back", "shop_secure"):
            assert nets[net]["dns"]["status"] == "ok", (node, net, nets[net]["dns"])
    keep(1, "stack-node1", *NETWORKS)
    keep(2, "stack-node2", *NETWORKS)


def test_names_answer_several_things_and_that_is_right(stack):
    """The manager asks the stack's aliases: db answers its VIP and every task (hostname: db)."""
    proc = lab("ssd", "node1", "--snapshot", "-", "shop_back")
    assert proc.returncode == 0, proc.stderr
    sample = json.loads(proc.stdout)["samples"][-1]
    [answers] = [v["answers"] for k, v in sample["lookups"].items() if k.startswith("dns ")]
    back = next(v for k, v in sample["api"].items() if k.startswith("GET /networks/")
                and v.get("Name") == "shop_back")
    db = back["Services"]["shop_db"]
    tasks = sorted(t["EndpointIP"] for t in db["Tasks"])
    assert sorted(answers["db"]["ips"]) == sorted([db["VIP"].split("/")[0], *tasks]), answers["db"]
    assert answers["database"]["ips"] == [db["VIP"].split("/")[0]]
    assert sorted(answers["tasks.db"]["ips"]) == tasks
    assert answers["tasks.cache"]["ips"] and answers["api"]["ips"]


def api_container(node: int) -> str:
    return sh(node, "docker ps -q --filter label=com.docker.swarm.service.name=shop_api | head -1").strip()


# How many backends node1's load balancer for shop_back holds at weight 0 (a shell expression).
LB_WEIGHT_ZERO = ("$(nsenter --net=/var/run/docker/netns/lb_$(docker network inspect -f '{{.Id}}' shop_back "
                  "| cut -c1-9) ipvsadm-save -n | grep -c -- '-w 0$')")


def test_tasks_failing_their_health_check_are_drained_without_alarm(stack):
    sick = {node: api_container(node) for node in (1, 2)}
    assert all(sick.values()), sick  # api's 3 replicas spread over the 3 nodes
    for node, cid in sick.items():
        sh(node, f"docker exec {cid} touch /tmp/sick")
    try:
        # Unhealthy within a few intervals, then disabled: weight 0 in the manager's load balancer.
        wait(1, f"[ {LB_WEIGHT_ZERO} = 2 ]", 300)
        # The premise, read before the runs: swarm still runs them (the grace is 180 s).
        still = sh(1, "docker service ps shop_api --filter desired-state=running --format '{{.CurrentState}}'")
        verdicts = ssd_everywhere(*NETWORKS)
        keep(1, "stack-health-drain-node1", *NETWORKS)
    finally:
        # httpd ignores SIGTERM: the sick tasks leave after the whole 180 s grace, replaced by
        # healthy ones (swarm's replica count and NetworkDB say nothing of weights meanwhile)
        wait(1, f"[ {LB_WEIGHT_ZERO} = 0 ]", 600)
        converged()
    assert sh(1, f"echo {LB_WEIGHT_ZERO}").strip() == "0"
    for node, (code, doc, stderr) in verdicts.items():
        assert code == 0, (node, doc["findings"], doc["errors"], stderr)
    manager_notes = " ".join(verdicts[1][1]["notes"])
    assert manager_notes.count("is at weight 0") >= 2, verdicts[1][1]["notes"]
    assert "its container on this node is unhealthy" in manager_notes  # node1's own task
    assert "has a health check" in manager_notes and "180 s" in manager_notes  # node2's
    assert still.count("Running") == 3, still  # swarm still ran them when ssd started looking


def test_encrypted_mark_rule_deleted_is_found_on_that_node_only(stack):
    node = 3
    rule = sh(node, "iptables-save -t mangle | grep -i -- '-A OUTPUT .*0xd0c4e3' | head -1").strip()
    assert rule, "no encrypted overlay's mark rule on node3"
    verdicts = with_fault(node, "", f"iptables -t mangle {rule.replace('-A ', '-D ', 1)}",
                          f"iptables -t mangle {rule}", "shop_secure")
    doc = found_only_on(node, verdicts)
    assert {(f["check"], f["layer"], f["network"]) for f in doc["findings"]} == {
        ("overlay-encryption-rules", "overlay", "shop_secure")}
    assert by_name(doc)["shop_secure"]["overlay"]["status"] == "fail"
    assert ssd(node, "shop_secure")[0] == 0  # the rule is back: silent again


REDEPLOY_FILE = "/lab/repo/lab/stacks/again.yml"


def test_a_stack_removed_and_deployed_again_is_judged_by_service_id(swarm):
    """docker stack rm, then deploy at once, on an external network: the old web's tasks (httpd
    ignores SIGTERM: they stay their 180 s grace) are listed under the same name as the new
    one's, each service with its own load balancer. The manager tells them apart by service ID:
    no finding, a note naming the earlier service."""
    sh(1, "docker network create -d overlay --attachable again_ext >/dev/null")
    try:
        sh(1, f"docker stack deploy --resolve-image never -c {REDEPLOY_FILE} again >/dev/null")
        wait(1, "[ \"$(docker service ls --filter name=again_web --format '{{.Replicas}}')\" = 3/3 ]", 900)
        old_id = sh(1, "docker service inspect -f '{{.ID}}' again_web").strip()
        sh(1, "docker stack rm again >/dev/null")
        sh(1, f"docker stack deploy --resolve-image never -c {REDEPLOY_FILE} again >/dev/null")
        wait(1, "[ \"$(docker service ls --filter name=again_web --format '{{.Replicas}}')\" = 3/3 ]", 900)
        listed_now = listed(1, "again_ext").get("again_web", 0)
        code, doc, stderr = ssd(1, "again_ext")
        after = listed(1, "again_ext").get("again_web", 0)
        keep(1, "stack-redeployed-node1", "again_ext")
    finally:
        sh(1, "docker stack rm again >/dev/null")
        wait(1, "[ -z \"$(docker ps -aq --filter label=com.docker.swarm.service.name=again_web)\" ]", 600)
        sh(1, "docker network rm again_ext >/dev/null")
    assert listed_now > 3, f"the old tasks were gone before ssd looked ({listed_now} listed)"
    assert code in (0, 3), (doc["findings"], doc["errors"], stderr)  # consistent, or the new one converging
    assert not [f for f in doc["findings"] if not f.get("converging")], doc["findings"]
    assert any("earlier service" in n and old_id[:12] in n for n in doc["notes"]), (doc["notes"], after)
