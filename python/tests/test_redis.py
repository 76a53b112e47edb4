"""A real server and a real client: redis-py against redis-server, recorded
through the fixture's recorder and replayed by its mock."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import read_until

redis = pytest.importorskip("redis", reason="needs the redis Python package (.ci/python installs it)")


@pytest.fixture
def redis_socket(tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own, on a UNIX socket (no port to race for)."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (.ci/run installs it)")
    path = tmp_path / "redis.sock"
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        read_until(server, server.stdout, b"eady to accept connections")  # "Ready" or "ready"
        yield f"unix:{path}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


def client(host: str, port: int) -> Any:
    # No retries: a connection the mock closes is an error at once.
    return redis.Redis(host=host, port=port, socket_timeout=10, retry=None)


def test_redis_py_recorded_then_replayed(tcptape, redis_socket, tmp_path):
    tape = tmp_path / "redis.tape"
    with tcptape.recorder(redis_socket, tape) as recorder:
        r = client(recorder.host, recorder.port)
        assert r.set("greeting", "hello") is True
        assert r.get("greeting") == b"hello"
        assert r.incr("visits") == 1
        r.close()

    mock = tcptape.server(tape)  # no redis-server behind it
    r = client(mock.host, mock.port)
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.incr("visits") == 1
    r.close()
    assert mock.stop()["verdict"] == "passed"

    mock = tcptape.server(tape)
    r = client(mock.host, mock.port)
    assert r.set("greeting", "hello") is True
    with pytest.raises(redis.ConnectionError):
        r.get("greeting!")  # not what was recorded: the mock closes
    r.close()
    with pytest.raises(tcptape.Mismatch) as failure:
        mock.stop()
    assert "differs from the tape" in str(failure.value) and "greeting!" in str(failure.value)
