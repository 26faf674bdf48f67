"""HTTP/1.1 clients for the load driver: a lean keep-alive one (default) and httpx.

httpx spends about 2 ms of CPU per request at 16 concurrent connections, more than the baseline
server itself (about 0.5 ms): on 2 cores it would measure the client, not the server. The lean
client writes each request in one send and reads Content-Length or chunked answers, about
0.1 ms per request. `BENCH_CLIENT=httpx` switches back to httpx for comparison.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httpx

from tests.auth_support import staff_headers

# Every request carries the test suite's programme-wide staff token (valid 6 h); the services
# the bench starts trust its signing key (bench/servers.py), the bare baseline ignores it.
HEADERS = {
    "Accept": "application/fhir+json",
    "Content-Type": "application/fhir+json",
    **staff_headers(),
}


class Connection(Protocol):
    async def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class LeanConnection:
    """One keep-alive connection; reconnects when the server has closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._fixed = "".join(
            f"{name}: {value}\r\n" for name, value in {"Host": f"{host}:{port}", **HEADERS}.items()
        ).encode()

    async def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = body or b""
        head = b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
            method.encode(),
            path.encode(),
            self._fixed,
            len(payload),
        )
        self.writer.write(head + payload)
        try:
            status, headers = await self._head()
            content = await self._body(headers, status, method)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return status, content

    async def _head(self) -> tuple[int, dict[bytes, bytes]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _body(self, headers: dict[bytes, bytes], status: int, method: str) -> bytes:
        assert self.reader is not None
        if method == "HEAD" or status in (204, 304):
            return b""
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk[:-2])
        return await self.reader.readexactly(int(headers.get(b"content-length", b"0")))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class HttpxConnection:
    """A worker's view of one shared httpx.AsyncClient."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        response = await self.client.request(method, path, content=body, headers=HEADERS)
        return response.status_code, response.content

    async def close(self) -> None:
        return None
