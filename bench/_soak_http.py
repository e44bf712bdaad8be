"""A cheap HTTP/1.1 client for the soak's load: keep-alive connections to one server, requests
written by hand. httpx spends about 2 ms of CPU per request, and its pool slows further with
hundreds of requests waiting; on a small, shared machine the load generator would then be
what lags (its requests leaving late, their times counting its own queue), not the servers."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# uvicorn closes a keep-alive connection idle for 5 s; one idle half as long is not reused, so
# a request never races the server's close (which would read as no answer).
IDLE_REUSE_SECONDS = 2.5


class RawPool:
    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        target = httpx.URL(url)
        self._host, self._port = target.host, target.port or 80
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._timeout = timeout
        self._idle: list[tuple[float, Connection]] = []  # (idle since, connection)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(status, body); raises OSError, asyncio.IncompleteReadError or TimeoutError when
        the server did not answer (the connection is then dropped, never reused)."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"{self._headers}{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        connection = None
        while self._idle and connection is None:
            since, candidate = self._idle.pop()
            if time.monotonic() - since < IDLE_REUSE_SECONDS and not candidate[0].at_eof():
                connection = candidate
            else:
                candidate[1].close()
        if connection is None:
            connection = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port), self._timeout
            )
        try:
            status, answer, keep = await asyncio.wait_for(
                self._exchange(connection, head + body), self._timeout
            )
        except BaseException:
            connection[1].close()
            raise
        if keep:
            self._idle.append((time.monotonic(), connection))
        else:
            connection[1].close()
        return status, answer

    @staticmethod
    async def _exchange(connection: Connection, request: bytes) -> tuple[int, bytes, bool]:
        reader, writer = connection
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        if fields.get(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            answer = b"".join(p[:-2] for p in parts)
        else:
            answer = await reader.readexactly(int(fields.get(b"content-length", b"0")))
        return status, answer, fields.get(b"connection") != b"close"

    async def close(self) -> None:
        for _, (_, writer) in self._idle:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._idle.clear()
