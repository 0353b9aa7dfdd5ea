"""Fixtures shared by every test area.

- ``broker``: a real Mosquitto from touchlamp's own rendering (``ManagedBroker``, started by
  ``tests/support/broker.py``, the one place tests start touchlamp's broker) on a free
  loopback port, with its state in the test's ``tmp_path``; never the machine's broker on 1883,
  never a public one. Function-scoped (a start takes a few tens of milliseconds), so no test sees
  another's lamps, sessions or retained messages. Teardown always stops Mosquitto, and the
  session checks at its end that none of the brokers it started is still running.
- PostgreSQL: a throwaway cluster started on first use (``tests/support/postgres_cluster.py``),
  on a free loopback port, never the machine's server on 5432; the session removes it at its end.
- An ERROR (or worse) logged by any ``touchlamp`` logger fails the test: that is how an
  exception swallowed in a callback shows up. Opt out with ``@pytest.mark.allow_error_logs``
  in a test that provokes one on purpose.
- The same for the processes a test starts (a relay, a simulated lamp) that log to a ``*.log``
  file under the test's ``tmp_path``: an ERROR record of a touchlamp logger, or a traceback
  nobody logged, fails the test (``tests/support/child_logs.py``). Allow the lines a test
  provokes on purpose with ``@pytest.mark.allow_child_errors(r"regex", ...)`` (``re.search``
  per line).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import BrokerFixture, start_managed_broker, started_brokers
from tests.support.child_logs import errors_under
from tests.support.postgres_cluster import session_cluster_running, stop_session_cluster

# pytester runs a small test session in-process: how the error-log guard itself is tested.
pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_error_logs: the test provokes an ERROR log line on purpose (no failure for it)",
    )
    config.addinivalue_line(
        "markers",
        "allow_child_errors(*patterns): error lines in child processes' logs that the test "
        "provokes on purpose (regexes, re.search per line)",
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerFixture]:
    """A running Mosquitto configured by touchlamp, with admin API and client helpers."""
    fixture = BrokerFixture(start_managed_broker(tmp_path / "broker"))
    try:
        yield fixture
    finally:
        fixture.close()


@pytest.fixture(scope="session", autouse=True)
def _throwaway_postgres_removed() -> Iterator[None]:
    # An inner session (pytester, in this process) leaves the outer session's cluster alone.
    outer = session_cluster_running()
    yield
    if not outer:
        stop_session_cluster()


@pytest.fixture(scope="session", autouse=True)
def _no_stray_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    stray = [managed for managed in started_brokers() if managed.running]
    for managed in stray:
        managed.stop()
    assert not stray, f"brokers left running by a test (now stopped): {stray}"
    # Brokers started by child processes (the demo, relays, benchmarks): none may outlive them.
    orphans = _mosquittos_under(tmp_path_factory.getbasetemp())
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not orphans, f"Mosquitto processes left behind by child processes (killed): {orphans}"


def _mosquittos_under(directory: Path) -> dict[int, str]:
    """Running ``mosquitto -c FILE`` processes whose FILE is under ``directory``: pid → FILE."""
    found: dict[int, str] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # ended meanwhile
        if Path(argv[0]).name == "mosquitto" and "-c" in argv[:-1]:
            config = argv[argv.index("-c") + 1]
            if Path(config).is_relative_to(directory.resolve()):
                found[int(proc.name)] = config
    return found


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def _fail_on_error_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    collector = _ErrorCollector()
    logger = logging.getLogger("touchlamp")
    logger.addHandler(collector)
    try:
        yield
    finally:
        logger.removeHandler(collector)
    if collector.records and request.node.get_closest_marker("allow_error_logs") is None:
        lines = "\n".join(f"  {record.name}: {record.getMessage()}" for record in collector.records)
        pytest.fail(
            f"touchlamp logged {len(collector.records)} error(s) during the test "
            f"(mark it allow_error_logs if that is intended):\n{lines}",
            pytrace=False,
        )
    _fail_on_child_errors(request)


def _fail_on_child_errors(request: pytest.FixtureRequest) -> None:
    """Scan the logs the test's child processes wrote (after every fixture has stopped them)."""
    tmp_path = (getattr(request.node, "funcargs", None) or {}).get("tmp_path")
    if not isinstance(tmp_path, Path) or not tmp_path.is_dir():
        return  # the test made no directory, so no child of it wrote a log there
    allowed = [
        re.compile(pattern)
        for marker in request.node.iter_markers("allow_child_errors")
        for pattern in marker.args
    ]
    found = errors_under(tmp_path, allowed)
    if found:
        shown = "\n".join(
            f"  {log.relative_to(tmp_path)}: {line}"
            for log, lines in found.items()
            for line in lines
        )
        pytest.fail(
            f"child processes logged {sum(map(len, found.values()))} error(s) during the test "
            f"(allow the intended ones with @pytest.mark.allow_child_errors(r'regex')):\n{shown}",
            pytrace=False,
        )
