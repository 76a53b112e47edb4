"""tcptape.auto() and its modes: record when the tape is missing, else
replay; ``--tcptape-mode`` and ``TCPTAPE_MODE`` force one; ``CI=true``
never records."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from helpers import INNER_CLIENT, lower, talk, upper
from tcptape import Tapes


@pytest.fixture
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a developer's machine (CI runs these tests with CI=true)."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TCPTAPE_MODE", raising=False)


@pytest.fixture
def tapes_in_mode(tmp_path: Path) -> Iterator[Callable[[str], Tapes]]:
    """``Tapes`` with a mode of its own, as ``--tcptape-mode`` makes them."""
    made: List[Tapes] = []

    def make(mode: str) -> Tapes:
        work = tmp_path / f"work-{len(made)}"
        work.mkdir()
        made.append(Tapes(base=Path(__file__).parent, work=work, mode=mode))
        return made[-1]

    yield make
    for tapes in made:
        assert tapes.close() == []


def dead_address() -> str:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_records_when_missing_then_replays(tcptape, scripted, tmp_path, no_ci):
    server = scripted(upper)
    tape = tmp_path / "auto.tape"
    with tcptape.auto(server.address, tape) as mock:
        assert talk(mock.host, mock.port, [b"hi\n"]) == [b"HI\n"]
    assert tape.exists() and server.connections == 1

    with tcptape.auto(server.address, tape) as mock:
        assert talk(mock.host, mock.port, [b"hi\n"]) == [b"HI\n"]
    assert server.connections == 1  # replayed: the server was not asked

    with pytest.raises(tcptape.Mismatch, match="differs from the tape"):
        with tcptape.auto(server.address, tape) as mock:
            talk(mock.host, mock.port, [b"ho\n"])


def test_ci_never_records(tcptape, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("TCPTAPE_MODE", raising=False)
    tape, upstream = tmp_path / "missing.tape", dead_address()
    with pytest.raises(tcptape.Error) as failure:
        tcptape.auto(upstream, tape)
    assert str(failure.value) == (
        f"tcptape auto ({tape}, upstream {upstream}) "
        "exited with code 1 before it was listening: "
        f"CI=true (set TCPTAPE_MODE=record to record in CI) but {tape} does not exist: "
        "nothing to replay, and recording is off"
    )
    assert not tape.exists()
    # A tape that exists replays under CI as anywhere.
    with tcptape.auto(dead_address(), "tapes/upper.txt") as mock:
        assert talk(mock.host, mock.port, [b"hello\n", b"bye\n"]) == [b"HELLO\n", b"BYE\n"]


def test_mode_replay_never_records(tapes_in_mode, tmp_path, no_ci):
    tape = tmp_path / "missing.tape"
    with pytest.raises(Tapes.Error, match=r"TCPTAPE_MODE=replay but .*missing.tape does not exist"):
        tapes_in_mode("replay").auto(dead_address(), tape)


def test_mode_record_records_over_a_tape(tapes_in_mode, tcptape, scripted, tmp_path, no_ci):
    tape = tmp_path / "refreshed.tape"
    with tcptape.auto(scripted(upper).address, tape) as mock:
        assert talk(mock.host, mock.port, [b"Hi\n"]) == [b"HI\n"]
    changed = scripted(lower)  # the server changed: record the tape again
    with tapes_in_mode("record").auto(changed.address, tape) as mock:
        assert talk(mock.host, mock.port, [b"Hi\n"]) == [b"hi\n"]
    assert changed.connections == 1
    with tcptape.auto(dead_address(), tape) as mock:  # replays the new tape
        assert talk(mock.host, mock.port, [b"Hi\n"]) == [b"hi\n"]


def test_mode_auto_keeps_ci_from_recording(tapes_in_mode, tmp_path, monkeypatch):
    # --tcptape-mode=auto is the command's own default, CI=true included,
    # whatever TCPTAPE_MODE says.
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("TCPTAPE_MODE", "record")
    with pytest.raises(Tapes.Error, match=r"CI=true .* does not exist"):
        tapes_in_mode("auto").auto(dead_address(), tmp_path / "missing.tape")


def test_a_bad_tcptape_mode_variable(tcptape, tmp_path, monkeypatch):
    monkeypatch.setenv("TCPTAPE_MODE", "sometimes")
    with pytest.raises(tcptape.Error) as failure:
        tcptape.auto(dead_address(), tmp_path / "x.tape")
    message = str(failure.value)
    assert "exited with code 2 before it was listening: " in message
    assert "TCPTAPE_MODE: 'sometimes' is not record, replay or auto" in message


INNER = (
    INNER_CLIENT
    + '''
import os

def test_auto(tcptape):
    with tcptape.auto(os.environ["UPSTREAM"], "recorded.tape") as mock:
        assert talk(mock.address, [b"ping\\n"]) == [b"PING\\n"]
'''
)


def test_the_command_line_option(pytester, scripted, monkeypatch):
    server = scripted(upper)
    monkeypatch.setenv("UPSTREAM", server.address)
    monkeypatch.delenv("TCPTAPE_MODE", raising=False)
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(test_inner=INNER)
    tape = pytester.path / "recorded.tape"

    result = pytester.runpytest_subprocess()  # CI=true, no tape: an error
    result.assert_outcomes(failed=1)
    refused = "*CI=true (set TCPTAPE_MODE=record to record in CI) but *recorded.tape does not exist*"
    result.stdout.fnmatch_lines([refused])
    assert not tape.exists() and server.connections == 0

    result = pytester.runpytest_subprocess("--tcptape-mode=record")  # records, even in CI
    result.assert_outcomes(passed=1)
    assert tape.exists() and server.connections == 1

    result = pytester.runpytest_subprocess("--tcptape-mode=replay")
    result.assert_outcomes(passed=1)
    assert server.connections == 1

    monkeypatch.setenv("TCPTAPE_MODE", "record")  # the variable, where the option is not given
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert server.connections == 2

    result = pytester.runpytest_subprocess("--tcptape-mode=replay")  # the option wins
    result.assert_outcomes(passed=1)
    assert server.connections == 2


def test_a_bad_mode_option_is_a_usage_error(pytester):
    pytester.makepyfile(test_inner="def test_nothing(): pass")
    result = pytester.runpytest_subprocess("--tcptape-mode=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tcptape-mode: invalid choice: 'sometimes'*"])


def test_update_hands_a_changed_client_over_and_raises_pending(tcptape, scripted, tmp_path, no_ci):
    server = scripted(upper)
    tape = tmp_path / "upper.txt"
    tape.write_text((Path(__file__).parent / "tapes" / "upper.txt").read_text())
    with pytest.raises(tcptape.Pending) as pending:
        with tcptape.auto(server.address, tape, update=True) as mock:
            # The tape answers "hello"; the real server answers the rest.
            assert talk(mock.host, mock.port, [b"hello\n", b"howdy\n"]) == [b"HELLO\n", b"HOWDY\n"]
    new = f"{tape}.new"
    assert pending.value.pending == [new]
    assert f"pending: {new} (tcptape review)" in str(pending.value)
    assert '> "howdy\\n"' in Path(new).read_text()
    assert server.connections == 1
