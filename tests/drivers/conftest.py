"""Service fixtures for the driver tests: unmodified blocking drivers against real servers.

Every test here runs with `unknot.patch()` applied (module-scoped ``patched`` fixture) and uses
`run_concurrently`: 50 fibers on ONE OS thread each make a call that waits about 0.2 s in the
server; they must all finish in well under 50 x 0.2 s, on the main thread, without starting a
thread, and each must get its own correct result.

Services: those the machine runs (Redis, PostgreSQL, MariaDB, RabbitMQ, Mosquitto) are expected
on their default loopback ports; the others (beanstalkd, the slow HTTP, SMTP and S3 servers in
``servers/``) are started by their fixtures on free loopback ports. A test whose service or
package is missing is skipped with the reason, except under ``CI=true``, where it fails
(`unavailable` is the one place that decides).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from drivers_support import (
    SERVER_DELAY,
    Outcome,
    Server,
    die_with_parent,
    free_port,
    require_module,
    require_tcp,
    run_concurrently,
    start_script,
    stop,
    unavailable,
    wait_for_tcp,
)

import unknot


@pytest.fixture(scope="module", autouse=True)
def patched() -> Iterator[None]:
    """The driver tests run patched, as a program started with ``python -m unknot`` would."""
    unknot.patch()
    try:
        yield
    finally:
        unknot.unpatch()


# -- services the machine runs -----------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_addr() -> tuple[str, int]:
    require_module("redis")
    require_tcp("127.0.0.1", 6379, "Redis")
    return ("127.0.0.1", 6379)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    psycopg = require_module("psycopg")
    require_tcp("127.0.0.1", 5432, "PostgreSQL")
    errors = []
    for user in ("postgres", "root"):
        dsn = f"host=127.0.0.1 port=5432 dbname=test user={user} connect_timeout=5"
        try:
            psycopg.connect(dsn).close()
            return dsn
        except psycopg.Error as exc:
            errors.append(f"{user}: {exc}")
    unavailable(f"PostgreSQL on 127.0.0.1:5432 refused db test: {errors}")


@pytest.fixture(scope="session")
def mysql_params() -> dict[str, Any]:
    pymysql = require_module("pymysql")
    require_tcp("127.0.0.1", 3306, "MariaDB/MySQL")
    # ssl_disabled: left out, recent PyMySQL (1.2.4 here) prefers TLS and builds a new default SSL
    # context for every connection, which loads the system's CA bundle (about 50 ms of CPU
    # here): 50 connections would spend 2.5 s of CPU on it, one after the other, however
    # concurrent the waits are. The test is about the waits.
    params: dict[str, Any] = dict(
        host="127.0.0.1", port=3306, user="root", password="", database="test", ssl_disabled=True
    )
    try:
        pymysql.connect(connect_timeout=5, **params).close()
    except pymysql.Error as exc:
        unavailable(f"MariaDB on 127.0.0.1:3306 refused root@test: {exc}")
    return params


@pytest.fixture(scope="session")
def rabbitmq_addr() -> tuple[str, int]:
    require_module("pika")
    require_tcp("127.0.0.1", 5672, "RabbitMQ")
    return ("127.0.0.1", 5672)


@pytest.fixture(scope="session")
def mqtt_addr() -> tuple[str, int]:
    require_module("paho.mqtt.client")
    require_tcp("127.0.0.1", 1883, "Mosquitto (MQTT)")
    return ("127.0.0.1", 1883)


# -- services the fixtures start -----------------------------------------------------------------


@pytest.fixture(scope="session")
def beanstalkd_addr() -> Iterator[tuple[str, int]]:
    """A private beanstalkd on a free port (``make services`` installs the binary)."""
    require_module("greenstalk")
    binary = shutil.which("beanstalkd") or next(
        (p for p in ("/usr/bin/beanstalkd", "/usr/sbin/beanstalkd") if os.path.exists(p)), None
    )
    if binary is None:
        unavailable("beanstalkd is not installed (make services: apt-get install -y beanstalkd)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        wait_for_tcp("127.0.0.1", port, proc)
        yield ("127.0.0.1", port)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def slow_http() -> Iterator[Server]:
    """``GET /item/<n>?delay=<s>`` waits, then answers ``{"item": n, ...}`` (slow_http.py)."""
    server = start_script("slow_http.py")
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture(scope="session")
def slow_smtp() -> Iterator[Server]:
    """aiosmtpd that waits 0.2 s after DATA, then answers ``250 OK <subject> for <rcpt>``."""
    require_module("aiosmtpd")
    server = start_script("slow_smtp.py", str(SERVER_DELAY))
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture(scope="session")
def slow_s3() -> Iterator[Server]:
    """moto's S3 in a threaded werkzeug server that waits 0.2 s before each GET."""
    require_module("moto.moto_server.werkzeug_app")
    require_module("boto3")
    server = start_script("slow_s3.py", str(SERVER_DELAY))
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture
def concurrently() -> Callable[..., Outcome]:
    """`run_concurrently`: ``concurrently(work, setup=..., background=...) -> Outcome``."""
    return run_concurrently
