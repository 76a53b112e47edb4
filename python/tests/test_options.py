"""Keyword options to command-line options, by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcptape import Error, command_options, format_address, parse_address


def test_options_by_name():
    assert command_options({"once": True}) == ["--once"]
    assert command_options({"timeout": 5}) == ["--timeout", "5"]
    assert command_options({"speed": 2.5}) == ["--speed", "2.5"]
    assert command_options({"text_diff": True}) == ["--text-diff"]
    assert command_options({"address_file": Path("/tmp/addr")}) == ["--address-file", "/tmp/addr"]
    assert command_options({"d": True, "n": True}) == ["-d", "-n"]
    assert command_options({"once": False, "reuse": None}) == []
    assert command_options({"filter": ["10.0.0.1:80", "10.0.0.2:80"]}) == [
        "--filter", "10.0.0.1:80", "--filter", "10.0.0.2:80",
    ]  # fmt: skip
    assert command_options({"grace": 0, "max_sessions": 3}) == ["--grace", "0", "--max-sessions", "3"]
    # A name the command line does not know goes through: it says so itself.
    assert command_options({"some_future_option": "x"}) == ["--some-future-option", "x"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"timeout": {"s": 5}}, r"tcptape option timeout=\{'s': 5\}: a dict is not an option value"),
        ({"filter": [["a"]]}, r"tcptape option filter=\[\['a'\]\]: a list is not an option value"),
        ({"buffer": b"2M"}, r"tcptape option buffer=b'2M': a bytes is not an option value"),
    ],
)
def test_a_value_of_another_type(options, message):
    with pytest.raises(TypeError, match=message):
        command_options(options)


@pytest.mark.parametrize("name", ["--once", "", "_once", "once now"])
def test_a_name_that_is_not_an_option_name(name):
    with pytest.raises(ValueError, match=r"tcptape option .*: not an option name"):
        command_options({name: True})


def test_addresses():
    assert format_address(("127.0.0.1", 80)) == "127.0.0.1:80"
    assert format_address(("::1", 80)) == "[::1]:80"
    assert format_address("unix:/run/x.sock") == "unix:/run/x.sock"
    assert parse_address("127.0.0.1:41234") == ("127.0.0.1", 41234)
    assert parse_address("[::1]:41234") == ("::1", 41234)
    assert parse_address("localhost:5") == ("localhost", 5)
    assert parse_address("unix:/run/x.sock") == (None, None)
    with pytest.raises(Error, match=r"tcptape printed an address it could not have meant: 'somewhere'"):
        parse_address("somewhere")


def test_a_report_option_that_is_not_a_path(tcptape):
    with pytest.raises(TypeError, match=r"tcptape option report=True: expected the path of a file to write"):
        tcptape.server("tapes/upper.txt", report=True)
