"""A small HTTP/1.1 load generator, run as its own process: ``python -m benchmarks.load``.

Each connection is kept alive and sends its next request as soon as the previous answer has
arrived (a closed loop). Either the same GET for a fixed time, or (``--requests-file``) a list of
prepared requests, each sent once, taken in order by whichever connection is free, until the list
is done: the challenge benchmark's sends and verifies, one per user. It is written on asyncio's
protocols, not on an HTTP client library, so that it needs far less CPU per request than the
server it loads: the figures are the server's, not the generator's. Only loopback addresses are
accepted. It prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path


class Connection(asyncio.Protocol):
    def __init__(
        self,
        requests: Iterator[bytes],
        deadline: float,
        latencies: list[float],
        statuses: dict[int, int],
        cookie_name: bytes | None = None,
        cookies: list[int] | None = None,
    ) -> None:
        self.requests = requests
        self.deadline = deadline
        self.latencies = latencies
        self.statuses = statuses
        self.cookie_name = cookie_name  # counted in the answers' Set-Cookie headers
        self.cookies = cookies if cookies is not None else [0]
        self.buffer = bytearray()
        self.started = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        request = next(self.requests, None)
        if request is None:  # a list of requests, all sent
            self.transport.close()
            return
        self.started = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            status_line, *lines = head.split("\r\n")
            length = None
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
                elif name.strip().lower() == "transfer-encoding":
                    self._fail(f"unsupported response framing: {line}")
                    return
                elif (
                    self.cookie_name is not None
                    and name.strip().lower() == "set-cookie"
                    and value.strip().encode("latin-1").startswith(self.cookie_name + b"=")
                ):
                    self.cookies[0] += 1
            if length is None:
                self._fail("response without Content-Length")
                return
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            now = time.perf_counter()
            self.latencies.append(now - self.started)
            status = int(status_line.split()[1])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if now >= self.deadline:
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def _fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(reason))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 (asyncio.Protocol's signature)
        if not self.done.done():
            self.done.set_result(None)


def repeat(request: bytes) -> Iterator[bytes]:
    while True:
        yield request


def prepared(host: str, port: int, path: Path) -> list[bytes]:
    """The requests of a file with one JSON object a line: ``method``, ``path``, ``headers`` (a
    list of [name, value]) and ``form`` (fields, sent url-encoded), each a complete request."""
    from urllib.parse import urlencode

    out = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        body = urlencode(item.get("form") or {}).encode()
        head = [f"{item['method']} {item['path']} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: bench"]
        head += [f"{name}: {value}" for name, value in item.get("headers", [])]
        if item.get("form") is not None:
            head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    return out


async def load(
    host: str,
    port: int,
    path: str,
    cookie: str,
    connections: int,
    seconds: float,
    requests_file: Path | None = None,
    count_cookie: str | None = None,
) -> dict[str, object]:
    if requests_file is not None:
        requests: Iterator[bytes] = iter(prepared(host, port, requests_file))
    else:
        requests = repeat(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/html\r\nUser-Agent: bench\r\n"
                + (f"Cookie: {cookie}\r\n" if cookie else "")
                + "\r\n"
            ).encode("latin-1")
        )
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    cookies = [0]
    name = count_cookie.encode("latin-1") if count_cookie else None
    start = time.perf_counter()
    deadline = start + seconds if requests_file is None else float("inf")
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    made = [
        await loop.create_connection(
            lambda: Connection(requests, deadline, latencies, statuses, name, cookies), host, port
        )
        for _ in range(connections)
    ]
    # Bounded: a server that stops answering cannot keep the generator alive.
    await asyncio.wait_for(asyncio.gather(*(protocol.done for _, protocol in made)), timeout=seconds + 30)
    elapsed = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * p / 100 + 0.999999) - 1))] * 1000

    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(50) if ordered else None,
        "p99_ms": pct(99) if ordered else None,
        "statuses": {str(k): v for k, v in statuses.items()},
        "generator_cpu": cpu / elapsed,
        "cookies": cookies[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--cookie", default="")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long; with a list, a time-out")
    parser.add_argument("--requests-file", type=Path, default=None, help="send these, each once")
    parser.add_argument("--count-cookie", default=None, help="count the answers that set this cookie")
    args = parser.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("the load generator only loads this machine (a loopback address)")
    if not 0 < args.seconds <= 120 or not 0 < args.connections <= 1000:
        parser.error("--seconds must be in (0, 120] and --connections in (0, 1000]")
    result = asyncio.run(
        load(
            args.host,
            args.port,
            args.path,
            args.cookie,
            args.connections,
            args.seconds,
            args.requests_file,
            args.count_cookie,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
