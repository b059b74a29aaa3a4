"""The session guard: ASGI middleware in front of the whole studio, deny by default (see
:class:`SessionGuard`)."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio_ui.access import COOKIE, Access, client_address
from studio_ui.file_grants import file_route_path, session_key

PUBLIC_PATHS = ("/login", "/logout")
ADMIN_PATHS = ("/gradio_api/upload",  # uploading files into the studio's cache
               # the API's schema and monitoring: they name every event, an admin's too
               "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/mcp",
               "/monitoring")


class SessionGuard:
    """ASGI middleware in front of the whole studio: deny by default.

    No live session: the sign-in page only (the page itself redirects there; every other
    route answers 401). A session: uploads need an admin; a cached file needs a grant; and
    every JSON or event-stream body sent to the session grants it the files it names.
    """

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the studio uses none; refuse them all
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path.rstrip("/") in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        cookies = _cookies(scope)
        person, why = await _in_thread(self.access.person_and_reason, cookies)
        if person is None:
            if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and \
                    path.rstrip("/") == "":
                return await _respond(send, 303, b"", [(b"location", b"/login")])
            return await _respond(send, 401, json.dumps({"error": why}).encode(),
                                  [(b"content-type", b"application/json")])
        key = session_key(cookies[COOKIE])
        if any(path.startswith(p) for p in ADMIN_PATHS) and not person.is_admin:
            return await _respond(send, 403, b'{"error": "this needs an admin"}',
                                  [(b"content-type", b"application/json")])
        wanted = file_route_path(path)
        if wanted is not None and not self.access.grants.allowed(key, wanted):
            return await _respond(send, 403, b'{"error": "not a file of this session"}',
                                  [(b"content-type", b"application/json")])
        if scope["type"] == "http" and scope.get("method") == "POST" and _starts_event(path):
            # refuse an event before Gradio queues or preprocesses anything of it
            body, receive = await _read_body(receive)
            role = self.access.role_of(path, body)
            if role != "reviewer" and not (role == "admin" and person.is_admin):
                why = "this needs an admin" if role == "admin" else "no such event"
                await _in_thread(self.access.record_refusal, person.name, client_address(scope),
                                 path, why)
                message = json.dumps({"error": f"{person.name}: {why}"}).encode()
                return await _respond(send, 403, message,
                                      [(b"content-type", b"application/json")])
        return await self.app(scope, receive, self._granting(send, key))

    def _granting(self, send: Send, key: str) -> Send:
        grants = self.access.grants
        state = {"scan": False, "tail": ""}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                kind = headers.get(b"content-type", b"").decode("latin-1")
                state["scan"] = "json" in kind or "event-stream" in kind
            elif message["type"] == "http.response.body" and state["scan"]:
                text = state["tail"] + message.get("body", b"").decode("utf-8", "ignore")
                grants.record(key, text)
                state["tail"] = text[-1024:]  # a path cut between two chunks
            await send(message)

        return wrapped


EVENT_ROUTES = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/call/",
                "/gradio_api/api/")


def _starts_event(path: str) -> bool:
    return any(path.startswith(p) for p in EVENT_ROUTES)


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it on unchanged."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _cookies(scope: Scope) -> dict[str, str]:
    from http.cookies import SimpleCookie

    raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001  (a malformed cookie header is no session)
        return {}
    return {k: m.value for k, m in jar.items()}


async def _in_thread(fn: Callable, *args: object) -> object:
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)


async def _respond(send: Send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
