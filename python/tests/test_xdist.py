"""Parallel runs under pytest-xdist: every mock on a port of its own, every
report and log in the worker's own temporary folder."""

from __future__ import annotations

import pytest

from helpers import INNER_CLIENT, TAPES, upper

pytest.importorskip("xdist", reason="needs pytest-xdist (.ci/python installs it)")

INNER = (
    INNER_CLIENT
    + '''
import os
import pytest

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]

@pytest.mark.parametrize("word", WORDS)
def test_record_and_replay(tcptape, tmp_path, word):
    line = word.encode() + b"\\n"
    with tcptape.recorder(os.environ["UPSTREAM"], tmp_path / "t.tape") as recorder:
        assert talk(recorder.address, [line]) == [line.upper()]
    with tcptape.server(tmp_path / "t.tape") as mock:
        assert talk(mock.address, [line]) == [line.upper()]
    mock = tcptape.server("tapes/upper.txt")
    assert talk(mock.address, [b"hello\\n", b"bye\\n"]) == [b"HELLO\\n", b"BYE\\n"]

def test_the_one_that_departs(tcptape):
    mock = tcptape.server("tapes/upper.txt")
    talk(mock.address, [b"goodbye\\n"])
'''
)


def test_parallel_workers(pytester, scripted, monkeypatch):
    server = scripted(upper)
    monkeypatch.setenv("UPSTREAM", server.address)
    (pytester.path / "tapes").mkdir()
    (pytester.path / "tapes" / "upper.txt").write_bytes((TAPES / "upper.txt").read_bytes())
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=7, errors=1)
    result.stdout.fnmatch_lines(["2 workers ?7 items?"])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_the_one_that_departs*", "*expected (tape):*"])
    assert server.connections == 6
