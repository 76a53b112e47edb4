"""README.md's pytest example, run as written, and with the client wrong."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def block(first_line: str) -> str:
    """The fenced block of README.md whose first line is ``first_line``."""
    found = re.search(r"```[a-z]*\n(" + re.escape(first_line) + r"\n.*?)```", README.read_text(), re.S)
    assert found, f"README.md has no block starting {first_line!r}"
    return found.group(1)


def test_the_readme_example(pytester):
    (pytester.path / "tests" / "tapes").mkdir(parents=True)
    (pytester.path / "tests" / "tapes" / "smtp.txt").write_text(block("# tests/tapes/smtp.txt"))
    test = block("# tests/test_mail.py")
    (pytester.path / "tests" / "test_mail.py").write_text(test)
    result = pytester.runpytest_subprocess("-q", "tests")
    result.assert_outcomes(passed=1)

    (pytester.path / "tests" / "test_mail.py").write_text(test.replace('"client"', '"laptop"'))
    result = pytester.runpytest_subprocess("-q", "tests")
    result.assert_outcomes(failed=1, errors=1)
    # The output README.md shows, the ports and the terminal's width aside.
    shown = block("______________________ ERROR at teardown of test_greeting ______________________")
    patterns = [re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:*", line) for line in shown.splitlines()]
    patterns[0] = "*" + patterns[0].strip("_ ") + "*"
    result.stdout.fnmatch_lines(patterns)
