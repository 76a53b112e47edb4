"""Faults and redaction rules through the fixtures: keyword options reach
``--fault`` and ``--redact-env`` like any other."""

from __future__ import annotations

import time

from helpers import talk, upper


def test_a_fault_slows_the_mock_server(tcptape):
    mock = tcptape.server("tapes/upper.txt", fault="latency=300")
    started = time.monotonic()
    assert talk(mock.host, mock.port, [b"hello\n"]) == [b"HELLO\n"]
    assert time.monotonic() - started >= 0.3  # never early; no upper bound on a busy machine
    assert mock.stop()["verdict"] == "passed"


def test_a_reset_fault_is_reported_as_faulted(tcptape):
    # The reset fires once the mock has 3 bytes of the request: after the
    # connect (a reset at byte 0 may fail the connect itself), before any
    # answer.
    mock = tcptape.server("tapes/upper.txt", fault="reset,dir=up,at=byte:3")
    assert talk(mock.host, mock.port, [b"hello\n"]) == [b""]
    report = mock.stop()  # a faulted session counts as passed
    assert [s["verdict"] for s in report["sessions"]] == ["faulted"]


def test_a_password_named_by_a_rule_never_reaches_the_tape(tcptape, scripted, tmp_path, monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", "hunter2-hunter2")
    server = scripted(upper)
    tape = tmp_path / "login.tape"
    with tcptape.recorder(server.address, tape, redact_env="APP_PASSWORD") as recorder:
        answer = talk(recorder.host, recorder.port, [b"login hunter2-hunter2\n"])
        assert answer == [b"LOGIN HUNTER2-HUNTER2\n"]
    assert b"hunter2-hunter2" not in tape.read_bytes()

    # Replayed, the mock takes the password the client under test has.
    monkeypatch.delenv("APP_PASSWORD")
    mock = tcptape.server(tape)
    assert talk(mock.host, mock.port, [b"login other-password-x\n"])[0].startswith(b"LOGIN ")
    assert mock.stop()["verdict"] == "passed"
