"""Real servers in other processes: ``uvicorn_server`` starts an app factory under uvicorn on a free
loopback port (the demo, the fail-closed shop, several workers), ``gunicorn_server`` a WSGI app
under gunicorn (sync or gthread workers); each stops it afterwards."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def uvicorn_server(
    factory: str,
    folder: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    args: tuple[str, ...] = (),
    cwd: Path | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """``uvicorn --factory FACTORY [ARGS]`` on a free loopback port, started, waited for (up to
    30 s), and stopped afterwards; yields its base URL. Its output goes to FOLDER/uvicorn.log.
    With ``cwd`` (an example project's folder), uvicorn starts there and FACTORY is an application
    (``module:application``), as the example's README runs it. ``port``: one chosen before (a
    setting must name it: a passkey's origin), else a free one."""
    port = port or free_port()
    log_path = folder / "uvicorn.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        *(() if cwd else ("--factory",)),
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if workers > 1:
        command += ["--workers", str(workers), "--log-level", "warning"]
    command += list(args)
    root = Path(__file__).resolve().parent.parent
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command,
            cwd=cwd or root,
            env={**env, "PYTHONPATH": str(root)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(server, url, log_path, "uvicorn")
            yield url
        finally:
            server.terminate()
            server.wait(timeout=20)


@contextmanager
def gunicorn_server(
    app: str,
    folder: Path,
    env: dict[str, str],
    *,
    workers: int = 2,
    worker_class: str = "sync",
    args: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> Iterator[str]:
    """``gunicorn APP`` (``module:factory()``) with ``workers`` workers of ``worker_class`` on a free
    loopback port, started, waited for (up to 30 s), and stopped afterwards; yields its base URL.
    Its output goes to FOLDER/gunicorn.log. With ``cwd`` (an example project's folder), gunicorn
    starts there and APP is an application (``module:app``), as the example's README runs it."""
    port = free_port()
    log_path = folder / "gunicorn.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--graceful-timeout",
        "5",
        *args,
        app,
    ]
    if worker_class == "gthread":
        command[-1:-1] = ["--threads", "4"]
    root = Path(__file__).resolve().parent.parent
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command,
            cwd=cwd or root,
            env={**env, "PYTHONPATH": str(root)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(server, url, log_path, "gunicorn")
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_for(server: subprocess.Popen[bytes], url: str, log_path: Path, name: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            pytest.fail(f"{name} exited: {log_path.read_text()}")
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not start in time: {log_path.read_text()}")
            time.sleep(0.1)
