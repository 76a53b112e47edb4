"""Helpers for the plugin's own tests: scripted TCP servers, a line client."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Callable, List, Optional, Tuple

TAPES = Path(__file__).parent / "tapes"

Script = Callable[[socket.socket], None]


class ScriptedServer:
    """A TCP server on 127.0.0.1:0 running ``script(connection)`` for each
    connection, each on a thread of its own."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()[:2]
        self.address = f"{self.host}:{self.port}"
        self.connections = 0
        self.threads: List[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.script(conn)
            except OSError:
                pass

    def close(self) -> None:
        """Stop accepting, and wait for the connections' scripts to end."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.listener.close()
        self.acceptor.join(timeout=10)
        for thread in self.threads:
            thread.join(timeout=10)


def upper(conn: socket.socket) -> None:
    """Answers each line in capitals; closes after the client's EOF."""
    for line in conn.makefile("rb"):
        conn.sendall(line.upper())
    conn.shutdown(socket.SHUT_WR)


def lower(conn: socket.socket) -> None:
    """Like :func:`upper`, in small letters: a server that changed."""
    for line in conn.makefile("rb"):
        conn.sendall(line.lower())
    conn.shutdown(socket.SHUT_WR)


def talk(
    host: Optional[str], port: Optional[int], lines: List[bytes], banner: bool = False, unix: Optional[str] = None
) -> List[bytes]:
    """Connect, read a banner line if ``banner``, send each line and read a
    line back, half-close, read to EOF. Returns what came back, line by
    line (``b""`` where the server closed instead of answering)."""
    if unix is not None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(10)
        conn.connect(unix)
    else:
        assert host is not None and port is not None
        conn = socket.create_connection((host, port), timeout=10)
    got: List[bytes] = []
    with conn:
        replies = conn.makefile("rb")
        try:
            if banner:
                got.append(replies.readline())
            for line in lines:
                if got and got[-1] == b"":
                    return got  # closed on us
                conn.sendall(line)
                got.append(replies.readline())
            if got and got[-1] == b"":
                return got
            conn.shutdown(socket.SHUT_WR)
            rest = replies.read()
            if rest:
                got.append(rest)
        except OSError:  # reset, or closed under us
            got.append(b"")
    return got


def fake_tcptape(folder: Path, body: str) -> str:
    """An executable shell script standing in for tcptape."""
    path = folder / "fake-tcptape"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def split(address: str) -> Tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


#: A line client for tests run by ``pytester``, which do not see this module.
INNER_CLIENT = '''
import socket

def talk(address, lines):
    host, _, port = address.rpartition(":")
    got = []
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        replies = conn.makefile("rb")
        try:
            for line in lines:
                conn.sendall(line)
                got.append(replies.readline())
            conn.shutdown(socket.SHUT_WR)
            replies.read()
        except OSError:  # reset, or closed under us
            pass
    return got
'''


def read_until(
    proc: "subprocess.Popen[bytes]", stream: Optional[IO[bytes]], wanted: bytes, timeout: float = 30
) -> bytes:
    """Read ``stream`` (a pipe from ``proc``) until a line holding
    ``wanted``; return that line. Raises if ``proc`` exits first or
    ``timeout`` seconds pass; what follows is read by a thread, so the
    process never blocks on a full pipe."""
    assert stream is not None, "the stream must be a pipe"
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        for line in data.split(b"\n")[:-1]:
            if wanted in line:
                threading.Thread(target=_drain, args=(stream,), daemon=True).start()
                return line
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{proc.args!r} printed no {wanted!r} in {timeout} s: {data!r}")
        readable, _, _ = select.select([stream], [], [], remaining)
        if readable:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"{proc.args!r} exited ({proc.wait()}) before {wanted!r}: {data!r}")
            data += chunk


def _drain(stream: IO[bytes]) -> None:
    try:
        while os.read(stream.fileno(), 4096):
            pass
    except (OSError, ValueError):
        pass
