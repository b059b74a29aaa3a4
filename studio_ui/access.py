"""Who may call what, decided on the server for every request and every event: sessions, the
event guard and the sign-in routes. Beside it: ``guard`` (the session guard in front of
everything), ``file_grants`` (which cached file went to which session), ``login_page`` (the
form) and ``ui_cache`` (the cache folder of a running studio).

- Sign-in is an HTML form posted to ``/login`` (outside Gradio): the password is never an
  event input, never in a run history, never in browser storage. Success sets an HttpOnly,
  SameSite=Strict cookie holding a random token; the database keeps only its SHA-256
  (``polyp_core.review.accounts``), so sign-out, deactivation, role and password changes end a
  session at once, across restarts and workers.
- :class:`SessionGuard` (ASGI middleware) refuses every request without a live session except
  the sign-in page itself: the page, its config, the event queue and the file route all need
  one. Uploads and the API's schema routes (``/gradio_api/info``, ``openapi.json``, MCP,
  monitoring) need an admin. A cached file is served only to a session it was sent to.
- :meth:`Access.on` is the only way the tabs wire events. It demands a role (``reviewer``: any
  signed-in account, ``admin``: admins), resolves the session from the request's cookie on
  every call, and refuses before the callback runs. :meth:`Access.check_declared` makes
  building the app fail when any event of the page was wired another way.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Scope

from polyp_core.review.accounts import (AuthPolicy, Person, end_session, open_session,
                                        record_refusal, resolve_session, sign_in)
from polyp_core.review.errors import AuthError, SignInLocked
from review_db.database import Database
from studio_ui.file_grants import FileGrants, session_key
from studio_ui.login_page import login_html

ROLES = ("reviewer", "admin")  # anonymous clients reach only the sign-in page, never an event
COOKIE = "polyp_session"


def client_address(scope_or_request: Scope | Request) -> str | None:
    client = scope_or_request.get("client") if isinstance(scope_or_request, dict) \
        else getattr(scope_or_request, "client", None)
    return client[0] if client else None


class Access:
    """Sessions, the event guard and file grants of one studio instance."""

    def __init__(self, db: Database, cache_dir: Path, policy: AuthPolicy | None = None) -> None:
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

    def auth_dependency(self, request: Request) -> str | None:
        """Gradio's own check on its routes (a second lock behind :class:`SessionGuard`)."""
        person = self.person_or_none(request.cookies)
        return person.name if person else None

    # events -----------------------------------------------------------------------------------

    def on(self, trigger: Callable, fn: Callable, role: str, **kwargs: object) -> object:
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

        def guarded(request: gr.Request, *args: object) -> object:
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
        except TypeError:  # not a plain function (a partial, a builtin): nothing to hand on
            hints = {}
        except NameError as exc:  # silently dropping them would lose gr.SelectData & co.
            raise RuntimeError(f"event {name}: its annotations cannot be resolved ({exc}); "
                               "import the names they use at run time") from None
        guarded.__annotations__ = {**{p.name: hints[p.name] for p in params if p.name in hints},
                                   "request": gr.Request}
        guarded.__name__ = name
        guarded.__qualname__ = getattr(fn, "__qualname__", name)
        guarded.__doc__ = fn.__doc__
        guarded.studio_role = role
        return guarded

    def authorise(self, request: gr.Request | Request, role: str, event: str) -> Person:
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
        """An event refused by the session guard or by its event guard, in the audit log."""
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

    def add_routes(self, app: FastAPI) -> None:
        """``GET/POST /login`` and ``GET/POST /logout`` on the outer FastAPI app."""
        @app.get("/login", response_class=HTMLResponse)
        def login_page(request: Request) -> Response:
            if self.person_or_none(request.cookies):
                return RedirectResponse("/", status_code=303)
            return HTMLResponse(login_html(""))

        @app.post("/login")
        def login(request: Request, name: str = Form(""),
                  password: str = Form("")) -> Response:  # noqa: B008
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
        def logout(request: Request) -> RedirectResponse:
            token = request.cookies.get(COOKIE)
            if token:
                end_session(self.db, token)
                self.grants.forget(session_key(token))
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                                   secure=_is_https(request))
            return response


def _is_https(request: Request) -> bool:
    # behind a TLS proxy, uvicorn's --proxy-headers (trusted proxies only) sets the scheme
    return request.url.scheme == "https"
