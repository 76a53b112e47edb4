"""Run tcptape from Python tests: mock servers, mock clients, recordings.

The ``tcptape`` executable does the work; this module starts it, reads its
ready line (``listening on ADDR``), stops it with SIGTERM and turns its
exit code and JSON report into a return value or an exception:

- :class:`Mismatch` when a replay departed from its tape (exit code 3);
  ``str()`` of it is the report the command line prints;
- :class:`Pending` when, with ``update=True``, a new tape was written
  beside the old one for ``tcptape review`` (exit code 4);
- :class:`Error` for anything else that went wrong (exit code 1 or 2, an
  executable that never became ready, a bad option value).

:class:`Tapes` is what the pytest fixture ``tcptape`` hands a test (the
plugin lives in :mod:`tcptape.plugin`); it can be used without pytest too.
Keyword options map to command-line options by name: ``once=True`` is
``--once``, ``timeout=5`` is ``--timeout 5``, ``text_diff=True`` is
``--text-diff``, a list repeats the option, ``False`` and ``None`` leave it
out. The plugin knows no option by name, so options added to the command
line later work unchanged.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sysconfig
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

__all__ = [
    "Error",
    "Mismatch",
    "Pending",
    "Process",
    "Tapes",
    "command_options",
    "executable",
]

#: Seconds a started command may take to print its ready line.
READY_TIMEOUT = 30.0
#: Seconds allowed beyond ``--grace`` for a stopped command to exit.
STOP_MARGIN = 10.0
#: The environment variable naming the executable to run, if set.
BINARY_VARIABLE = "TCPTAPE_BINARY"

_OPTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

#: Where a command connects: ``"HOST:PORT"``, ``"unix:/path"``, a
#: ``(host, port)`` pair, or a running :class:`Process` (its address).
Address = Union[str, Tuple[str, int], "Process"]
#: A tape, or a cassette folder (a string ending in ``/``).
TapePath = Union[str, "os.PathLike[str]"]
#: The parsed JSON report of a command (``--report``).
Report = Dict[str, Any]


class Error(Exception):
    """tcptape failed: a usage error, a missing tape, an unreachable peer,
    a recording not made whole, an executable that never became ready.

    ``report`` holds the command's JSON report where it wrote one.
    """

    def __init__(self, message: str, report: Optional[Report] = None) -> None:
        super().__init__(message)
        self.report = report


class Mismatch(Error):
    """A replay departed from its tape (exit code 3).

    ``str()`` is the report the command line prints (where, how, the bytes
    expected and received); ``report`` is the JSON report.
    """


class Pending(Error):
    """With ``update=True``, a peer departed and its new tape was written
    beside the old one for ``tcptape review`` (exit code 4).

    ``pending`` lists those tapes (``TAPE.new``); ``str()`` names them.
    """

    def __init__(self, message: str, report: Optional[Report] = None) -> None:
        super().__init__(message, report)
        self.pending = [str(path) for path in (report or {}).get("pending_tapes") or []]


def executable() -> str:
    """The ``tcptape`` executable to run.

    ``$TCPTAPE_BINARY`` if set, else the one installed beside this package
    (the wheel's script), else ``tcptape`` on ``PATH``.
    """
    override = os.environ.get(BINARY_VARIABLE)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise Error(f"{BINARY_VARIABLE}={override} is not an executable file")
        return override
    folders = [sysconfig.get_path("scripts")]
    try:
        folders.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:  # a Python without a user scheme
        pass
    for folder in folders:
        candidate = os.path.join(folder, "tcptape")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("tcptape")
    if found is None:
        raise Error(
            "the tcptape executable was not found beside this Python package nor on PATH "
            f"(reinstall the package, or set {BINARY_VARIABLE})"
        )
    return found


def command_options(options: Mapping[str, Any]) -> List[str]:
    """Command-line arguments for keyword options, by name.

    ``once=True`` -> ``--once``; ``timeout=5`` -> ``--timeout 5``;
    ``text_diff=True`` -> ``--text-diff``; ``d=True`` -> ``-d``; a list or
    tuple repeats the option for each item; ``False`` and ``None`` leave it
    out. Values may be booleans, numbers, strings or paths. A name that is
    not a word, or a value of another type, raises at once (``TypeError``,
    ``ValueError``): the command line checks everything else.
    """
    args: List[str] = []
    for name, value in options.items():
        if not _OPTION_NAME.fullmatch(name):
            raise ValueError(f"tcptape option {name!r}: not an option name (letters, digits, '_' or '-')")
        flag = ("-" if len(name) == 1 else "--") + name.replace("_", "-")
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if item is None or item is False:
                continue
            if item is True:
                args.append(flag)
            elif isinstance(item, (int, float, str)):
                args += [flag, str(item)]
            elif isinstance(item, os.PathLike):
                args += [flag, os.fspath(item)]
            else:
                raise TypeError(
                    f"tcptape option {name}={value!r}: a {type(item).__name__} is not an option value "
                    "(use True, False, None, a number, a string, a path, or a list of those)"
                )
    return args


def format_address(address: Address) -> str:
    """``"HOST:PORT"`` (``"[::1]:PORT"``) or ``"unix:/path"`` for an :data:`Address`."""
    if isinstance(address, Process):
        return address.address
    if isinstance(address, tuple):
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(address, str):
        return address
    raise TypeError(
        f"tcptape address {address!r}: expected 'HOST:PORT', 'unix:/path', (host, port) or a running mock"
    )


def parse_address(address: str) -> Tuple[Optional[str], Optional[int]]:
    """Host and port of a ready line's address; ``(None, None)`` for ``unix:``."""
    if address.startswith("unix:"):
        return None, None
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit():
        raise Error(f"tcptape printed an address it could not have meant: {address!r}")
    return host, int(port)


def _error_lines(log: str) -> str:
    """The ``error: ...`` and ``usage: ...`` lines of a command's stderr, on one line."""
    lines = [line.strip() for line in log.splitlines()]
    picked = [line[len("error: ") :] for line in lines if line.startswith("error: ")]
    usage = [line for line in lines if line.startswith("usage: ")]
    text = "; ".join(picked) or (lines[-1] if any(lines) else "it printed nothing on stderr")
    if usage:
        text += f" ({usage[0]})"
    return text


def _read_log(path: str) -> str:
    with open(path, "rb") as log:
        return log.read().decode("utf-8", "replace")


def _verdict(describe: str, code: int, report_path: str, log_path: str) -> Tuple[Report, Optional[Error]]:
    """A finished command's JSON report, and its failure unless it exited 0.

    An error's text is one line: what failed, from the report's errors and
    failed sessions (or the ``error:`` lines on stderr where no report was
    written). A mismatch's text is the report the command line prints
    without its log: the summary line, then each mismatched session's
    report.
    """
    try:
        with open(report_path, encoding="utf-8") as f:
            report: Optional[Report] = json.load(f)
    except (OSError, ValueError):
        report = None
    if not isinstance(report, dict):
        report = None
    if code == 0:
        return report or {}, None
    if report is None:
        how = f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"
        return {}, Error(f"{describe} {how}: {_error_lines(_read_log(log_path))}")
    sessions = report.get("sessions") or []
    problems = [str(error) for error in report.get("errors") or []]
    for session in sessions:
        message = str(session.get("message") or f"session {session.get('number')}: {session.get('verdict')}")
        if session.get("verdict") not in ("passed", "faulted", "mismatch", "updated") and not any(
            message in p for p in problems
        ):
            problems.append(message)
    unused = report.get("unused_tapes") or []
    if unused:
        problems.append("tapes never played: " + ", ".join(map(str, unused)))
    summary = str(report.get("summary") or f"verdict: {report.get('verdict')}")
    lines = [f"{describe}: {summary if code in (3, 4) or not problems else '; '.join(problems)}"]
    lines += [
        str(session.get("report") or session.get("message")).rstrip("\n")
        for session in sessions
        if session.get("verdict") == "mismatch"
    ]
    if code == 3:
        lines += [f"error: {problem}" for problem in problems]
    if code == 4:
        lines += [f"pending: {path} (tcptape review)" for path in report.get("pending_tapes") or []]
    kind = {3: Mismatch, 4: Pending}.get(code, Error)
    return report, kind("\n".join(lines), report)


class Process:
    """A running ``tcptape server``, ``proxy`` or ``auto``.

    ``host``, ``port`` and ``address`` are where it listens (``host`` and
    ``port`` are ``None`` on a UNIX socket). :meth:`stop` ends it and gives
    its verdict; as a context manager it is stopped at the ``with`` block's
    end. Made by :class:`Tapes`.
    """

    def __init__(
        self,
        command: str,
        argv: List[str],
        describe: str,
        report_path: str,
        log_path: str,
        env: Optional[Mapping[str, str]],
        grace: float,
    ) -> None:
        __tracebackhide__ = True
        self.command = command
        self.argv = argv
        self.describe = describe
        self.report_path = report_path
        self.log_path = log_path
        self._grace = grace
        self._outcome: Optional[Tuple[Report, Optional[Error]]] = None
        #: Whether :meth:`stop` gave the verdict to a caller already.
        self.judged = False
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env
            )
        try:
            self.address = self._ready_line()[len("listening on ") :]
            self.host, self.port = parse_address(self.address)
        except BaseException:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()  # type: ignore[union-attr]
            raise

    def _ready_line(self) -> str:
        """Read ``listening on ADDR`` from stdout, or raise :class:`Error`."""
        __tracebackhide__ = True
        stdout = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Error(f"{self.describe} printed no ready line within {READY_TIMEOUT:g} s")
            readable, _, _ = select.select([stdout], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                try:
                    code = self.proc.wait(timeout=STOP_MARGIN)
                except subprocess.TimeoutExpired:
                    raise Error(f"{self.describe} closed its stdout without a ready line") from None
                raise Error(
                    f"{self.describe} exited with code {code} before it was listening: {_error_lines(self.log)}"
                ) from None
            data += chunk
        line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
        if not line.startswith("listening on "):
            raise Error(f"{self.describe} printed {line!r} where 'listening on ADDR' was expected")
        return line

    @property
    def log(self) -> str:
        """What the command wrote on stderr so far (its log, reports, summary)."""
        return _read_log(self.log_path)

    @property
    def running(self) -> bool:
        """Whether the command has not exited yet."""
        return self.proc.poll() is None

    def stop(self) -> Report:
        """Stop it with SIGTERM (sessions in progress get ``--grace``), wait
        for it to exit, and return its JSON report.

        Raises :class:`Mismatch` if a replayed session did not pass, and
        :class:`Error` if the command failed otherwise. Calling it again
        gives the same outcome.
        """
        __tracebackhide__ = True
        if self._outcome is None:
            self._outcome = self._finish()
        self.judged = True
        report, failure = self._outcome
        if failure is not None:
            raise failure
        return report

    def _finish(self) -> Tuple[Report, Optional[Error]]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        limit = self._grace + STOP_MARGIN
        try:
            code = self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return {}, Error(f"{self.describe} did not exit within {limit:g} s of SIGTERM, and was killed")
        finally:
            self.proc.stdout.close()  # type: ignore[union-attr]
        return _verdict(self.describe, code, self.report_path, self.log_path)

    def __enter__(self) -> "Process":
        return self

    def __exit__(
        self,
        kind: Optional[type],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        __tracebackhide__ = True
        if exc is None:
            self.stop()
            return
        # The block failed already: stop, and add the verdict to its error.
        try:
            self.stop()
        except Error as failure:
            if hasattr(exc, "add_note"):
                exc.add_note(str(failure))

    def __repr__(self) -> str:
        return f"<tcptape {self.describe}>"


_Failure = Error  # for annotations inside Tapes, where Error is its attribute


class Tapes:
    """Starts tcptape commands for a test: what the fixture ``tcptape`` is.

    ``base`` is the folder relative tape paths are taken from (the test
    file's folder), ``work`` a folder for the commands' reports and logs,
    ``mode`` the ``TCPTAPE_MODE`` for :meth:`auto` (``None``: the
    environment's); ``update`` gives ``update=True`` to :meth:`client`,
    :meth:`auto`, and :meth:`server` with an ``upstream=`` (``pytest
    --tcptape-update``). :meth:`close` stops whatever is still running.
    """

    #: The exceptions, also reachable from the fixture: ``tcptape.Mismatch``.
    Error = Error
    Mismatch = Mismatch
    Pending = Pending

    def __init__(self, base: TapePath, work: TapePath, mode: Optional[str] = None, update: bool = False) -> None:
        self.base = Path(base)
        self.work = Path(work)
        self.mode = mode
        self.update = update
        self.processes: List[Process] = []
        self._count = 0

    def path(self, tape: TapePath) -> str:
        """A tape path taken from the test file's folder, unless absolute;
        a trailing ``/`` (a cassette) is kept."""
        text = os.fspath(tape)
        return text if os.path.isabs(text) else os.path.join(os.fspath(self.base), text)

    def server(self, tape: TapePath, *, listen: str = "127.0.0.1:0", **options: Any) -> Process:
        """Start ``tcptape server`` on ``listen`` (a free port by default),
        serving ``tape`` (a tape, binary or text, or a cassette folder ``DIR/``).

        Returns once it listens. It is stopped at the test's teardown, which
        fails if a session did not pass; ``with`` or :meth:`Process.stop`
        stops it earlier and raises :class:`Mismatch` there.
        """
        if options.get("upstream"):
            options = self._updating(options)
        return self._start("server", [listen, self.path(tape)], os.fspath(tape), options)

    def recorder(
        self, upstream: Address, tape: TapePath, *, listen: str = "127.0.0.1:0", **options: Any
    ) -> Process:
        """Start ``tcptape proxy`` on ``listen``, forwarding to ``upstream``
        and recording into ``tape`` (a file; ``{n}`` in its name, or a folder
        ``DIR/``, records every session). Use it as a context manager: the
        recording is finished, and checked, at the block's end (or at teardown).
        """
        target = format_address(upstream)
        return self._start("proxy", [listen, target, self.path(tape)], f"{os.fspath(tape)} from {target}", options)

    def auto(self, upstream: Address, path: TapePath, *, listen: str = "127.0.0.1:0", **options: Any) -> Process:
        """Start ``tcptape auto``: replay ``path`` if it exists, else record
        it through ``upstream``. ``pytest --tcptape-mode`` or ``TCPTAPE_MODE``
        forces ``record`` or ``replay``; under ``CI=true`` a missing tape is
        an error, never a recording (unless the mode is ``record``)."""
        env = dict(os.environ)
        if self.mode == "auto":
            env.pop("TCPTAPE_MODE", None)  # the command's own default, CI=true included
        elif self.mode is not None:
            env["TCPTAPE_MODE"] = self.mode
        target = format_address(upstream)
        label = f"{os.fspath(path)}, upstream {target}"
        return self._start("auto", [listen, target, self.path(path)], label, self._updating(options), env)

    def client(self, address: Address, tape: TapePath, **options: Any) -> Report:
        """Run ``tcptape client``: play the client side of ``tape`` against
        the server at ``address`` and check every byte it sends.

        Returns the JSON report; raises :class:`Mismatch` (carrying the
        report) if the server departed from the tape, :class:`Error` if the
        replay could not run (the server unreachable, a bad tape).
        """
        __tracebackhide__ = True
        target = format_address(address)
        report_path, log_path, options = self._files("client", self._updating(options))
        argv = [executable(), "client", *command_options(options), target, self.path(tape)]
        with open(log_path, "wb") as log:
            code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log).returncode
        report, failure = _verdict(f"tcptape client {target} ({os.fspath(tape)})", code, report_path, log_path)
        if failure is not None:
            raise failure
        return report

    def close(self) -> List[_Failure]:
        """Stop every command still unjudged; the failures of those whose
        verdict nobody was given yet."""
        failures: List[_Failure] = []
        for process in self.processes:
            if process.judged:
                continue
            try:
                process.stop()
            except Error as failure:
                failures.append(failure)
        return failures

    def _updating(self, options: Dict[str, Any]) -> Dict[str, Any]:
        """``options`` with ``update=True`` under ``--tcptape-update``,
        unless the test gave ``update`` itself."""
        if self.update and "update" not in options:
            return {**options, "update": True}
        return options

    def _files(self, command: str, options: Dict[str, Any]) -> Tuple[str, str, Dict[str, Any]]:
        """Report and log paths for a command; the caller's ``report=`` is
        used (and read) if given."""
        self._count += 1
        stem = self.work / f"{self._count:03d}-{command}"
        options = dict(options)
        given = options.get("report")
        if given is None or given is False:
            options["report"] = report_path = f"{stem}.report.json"
        elif isinstance(given, (str, os.PathLike)):
            report_path = os.fspath(given)
        else:
            raise TypeError(f"tcptape option report={given!r}: expected the path of a file to write")
        return report_path, f"{stem}.log", options

    def _start(
        self,
        command: str,
        positional: List[str],
        label: str,
        options: Dict[str, Any],
        env: Optional[Dict[str, str]] = None,
    ) -> Process:
        __tracebackhide__ = True
        report_path, log_path, options = self._files(command, options)
        argv = [executable(), command, *command_options(options), *positional]
        grace = options.get("grace")
        grace = float(grace) if isinstance(grace, (int, float)) and not isinstance(grace, bool) else 5.0
        process = Process(command, argv, f"tcptape {command} ({label})", report_path, log_path, env, grace)
        process.describe = f"tcptape {command} on {process.address} ({label})"
        self.processes.append(process)
        return process
