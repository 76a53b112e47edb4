"""tcptape.client(): a mock client from a tape, against a server under test."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from helpers import lower, upper


def test_a_server_that_follows_the_tape_passes(tcptape, scripted):
    server = scripted(upper)
    report = tcptape.client(server.address, "tapes/upper.txt")
    assert report["verdict"] == "passed"
    assert report["sessions"][0]["client_bytes"] == len(b"hello\nbye\n")
    assert server.connections == 1


def test_a_server_that_departs_raises_mismatch_with_the_report(tcptape, scripted):
    server = scripted(lower)
    with pytest.raises(tcptape.Mismatch) as failure:
        tcptape.client((server.host, server.port), "tapes/upper.txt")
    text = str(failure.value)
    assert text.splitlines()[0] == (
        f"tcptape client {server.address} (tapes/upper.txt): 1 session: 1 mismatched; verdict: mismatch"
    )
    assert "expected (tape):" in text and "|HELLO.|" in text and "|hello.|" in text
    assert failure.value.report["sessions"][0]["verdict"] == "mismatch"


def test_a_mock_client_against_a_mock_server(tcptape):
    mock = tcptape.server("tapes/banner.txt")
    assert tcptape.client(mock, "tapes/banner.txt")["verdict"] == "passed"
    assert mock.stop()["verdict"] == "passed"


def test_options_and_a_report_file_of_the_callers(tcptape, scripted, tmp_path):
    server = scripted(upper)
    report_file = tmp_path / "client.json"
    report = tcptape.client(server.address, "tapes/upper.txt", report=report_file, no_assert=True, timeout=5)
    assert report_file.exists() and report["verdict"] == "passed"


def test_an_unreachable_server_is_an_error(tcptape):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(tcptape.Error) as failure:
        tcptape.client(f"127.0.0.1:{port}", "tapes/upper.txt")
    assert not isinstance(failure.value, tcptape.Mismatch)
    assert str(failure.value) == (
        f"tcptape client 127.0.0.1:{port} (tapes/upper.txt): "
        f"session 1: cannot connect to 127.0.0.1:{port}: Connection refused"
    )


def test_a_missing_tape_is_an_error_naming_it(tcptape, scripted):
    server = scripted(upper)
    with pytest.raises(tcptape.Error) as failure:
        tcptape.client(server.address, "tapes/no-such.txt")
    assert str(failure.value) == (
        f"tcptape client {server.address} (tapes/no-such.txt): cannot open tape "
        f"{Path(__file__).parent / 'tapes' / 'no-such.txt'}: No such file or directory"
    )


def test_an_address_of_another_type(tcptape):
    with pytest.raises(TypeError, match=r"tcptape address 5432: expected 'HOST:PORT'"):
        tcptape.client(5432, "tapes/upper.txt")
