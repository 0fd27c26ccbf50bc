"""A TLS front for the stand-in Engine API: what dockerd --tlsverify looks like to a client.

make_pki() writes a test CA, a server certificate for 127.0.0.1 and a client certificate with
openssl, laid out as DOCKER_CERT_PATH expects (ca.pem, cert.pem, key.pem). TlsFront accepts TLS
connections on 127.0.0.1 that present a client certificate signed by that CA, and passes the
bytes to and from the fake engine's unix socket.
"""
from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(root: Path, name: str = "pki") -> tuple[Path, Path]:
    """(server directory, client directory): each holds ca.pem, cert.pem and key.pem."""
    base = root / name
    server, client = base / "server", base / "client"
    for d in (base, server, client):
        d.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ssd test CA",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=base)
    for where, subject, extension in ((server, "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                                      (client, "/CN=ssd test client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", "key.pem",
                 "-out", "req.pem", cwd=where)
        (where / "ext.cnf").write_text(extension + "\n")
        _openssl("x509", "-req", "-in", "req.pem", "-CA", str(base / "ca.pem"), "-CAkey",
                 str(base / "ca-key.pem"), "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf",
                 "-out", "cert.pem", cwd=where)
        (where / "ca.pem").write_bytes((base / "ca.pem").read_bytes())
    return server, client


class TlsFront:
    """Listen on 127.0.0.1 (a free port), require a client certificate, relay to a unix socket."""

    def __init__(self, server_dir: Path, unix_path: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(server_dir / "cert.pem", server_dir / "key.pem")
        self.context.load_verify_locations(server_dir / "ca.pem")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.unix_path = unix_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes_failed = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def __enter__(self) -> TlsFront:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1
            conn.close()
            return
        backend = socket.socket(socket.AF_UNIX)
        backend.connect(self.unix_path)
        threading.Thread(target=_pipe, args=(backend, tls), daemon=True).start()
        _pipe(tls, backend)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
