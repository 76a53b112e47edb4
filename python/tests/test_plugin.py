"""The fixture's teardown, seen from pytest: a test suite run by ``pytester``."""

from __future__ import annotations

import os

import pytest

from helpers import INNER_CLIENT, TAPES, upper


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A folder with ``tapes/upper.txt`` for tests to be written into."""
    (pytester.path / "tapes").mkdir()
    (pytester.path / "tapes" / "upper.txt").write_bytes((TAPES / "upper.txt").read_bytes())
    return pytester


def test_a_mismatch_fails_the_test_at_teardown_with_the_report(suite):
    suite.makepyfile(
        test_inner=INNER_CLIENT
        + """
def test_client(tcptape):
    mock = tcptape.server("tapes/upper.txt")
    talk(mock.address, [b"hellO\\n"])  # the client under test got it wrong
"""
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_client*",
            "tcptape server on 127.0.0.1:* (tapes/upper.txt): 1 session: 1 mismatched; verdict: mismatch",
            "mismatch with client 127.0.0.1:*: byte 4 of its stream differs from the tape (frame 1, line 4)",
            "  expected (tape):",
            "    00000000  68 65 6c 6c 6f 0a * |hello.|",
            "  received:",
            "    00000000  68 65 6c 6c 4f 0a * |hellO.|",
            "  first difference at byte 4: expected 0x6f 'o', received 0x4f 'O'",
        ]
    )
    # The report alone, without a traceback into the plugin.
    result.stdout.no_fnmatch_line("*plugin.py*")


def test_a_with_block_fails_the_test_itself(suite):
    suite.makepyfile(
        test_inner=INNER_CLIENT
        + """
def test_client(tcptape):
    with tcptape.server("tapes/upper.txt") as mock:
        talk(mock.address, [b"bye\\n"])
"""
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E*tcptape.Mismatch: tcptape server on *verdict: mismatch", "E*expected (tape):"])


def test_a_failed_test_shows_the_mocks_report_too(suite):
    suite.makepyfile(
        test_inner=INNER_CLIENT
        + """
def test_client(tcptape):
    mock = tcptape.server("tapes/upper.txt")
    assert talk(mock.address, [b"hellO\\n"]) == [b"HELLO\\n"]
"""
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_client*", "*first difference at byte 4*"])
    result.stdout.fnmatch_lines(["*FAILURES*", "E*AssertionError: assert *HELLO*"])


def test_mocks_and_recordings_that_passed_end_quietly_at_teardown(suite, scripted):
    server = scripted(upper)
    suite.makepyfile(
        test_inner=INNER_CLIENT
        + f"""
import os

def test_server_mock(tcptape):
    mock = tcptape.server("tapes/upper.txt")
    assert talk(mock.address, [b"hello\\n", b"bye\\n"]) == [b"HELLO\\n", b"BYE\\n"]

def test_record(tcptape):
    recorder = tcptape.recorder("{server.address}", "recorded.tape")
    assert talk(recorder.address, [b"a\\n", b"b\\n"]) == [b"A\\n", b"B\\n"]

def test_replay_what_the_teardown_finished(tcptape):
    mock = tcptape.server("recorded.tape")
    assert talk(mock.address, [b"a\\n", b"b\\n"]) == [b"A\\n", b"B\\n"]
"""
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=3)
    assert os.path.getsize(suite.path / "recorded.tape") > 0
    assert server.connections == 1


def test_a_recording_that_failed_fails_its_test(suite):
    suite.makepyfile(
        test_inner=INNER_CLIENT
        + """
import socket

def test_record(tcptape):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        upstream = probe.getsockname()
    recorder = tcptape.recorder(upstream, "never.tape")
    talk(recorder.address, [b"a\\n"])
"""
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["tcptape proxy on * (never.tape from 127.0.0.1:*): nothing was recorded (*"])


def test_tcptape_update_writes_pending_tapes_and_fails_with_pending(suite, scripted):
    from helpers import lower

    server = scripted(lower)  # the server changed: small letters now
    suite.makepyfile(
        test_inner=f"""
def test_client(tcptape):
    tcptape.client("{server.address}", "tapes/upper.txt")
"""
    )
    result = suite.runpytest_subprocess("--tcptape-update")
    result.assert_outcomes(failed=1)
    new = suite.path / "tapes" / "upper.txt.new"
    result.stdout.fnmatch_lines(["E*tcptape.Pending: tcptape client *", f"E*pending: {new} (tcptape review)"])
    assert '< "hello\\n"' in new.read_text()
    # Without the option the same test is a mismatch, and writes nothing.
    new.unlink()
    result = suite.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E*tcptape.Mismatch: *"])
    assert not new.exists()
