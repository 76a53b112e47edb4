"""The pytest plugin: the ``tcptape`` fixture and ``--tcptape-mode``.

Installed with the package (a ``pytest11`` entry point), so a test only
names the fixture::

    def test_login(tcptape):
        mock = tcptape.server("tapes/login.tape")   # next to this file
        run_client(mock.host, mock.port)
        # at teardown: stopped with SIGTERM; a session that did not pass
        # fails the test with the mismatch report

Every command listens on a port of its own (port 0) and writes its report
and log under pytest's temporary folder, so tests run in parallel under
pytest-xdist.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from . import Tapes

MODES = ("auto", "record", "replay")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--tcptape-mode``."""
    group = parser.getgroup("tcptape", "tcptape record and replay")
    group.addoption(
        "--tcptape-mode",
        choices=MODES,
        default=None,
        help="what tcptape.auto() does: auto (replay a tape that exists, record one that is missing, "
        "except under CI=true), record (always record), replay (never record). "
        "Default: $TCPTAPE_MODE, else auto.",
    )
    group.addoption(
        "--tcptape-update",
        action="store_true",
        default=False,
        help="where a peer departs from its tape, write its new tape beside it (TAPE.new) for `tcptape review`, "
        "and fail the test with tcptape.Pending: tcptape.client(), tcptape.auto(), and tcptape.server() "
        "with upstream=. Unlike TCPTAPE_UPDATE=1, also under CI=true.",
    )


@pytest.fixture
def tcptape(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tapes]:
    """Start tcptape mocks and recordings for this test.

    ``tcptape.server(tape, **options)``, ``tcptape.client(address, tape,
    **options)``, ``tcptape.recorder(upstream, tape, **options)``,
    ``tcptape.auto(upstream, path, **options)``; relative tape paths are
    taken from the test file's folder. Whatever is still running at
    teardown is stopped with SIGTERM; if a session did not pass, or a
    recording was not made whole, the test fails with the report.
    """
    tapes = Tapes(
        base=request.path.parent,
        work=tmp_path_factory.mktemp("tcptape"),
        mode=request.config.getoption("tcptape_mode"),
        update=request.config.getoption("tcptape_update"),
    )
    yield tapes
    failures = tapes.close()
    if failures:
        pytest.fail("\n\n".join(str(failure) for failure in failures), pytrace=False)
