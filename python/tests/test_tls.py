"""The TLS recipe of docs/tls.md: tcptape speaks plain TCP, socat speaks TLS.

Recording: the client under test -> socat OPENSSL-LISTEN (a throwaway
certificate the client trusts) -> tcptape proxy -> socat OPENSSL (TLS to
the real server, verifying its certificate) -> the real TLS server.
Replay: the client under test -> socat OPENSSL-LISTEN -> tcptape server.
The tape holds the plaintext.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from helpers import ScriptedServer, read_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "tls.md"

if shutil.which("socat") is None or shutil.which("openssl") is None:
    pytest.skip("needs socat and openssl (.ci/run installs socat)", allow_module_level=True)


def certificate(folder: Path, name: str) -> Tuple[Path, Path]:
    """A throwaway self-signed certificate for localhost and 127.0.0.1."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def documented_socat_front() -> Callable[[str, Path, Path], Tuple["subprocess.Popen[str]", int]]:
    """``socat_front`` from docs/tls.md's pytest example, as written there."""
    found = re.search(r"```python\n(.*?def socat_front.*?)```", DOC.read_text(), re.S)
    assert found, "docs/tls.md has no python block defining socat_front"
    namespace: Dict[str, Any] = {}
    exec(compile(found.group(1), str(DOC), "exec"), namespace)
    return namespace["socat_front"]  # type: ignore[no-any-return]


@pytest.fixture
def socat() -> Iterator[Callable[..., str]]:
    """Start ``socat LISTEN-ADDRESS TARGET`` on port 0; returns the address
    it listens on (from its ``-d -d`` log). Stopped at teardown."""
    started: List["subprocess.Popen[bytes]"] = []

    def start(listen: str, target: str) -> str:
        proc = subprocess.Popen(
            ["socat", "-d", "-d", listen, target], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started.append(proc)
        line = read_until(proc, proc.stderr, b"listening on AF=2 ")
        return line.rsplit(b" ", 1)[1].decode()

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def tls_echo(cert: Path, key: Path) -> Callable[[socket.socket], None]:
    """The real server: TLS, echoes what it reads until the client's EOF."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def script(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            while True:
                try:
                    data = tls.recv(4096)
                except (ssl.SSLEOFError, ConnectionError):  # an EOF without close_notify
                    break
                if not data:
                    break
                tls.sendall(data)

    return script


def tls_client(address: str, cafile: Path, line: bytes) -> bytes:
    """The client under test: TLS to ``localhost``, verifying the server's
    certificate against ``cafile``; sends a line, returns what comes back."""
    context = ssl.create_default_context(cafile=str(cafile))
    port = int(address.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(line)
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                answer += chunk
    return answer


def test_tls_recorded_and_replayed_through_socat(tcptape, socat, tmp_path):
    front_cert, front_key = certificate(tmp_path, "mock")  # what the client under test trusts
    real_cert, real_key = certificate(tmp_path, "real")  # the real server's own
    real = ScriptedServer(tls_echo(real_cert, real_key))
    tape = tmp_path / "tls.tape"
    try:
        # Record: TLS terminated in front of the proxy, originated behind it.
        behind = socat(
            "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr,fork",
            f"OPENSSL:127.0.0.1:{real.port},cafile={real_cert},verify=1",
        )
        with tcptape.recorder(behind, tape) as recorder:
            front = socat(
                f"OPENSSL-LISTEN:0,bind=127.0.0.1,reuseaddr,fork,cert={front_cert},key={front_key},verify=0",
                f"TCP:{recorder.address}",
            )
            assert tls_client(front, front_cert, b"hello over TLS\n") == b"hello over TLS\n"
        assert real.connections == 1
    finally:
        real.close()

    # Replay: the mock in plain TCP behind a TLS front; no real server at all.
    # The front is started by docs/tls.md's socat_front, as documented.
    socat_front = documented_socat_front()
    mock = tcptape.server(tape)
    front, port = socat_front(mock.address, front_cert, front_key)
    try:
        assert tls_client(f"127.0.0.1:{port}", front_cert, b"hello over TLS\n") == b"hello over TLS\n"
    finally:
        front.terminate()
        front.wait(timeout=30)
        front.stderr.close()
    assert mock.stop()["verdict"] == "passed"

    # A client that says something else fails the mock, TLS or not.
    mock = tcptape.server(tape)
    front_address = socat(
        f"OPENSSL-LISTEN:0,bind=127.0.0.1,reuseaddr,fork,cert={front_cert},key={front_key},verify=0",
        f"TCP:{mock.address}",
    )
    assert tls_client(front_address, front_cert, b"HELLO over TLS\n") == b""
    with pytest.raises(tcptape.Mismatch, match=r"(?s)byte 0 of its stream differs.*\|HELLO over TLS\.\|"):
        mock.stop()


def test_a_client_that_verifies_refuses_another_certificate(socat, tmp_path):
    # The recipe's client really verifies: a front with another certificate is refused.
    trusted, _ = certificate(tmp_path, "trusted")
    other_cert, other_key = certificate(tmp_path, "other")
    front = socat(
        f"OPENSSL-LISTEN:0,bind=127.0.0.1,reuseaddr,fork,cert={other_cert},key={other_key},verify=0",
        "TCP:127.0.0.1:9",
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(front, trusted, b"hello\n")
