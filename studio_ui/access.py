"""Who may call what, decided on the server for every request and every event.

- Sign-in is an HTML form posted to ``/login`` (outside Gradio): the password is never an
  event input, never in a run history, never in browser storage. Success sets an HttpOnly,
  SameSite=Strict cookie holding a random token; the database keeps only its SHA-256
  (``polyp_core.review.accounts``), so sign-out, deactivation, role and password changes end a
  session at once, across restarts and workers.
- :class:`SessionGate` (ASGI middleware) refuses every request without a live session except
  the sign-in page itself: the page, its config, the event queue and the file route all need
  one. Uploads and the API's schema routes (``/gradio_api/info``, ``openapi.json``, MCP,
  monitoring) need an admin. A cached file is served only to a session it was sent to.
- :meth:`Access.on` is the only way the tabs wire events. It demands a role (``reviewer``: any
  signed-in account, ``admin``: admins), resolves the session from the request's cookie on
  every call, and refuses before the callback runs. :meth:`Access.check_declared` makes
  building the app fail when any event of the page was wired another way.
"""

from __future__ import annotations

import fcntl
import hashlib
import html
import inspect
import json
import os
import re
import secrets
import shutil
import threading
import time
import typing
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import gradio as gr
from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from polyp_core.review.accounts import (AuthPolicy, Person, end_session, open_session,
                                        record_refusal, resolve_session, sign_in)
from polyp_core.review.errors import AuthError, SignInLocked
from review_db.database import Database

ROLES = ("reviewer", "admin")  # anonymous clients reach only the sign-in page, never an event
COOKIE = "polyp_session"
PUBLIC_PATHS = ("/login", "/logout")
ADMIN_PATHS = ("/gradio_api/upload",  # uploading files into the studio's cache
               # the API's schema and monitoring: they name every event, an admin's too
               "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/mcp",
               "/monitoring")


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def client_address(scope_or_request) -> str | None:  # noqa: ANN001
    client = scope_or_request.get("client") if isinstance(scope_or_request, dict) \
        else getattr(scope_or_request, "client", None)
    return client[0] if client else None


class FileGrants:
    """Which files of the studio's UI cache were sent to which session.

    The middleware reads every JSON or event-stream body it sends to a session and grants that
    session the cache paths it finds; the file route then serves a path only to a session that
    holds an unexpired grant for it. Kept in memory: the cache folder is this process's own.
    """

    def __init__(self, root: Path, ttl_s: float = 3600.0):
        self.root = str(Path(root).resolve())
        self.ttl_s = ttl_s
        self._pattern = re.compile(re.escape(self.root) + r'/[^"\\\s<>]+')
        self._grants: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def record(self, key: str, text: str) -> None:
        found = self._pattern.findall(text)
        if not found:
            return
        expires = time.monotonic() + self.ttl_s
        with self._lock:
            grants = self._grants.setdefault(key, {})
            for path in found:
                grants[os.path.normpath(path)] = expires

    def allowed(self, key: str, path: str) -> bool:
        path = os.path.normpath(path)
        with self._lock:
            expires = self._grants.get(key, {}).get(path)
        return expires is not None and expires > time.monotonic()

    def forget(self, key: str) -> None:
        with self._lock:
            self._grants.pop(key, None)


def file_route_path(path: str) -> str | None:
    """The file a Gradio file route asks for, or None for other routes."""
    for marker in ("/file=", "/gradio_api/file/"):
        at = path.find(marker)
        if at >= 0:
            return unquote(path[at + len(marker):])
    return None


class Access:
    """Sessions, the event guard and file grants of one studio instance."""

    def __init__(self, db: Database, cache_dir: Path, policy: AuthPolicy | None = None):
        self.db = db
        self.policy = policy or AuthPolicy.from_env()
        self.grants = FileGrants(cache_dir)
        self.cache_dir = Path(cache_dir)
        self.blocks: gr.Blocks | None = None  # the page, once check_declared has passed

    # sessions ---------------------------------------------------------------------------------

    def resolve(self, cookies: dict) -> Person:
        """The person behind a request's session cookie. Raises ``AuthError``."""
        return resolve_session(self.db, (cookies or {}).get(COOKIE), self.policy)

    def person_or_none(self, cookies: dict) -> Person | None:
        return self.person_and_reason(cookies)[0]

    def person_and_reason(self, cookies: dict) -> tuple[Person | None, str]:
        try:
            return self.resolve(cookies), ""
        except AuthError as exc:
            return None, str(exc)

    def auth_dependency(self, request) -> str | None:  # noqa: ANN001
        """Gradio's own check on its routes (a second lock behind :class:`SessionGate`)."""
        person = self.person_or_none(request.cookies)
        return person.name if person else None

    # events -----------------------------------------------------------------------------------

    def on(self, trigger: Callable, fn: Callable, role: str, **kwargs):  # noqa: ANN201
        """Wire ``fn`` to ``trigger`` (``button.click``, ``dependency.then``, ``demo.load`` ...)
        for ``role``. ``fn`` receives the server-resolved :class:`Person` as its first argument
        when that parameter is named ``person``; the page never sends who it is."""
        return trigger(self.guard(fn, role), **kwargs)

    def guard(self, fn: Callable, role: str) -> Callable:
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of: {', '.join(ROLES)}")
        params = list(inspect.signature(fn).parameters.values())
        wants_person = bool(params) and params[0].name == "person"
        params = params[1:] if wants_person else params
        name = getattr(fn, "__name__", "event")

        def guarded(request, *args):  # noqa: ANN001, ANN202
            person = self.authorise(request, role, name)
            return fn(person, *args) if wants_person else fn(*args)

        positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
        guarded.__signature__ = inspect.Signature(
            [inspect.Parameter("request", positional, annotation=gr.Request),
             *(p.replace(kind=positional) for p in params
               if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))])
        # Gradio injects special arguments (gr.Request, gr.SelectData, gr.Progress) by the
        # resolved annotations of the function it calls: hand on the callback's own
        try:
            hints = typing.get_type_hints(fn)
        except (NameError, TypeError):
            hints = {}
        guarded.__annotations__ = {**{p.name: hints[p.name] for p in params if p.name in hints},
                                   "request": gr.Request}
        guarded.__name__ = name
        guarded.__qualname__ = getattr(fn, "__qualname__", name)
        guarded.__doc__ = fn.__doc__
        guarded.studio_role = role
        return guarded

    def authorise(self, request, role: str, event: str) -> Person:  # noqa: ANN001
        """The session's person if it may call an event declared for ``role``; else the event
        is refused (and the refusal audited) before its callback runs."""
        address = client_address(getattr(request, "request", None) or request)
        try:
            person = self.resolve(getattr(request, "cookies", None) or {})
        except AuthError as exc:
            self.record_refusal(None, address, event, str(exc))
            raise gr.Error(f"Sign in first: {exc}.") from None
        if role == "admin" and not person.is_admin:
            self.record_refusal(person.name, address, event, "needs an admin")
            raise gr.Error(f"{person.name} is a reviewer; this needs an admin.")
        return person

    def role_of(self, path: str, body: bytes) -> str | None:
        """The declared role of the event a POST to an event route starts (None: no such event).
        ``queue/join`` names it by ``fn_index``; ``run``/``call`` by API name."""
        fns = self.blocks.fns if self.blocks is not None else {}
        if path.startswith("/gradio_api/queue/join"):
            try:
                index = json.loads(body or b"{}").get("fn_index")
            except (ValueError, AttributeError):
                return None
            fn = fns.get(index) if isinstance(index, int) else None
        else:
            parts = [p for p in path.split("/") if p]
            name = parts[2] if len(parts) > 2 and parts[2] != "v2" else \
                (parts[3] if len(parts) > 3 else None)
            fn = next((f for f in fns.values() if f.api_name == name), None)
        return getattr(fn.fn, "studio_role", None) if fn is not None and fn.fn else None

    def record_refusal(self, who: str | None, address: str | None, target: str,
                       why: str) -> None:
        """An event refused at the gate or by its guard, in the audit log."""
        record_refusal(self.db, who, address, target, why)

    def check_declared(self, blocks: gr.Blocks) -> None:
        """Raise unless every event of the page was wired through :meth:`on`; then this is the
        page whose events :attr:`blocks` lists."""
        loose = [f"{getattr(f.fn, '__name__', f.fn)} (api_name {f.api_name!r})"
                 for f in blocks.fns.values()
                 if f.fn is not None and getattr(f.fn, "studio_role", None) not in ROLES]
        if loose:
            raise RuntimeError("events wired without a declared role (use Access.on): "
                               + "; ".join(loose))
        self.blocks = blocks

    # sign-in routes ---------------------------------------------------------------------------

    def add_routes(self, app) -> None:  # noqa: ANN001
        """``GET/POST /login`` and ``GET/POST /logout`` on the outer FastAPI app."""
        @app.get("/login", response_class=HTMLResponse)
        def login_page(request: Request):  # noqa: ANN202
            if self.person_or_none(request.cookies):
                return RedirectResponse("/", status_code=303)
            return HTMLResponse(login_html(""))

        @app.post("/login")
        def login(request: Request, name: str = Form(""), password: str = Form("")):  # noqa: ANN202, B008
            address = client_address(request)
            try:
                person = sign_in(self.db, name.strip(), password, address, self.policy)
            except SignInLocked as exc:
                return HTMLResponse(login_html(str(exc)), status_code=429,
                                    headers={"Retry-After": str(int(exc.seconds) + 1)})
            except AuthError as exc:
                return HTMLResponse(login_html(str(exc)), status_code=401)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, open_session(self.db, person, address), httponly=True,
                                samesite="strict", secure=_is_https(request), path="/")
            return response

        @app.api_route("/logout", methods=["GET", "POST"])
        def logout(request: Request):  # noqa: ANN202
            token = request.cookies.get(COOKIE)
            if token:
                end_session(self.db, token)
                self.grants.forget(_token_key(token))
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                                   secure=_is_https(request))
            return response


def _is_https(request) -> bool:  # noqa: ANN001
    # behind a TLS proxy, uvicorn's --proxy-headers (trusted proxies only) sets the scheme
    return request.url.scheme == "https"


def login_html(message: str) -> str:
    """The sign-in page: a plain form, no script, nothing loaded from elsewhere."""
    note = f'<p class="msg" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Polyp Studio · sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: ui-sans-serif, system-ui, sans-serif; background: #f6f7f9; margin: 0; }}
main {{ max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem;
       border-radius: 12px; box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
label {{ display: block; margin: 1rem 0 .3rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .55rem; font-size: 1rem; }}
button {{ margin-top: 1.4rem; width: 100%; padding: .6rem; font-size: 1rem; background: #f97316;
         color: #fff; border: 0; border-radius: 6px; cursor: pointer; }}
.msg {{ color: #b91c1c; font-weight: 600; }}
</style></head>
<body><main><h1>Polyp Studio</h1>{note}
<form method="post" action="/login" id="sign-in">
<label for="name">Name</label><input id="name" name="name" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="sign-in-button">Sign in</button>
</form></main></body></html>"""


class SessionGate:
    """ASGI middleware in front of the whole studio: deny by default.

    No live session: the sign-in page only (the page itself redirects there; every other
    route answers 401). A session: uploads need an admin; a cached file needs a grant; and
    every JSON or event-stream body sent to the session grants it the files it names.
    """

    def __init__(self, app, access: Access):  # noqa: ANN001
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):  # noqa: ANN001
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
        key = _token_key(cookies[COOKIE])
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

    def _granting(self, send, key: str):  # noqa: ANN001, ANN202
        grants = self.access.grants
        state = {"scan": False, "tail": ""}

        async def wrapped(message):  # noqa: ANN001, ANN202
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


async def _read_body(receive):  # noqa: ANN001, ANN202
    """The whole request body, and a ``receive`` that hands it on unchanged."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), False

    async def replay():  # noqa: ANN202
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _cookies(scope) -> dict[str, str]:  # noqa: ANN001
    from http.cookies import SimpleCookie

    raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001  (a malformed cookie header is no session)
        return {}
    return {k: m.value for k, m in jar.items()}


async def _in_thread(fn, *args):  # noqa: ANN001, ANN202
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)


async def _respond(send, status: int, body: bytes, headers: list) -> None:  # noqa: ANN001
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


# the UI's file cache -------------------------------------------------------------------------

_held_locks: list = []  # lock files held for the life of the process


def instance_cache(workspace_root: Path) -> Path:
    """A fresh cache folder for this studio process inside its workspace
    (``<workspace>/ui-cache/<random>``). Folders of studio processes that are gone (their lock
    is free) are removed, so nothing a previous run served stays on disk."""
    root = Path(workspace_root) / "ui-cache"
    root.mkdir(parents=True, exist_ok=True)
    for lock in root.glob("*.lock"):
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another studio on this workspace is running
            shutil.rmtree(root / lock.stem, ignore_errors=True)
            lock.unlink(missing_ok=True)
    instance = secrets.token_hex(6)
    handle = open(root / f"{instance}.lock", "a")  # noqa: SIM115  (held until exit)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held_locks.append(handle)
    folder = root / instance
    folder.mkdir(mode=0o700)
    return folder.resolve()
