"""Fixtures for the plugin's own tests.

The plugin under test is the installed package (its ``pytest11`` entry
point loads it); ``.ci/python`` installs it in a virtual environment.
"""

from __future__ import annotations

from typing import Callable, Iterator, List

import pytest

from helpers import ScriptedServer, Script

pytest_plugins = ["pytester"]


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], ScriptedServer]]:
    """Start scripted servers: ``scripted(upper)``; closed at teardown."""
    servers: List[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
