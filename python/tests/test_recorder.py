"""tcptape.recorder(): record through the proxy, then replay what it recorded."""

from __future__ import annotations

import socket

import pytest

from helpers import talk, upper


def test_a_recording_replays_both_ways(tcptape, scripted, tmp_path):
    server = scripted(upper)
    tape = tmp_path / "upper.tape"
    with tcptape.recorder(server.address, tape) as recorder:
        assert talk(recorder.host, recorder.port, [b"one\n", b"two\n"]) == [b"ONE\n", b"TWO\n"]
    assert not recorder.running and tape.stat().st_size > 0
    assert server.connections == 1

    mock = tcptape.server(tape)  # the server, from tape, for the client
    assert talk(mock.host, mock.port, [b"one\n", b"two\n"]) == [b"ONE\n", b"TWO\n"]
    assert mock.stop()["verdict"] == "passed"
    assert server.connections == 1

    report = tcptape.client(server.address, tape)  # the client, from tape, for the server
    assert report["verdict"] == "passed" and server.connections == 2


def test_a_cassette_folder_records_every_session(tcptape, scripted, tmp_path):
    server = scripted(upper)
    cassette = f"{tmp_path / 'cassette'}/"  # the trailing '/' makes it a cassette
    with tcptape.recorder(server.address, cassette) as recorder:
        assert talk(recorder.host, recorder.port, [b"first\n"]) == [b"FIRST\n"]
        assert talk(recorder.host, recorder.port, [b"second\n"]) == [b"SECOND\n"]
    assert sorted(p.name for p in (tmp_path / "cassette").iterdir()) == ["0001.tape", "0002.tape", "index"]

    mock = tcptape.server(cassette, once=True)
    assert talk(mock.host, mock.port, [b"second\n"]) == [b"SECOND\n"]
    assert talk(mock.host, mock.port, [b"first\n"]) == [b"FIRST\n"]
    assert mock.stop()["verdict"] == "passed"


def test_an_unreachable_upstream_is_an_error(tcptape, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    tape = tmp_path / "nothing.tape"
    with pytest.raises(tcptape.Error) as failure:
        with tcptape.recorder(f"127.0.0.1:{port}", tape) as recorder:
            talk(recorder.host, recorder.port, [b"hello\n"])
    message = str(failure.value)
    assert message.startswith(f"tcptape proxy on {recorder.address} ({tape} from 127.0.0.1:{port}): ")
    assert f"cannot connect to 127.0.0.1:{port}" in message and "\n" not in message
    assert not tape.exists()


def test_a_session_cut_short_by_the_stop_is_an_error(tcptape, scripted, tmp_path):
    server = scripted(upper)
    tape = tmp_path / "cut.tape"
    recorder = tcptape.recorder(server.address, tape, grace=0)
    with socket.create_connection((recorder.host, recorder.port), timeout=10) as conn:
        conn.sendall(b"still here\n")
        assert conn.makefile("rb").readline() == b"STILL HERE\n"
        with pytest.raises(tcptape.Error) as failure:
            recorder.stop()  # while the client is still connected
    message = str(failure.value)
    assert message.endswith("session 1: cut short by the stop; its tape ends with a CUT frame")
    assert "\n" not in message and failure.value.report["verdict"] == "error"
