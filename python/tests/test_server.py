"""tcptape.server(): a mock server from a tape, for a client under test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

import pytest

import tcptape as tcptape_module
from helpers import TAPES, fake_tcptape, talk


def test_a_client_that_follows_the_tape_passes(tcptape):
    mock = tcptape.server("tapes/upper.txt")  # relative to this file's folder
    assert mock.host == "127.0.0.1" and mock.port > 0
    assert mock.address == f"127.0.0.1:{mock.port}"
    assert talk(mock.host, mock.port, [b"hello\n", b"bye\n"]) == [b"HELLO\n", b"BYE\n"]
    report = mock.stop()
    assert report["verdict"] == "passed"
    assert [s["verdict"] for s in report["sessions"]] == ["passed"]
    assert not mock.running


def test_a_client_that_departs_raises_mismatch_with_the_report(tcptape):
    mock = tcptape.server("tapes/upper.txt")
    assert talk(mock.host, mock.port, [b"hellO\n"]) == [b""]  # the mock closed on it
    with pytest.raises(tcptape.Mismatch) as failure:
        mock.stop()
    text = str(failure.value)
    assert text.splitlines()[0].startswith(f"tcptape server on {mock.address} (tapes/upper.txt): ")
    assert "verdict: mismatch" in text.splitlines()[0]
    assert "byte 4 of its stream differs from the tape" in text
    assert "expected (tape):" in text and "|hello.|" in text and "|hellO.|" in text
    assert "first difference at byte 4: expected 0x6f 'o', received 0x4f 'O'" in text
    assert failure.value.report["verdict"] == "mismatch"
    # The same class whether reached through the fixture or the module.
    assert tcptape.Mismatch is tcptape_module.Mismatch
    assert isinstance(failure.value, tcptape_module.Error)
    # Its verdict was given: stopping again says the same, teardown does not fail.
    with pytest.raises(tcptape.Mismatch):
        mock.stop()


def test_with_block_stops_and_judges_the_mock(tcptape):
    with tcptape.server("tapes/upper.txt") as mock:
        assert talk(mock.host, mock.port, [b"hello\n", b"bye\n"]) == [b"HELLO\n", b"BYE\n"]
    assert not mock.running

    with pytest.raises(tcptape.Mismatch, match="differs from the tape"):
        with tcptape.server("tapes/upper.txt") as mock:
            talk(mock.host, mock.port, [b"bye\n"])


def test_a_failing_block_gets_the_mismatch_report_as_a_note(tcptape):
    if sys.version_info < (3, 11):
        pytest.skip("exception notes came with Python 3.11")
    with pytest.raises(AssertionError) as failure:
        with tcptape.server("tapes/upper.txt") as mock:
            assert talk(mock.host, mock.port, [b"HELLO\n"]) == [b"HELLO\n"]
    notes = "\n".join(getattr(failure.value, "__notes__", []))
    assert "differs from the tape" in notes


def test_an_absolute_tape_path_and_a_path_object(tcptape, tmp_path):
    tape = tmp_path / "banner.txt"
    tape.write_bytes((TAPES / "banner.txt").read_bytes())
    mock = tcptape.server(tape, once=True)
    assert talk(mock.host, mock.port, [b"QUIT\n"], banner=True) == [b"220 ready\n", b"221 bye\n"]
    assert mock.stop()["verdict"] == "passed"


def test_options_reach_the_command_line(tcptape):
    # --text-diff adds a line diff to the report: the option went through by name.
    mock = tcptape.server("tapes/upper.txt", text_diff=True, timeout=5, grace=1)
    talk(mock.host, mock.port, [b"hello\n", b"BYE\n"])
    with pytest.raises(tcptape.Mismatch) as failure:
        mock.stop()
    text = str(failure.value)
    assert "text diff (- tape, + received):" in text
    assert "- bye\\n" in text and "+ BYE\\n" in text


def test_an_ipv6_listen_address(tcptape):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    mock = tcptape.server("tapes/upper.txt", listen="[::1]:0")
    assert mock.host == "::1" and mock.address == f"[::1]:{mock.port}"
    with socket.create_connection(("::1", mock.port), timeout=10) as conn:
        conn.sendall(b"hello\nbye\n")
        conn.shutdown(socket.SHUT_WR)
        assert conn.makefile("rb").read() == b"HELLO\nBYE\n"
    assert mock.stop()["verdict"] == "passed"


def test_a_unix_socket(tcptape, tmp_path):
    path = tmp_path / "mock.sock"
    mock = tcptape.server("tapes/upper.txt", listen=f"unix:{path}")
    assert mock.address == f"unix:{path}" and mock.host is None and mock.port is None
    assert talk(None, None, [b"hello\n", b"bye\n"], unix=str(path)) == [b"HELLO\n", b"BYE\n"]
    assert mock.stop()["verdict"] == "passed"
    assert not path.exists()


def test_the_installed_package_and_its_executable(monkeypatch):
    # The package under test is the installed wheel, not the source tree...
    assert Path(tcptape_module.__file__).parent.parent == Path(sysconfig.get_path("purelib"))
    # ...and its executable is the one the wheel carries.
    monkeypatch.delenv("TCPTAPE_BINARY", raising=False)
    path = tcptape_module.executable()
    assert path == os.path.join(sysconfig.get_path("scripts"), "tcptape")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"tcptape {version('tcptape')}"


# Error paths: each names what is at fault, on its first line.


def test_a_missing_tape_is_an_error_naming_it(tcptape):
    with pytest.raises(tcptape.Error) as failure:
        tcptape.server("tapes/no-such.txt")
    message = str(failure.value)
    assert message.startswith("tcptape server (tapes/no-such.txt) exited with code 1 before it was listening: ")
    assert "cannot open tape" in message and "no-such.txt" in message
    assert not isinstance(failure.value, tcptape.Mismatch)


def test_an_unknown_option_is_the_command_lines_usage_error(tcptape):
    with pytest.raises(tcptape.Error) as failure:
        tcptape.server("tapes/upper.txt", delays=True)
    message = str(failure.value)
    assert "exited with code 2 before it was listening: invalid option '--delays'" in message
    assert "(usage: tcptape server [OPTIONS] LISTEN FILE)" in message
    assert "\n" not in message


def test_a_bad_option_value_is_the_command_lines_error(tcptape):
    with pytest.raises(tcptape.Error, match=r"--timeout: 'soon' is not a positive number"):
        tcptape.server("tapes/upper.txt", timeout="soon")


def test_a_bad_option_type_raises_before_starting(tcptape):
    with pytest.raises(TypeError, match=r"tcptape option timeout=\{'s': 5\}: a dict is not an option value"):
        tcptape.server("tapes/upper.txt", timeout={"s": 5})
    assert tcptape.processes == []


def test_an_executable_exiting_before_its_ready_line(tcptape, tmp_path, monkeypatch):
    fake = fake_tcptape(tmp_path, "echo 'error: no luck today' >&2; exit 1")
    monkeypatch.setenv("TCPTAPE_BINARY", fake)
    with pytest.raises(tcptape.Error) as failure:
        tcptape.server("tapes/upper.txt")
    assert str(failure.value) == (
        "tcptape server (tapes/upper.txt) exited with code 1 before it was listening: no luck today"
    )


def test_an_executable_printing_something_else(tcptape, tmp_path, monkeypatch):
    monkeypatch.setenv("TCPTAPE_BINARY", fake_tcptape(tmp_path, "echo 'hello there'; exec sleep 60"))
    with pytest.raises(tcptape.Error, match=r"printed 'hello there' where 'listening on ADDR' was expected"):
        tcptape.server("tapes/upper.txt")


def gone(pid_file: Path) -> bool:
    """Whether the process whose pid a fake wrote is gone (killed and reaped)."""
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return True
    return False


def test_an_executable_that_never_gets_ready_is_killed(tcptape, tmp_path, monkeypatch):
    pid = tmp_path / "pid"
    monkeypatch.setenv("TCPTAPE_BINARY", fake_tcptape(tmp_path, f"echo $$ > {pid}; exec sleep 60"))
    monkeypatch.setattr(tcptape_module, "READY_TIMEOUT", 0.5)
    with pytest.raises(tcptape.Error, match=r"printed no ready line within 0.5 s"):
        tcptape.server("tapes/upper.txt")
    assert gone(pid)


def test_an_executable_printing_a_strange_address_is_killed(tcptape, tmp_path, monkeypatch):
    pid = tmp_path / "pid"
    script = f"echo $$ > {pid}; echo 'listening on somewhere'; exec sleep 60"
    monkeypatch.setenv("TCPTAPE_BINARY", fake_tcptape(tmp_path, script))
    with pytest.raises(tcptape.Error, match=r"tcptape printed an address it could not have meant: 'somewhere'"):
        tcptape.server("tapes/upper.txt")
    assert gone(pid)


def test_an_executable_that_ignores_sigterm_is_killed(tcptape, tmp_path, monkeypatch):
    script = "trap '' TERM; echo 'listening on 127.0.0.1:9'; exec sleep 60"
    monkeypatch.setenv("TCPTAPE_BINARY", fake_tcptape(tmp_path, script))
    monkeypatch.setattr(tcptape_module, "STOP_MARGIN", 0.5)
    mock = tcptape.server("tapes/upper.txt", grace=0)
    with pytest.raises(tcptape.Error, match=r"did not exit within 0.5 s of SIGTERM, and was killed"):
        mock.stop()
    assert not mock.running


def test_a_missing_executable(tcptape, tmp_path, monkeypatch):
    monkeypatch.setenv("TCPTAPE_BINARY", str(tmp_path / "nowhere"))
    with pytest.raises(tcptape.Error, match=r"TCPTAPE_BINARY=.*nowhere is not an executable file"):
        tcptape.server("tapes/upper.txt")
