"""Pure ASGI middlewares in front of the app (they see the raw request, before FastAPI parses it).

* :class:`BodyLimit`: an upload-size cap enforced before the app reads the body;
* :class:`Admission`: at most a few POST requests read their bodies and decode at once, the rest
  wait before a byte of their body is read (then 503), so memory does not grow with clients;
* :class:`HeadAsGet`: HEAD answered wherever GET is, with the GET's headers and no body.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """A complete JSON error response ``{"detail": ...}``, sent directly (no app involved)."""
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Answer 413 to a request whose body is over ``max_bytes``.

    A Content-Length over the cap is refused before a byte of the body is read. A body without
    one (chunked) is counted as it streams; at the cap the 413 goes out at once and the app is
    told the client left, so it stops reading. FastAPI would otherwise turn a parse failure into
    a generic 400, or spool the whole upload to disk first.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else "the body went past the limit"
        detail = f"upload too large: {size}; the limit is {self.max_bytes} bytes"
        await send_json(send, 413, detail, [(b"connection", b"close")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await send_json(send, 400, "invalid Content-Length header")
                return
            if declared > self.max_bytes:
                await self._refuse(send, declared)
                return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await self._refuse(send, None)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 has been sent; whatever the app answers to the "disconnect" is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)


class Admission:
    """At most ``active`` POST requests in the app at once; others wait up to ``wait_s``, then 503.

    A waiting request has not had its body read: uvicorn stops reading a connection once 64 kB
    are buffered, so a crowd of clients costs next to nothing until admitted. An admitted request
    holds at most the upload cap in memory while its pictures wait for a decode slot.
    """

    def __init__(self, app: ASGIApp, active: int, wait_s: float) -> None:
        self.app = app
        self.active = active
        self.wait_s = wait_s
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        """One semaphore per event loop (a test client may run the app on several, one after another)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.active))
        return self._slots[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        slots = self._semaphore()
        try:
            async with asyncio.timeout(self.wait_s):
                await slots.acquire()
        except TimeoutError:
            await send_json(
                send,
                503,
                f"server busy: {self.active} requests in progress and more waiting for {self.wait_s:g} s; "
                "try again shortly",
                [(b"retry-after", b"5"), (b"connection", b"close")],
            )
            return
        try:
            await self.app(scope, receive, send)
        finally:
            slots.release()


class HeadAsGet:
    """HEAD runs the GET route and sends its status and headers (Content-Length included), no body.

    FastAPI routes declared with ``@app.get`` answer HEAD with 405; HTTP says a server should
    answer HEAD wherever it answers GET (monitors and link checkers use it).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(dict(scope, method="GET"), receive, headers_only)
