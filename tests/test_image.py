"""The image the swarm-wide modes run as root on every node is the one the user meant: inferred
only when ssd verifiably runs in a container (its own /etc/hostname mount, not any container's
mount a host sees), and pinned (registry digest, else image ID) so that every node runs the same
bytes whatever a tag points to there."""
from __future__ import annotations

import ssd.swarmwide.job

ME = "a" * 64
OTHER = "b" * 64
IMAGE_ID = "sha256:" + "c" * 64
# A host's mount table: another container's shm and hostname mounts, none on its own /etc/hostname.
HOST = (f"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"2 1 0:50 / /var/lib/docker/containers/{OTHER}/mounts/shm rw - tmpfs shm rw\n"
        f"3 1 8:1 /var/lib/docker/containers/{OTHER}/hostname /mnt/peek rw - ext4 /dev/sda1 rw\n")
# Inside a container: the engine binds its own hostname file onto /etc/hostname.
CONTAINER = (f"1 0 0:40 / / rw - overlay overlay rw\n"
             f"2 1 0:50 / /dev/shm rw - tmpfs shm rw\n"
             f"3 1 8:1 /var/lib/docker/containers/{ME}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n")


class Engine:
    def __init__(self, digests: list[str]):
        self.digests, self.asked = digests, []

    def container(self, cid: str) -> dict | None:
        self.asked.append(cid)
        return {"Image": IMAGE_ID, "Config": {"Image": "ssd:latest"}} if cid == ME else None

    def image(self, ref: str) -> dict | None:
        return {"Id": IMAGE_ID, "RepoDigests": self.digests} if ref == IMAGE_ID else None


def table(tmp_path, text: str) -> str:
    path = tmp_path / "mountinfo"
    path.write_text(text)
    return str(path)


def test_a_host_is_in_no_container_whatever_its_mount_table_shows(tmp_path):
    engine = Engine([])
    assert ssd.swarmwide.job.own_container(table(tmp_path, HOST)) is None
    assert ssd.swarmwide.job.own_image(engine, table(tmp_path, HOST)) is None and engine.asked == []


def test_in_a_container_its_image_is_pinned_by_digest(tmp_path):
    digest = "registry.example/ops/ssd@sha256:" + "d" * 64
    engine = Engine(["not a digest", digest])
    assert ssd.swarmwide.job.own_container(table(tmp_path, CONTAINER)) == ME
    assert ssd.swarmwide.job.own_image(engine, table(tmp_path, CONTAINER)) == (digest, "ssd:latest")


def test_without_a_registry_digest_it_is_pinned_by_image_id(tmp_path):
    """Swarm does not pull an image referenced by ID (daemon/cluster/executor/container
    adapter.go, pullImage): every node must hold it, as a locally built image is."""
    assert ssd.swarmwide.job.own_image(Engine([]), table(tmp_path, CONTAINER)) == (IMAGE_ID, "ssd:latest")


def test_no_mount_table_is_no_container(tmp_path):
    assert ssd.swarmwide.job.own_container(str(tmp_path / "missing")) is None
