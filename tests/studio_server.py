"""A real studio server for the UI and access tests: uvicorn in a thread, on a free port, with
helpers that sign in through ``/login`` as a browser would (no Gradio event carries a password)."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import httpx

from polyp_core.demo import DEMO_STUDY
from review_db import queries

if TYPE_CHECKING:
    from gradio_client import Client

    from polyp_core.workspace import Workspace
    from review_db.database import Database

COOKIE = "polyp_session"
# How long a browser test waits for the page to show something: an event with a deadline, not
# a speed bound (a 2-core machine running the suite beside other work can take tens of seconds)
PAGE_WAIT_MS = 180_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``create_server(workspace, db)`` served by uvicorn until :meth:`stop`."""

    def __init__(self, workspace: Workspace, db: Database) -> None:
        import uvicorn

        import app

        self.asgi = app.create_server(workspace, db)
        self.access = self.asgi.access
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(self.asgi, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert time.time() < deadline, "the studio server did not start in 60 s"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def sign_in(url: str, name: str, password: str) -> httpx.Client:
    """An HTTP client holding a session cookie, signed in through the login form."""
    client = httpx.Client(base_url=url, timeout=60)
    response = client.post("/login", data={"name": name, "password": password})
    assert response.status_code == 303, (response.status_code, response.text[:300])
    assert COOKIE in client.cookies
    return client


def gradio_client(url: str, session: httpx.Client, **kwargs: object) -> Client:
    """A gradio_client ``Client`` acting for ``session``. The API's schema (``/gradio_api/info``)
    is an admin's: a reviewer's client is given the schema an admin session fetched, and then
    talks to the studio with the reviewer's cookie alone, as an attacker who knows the schema
    would."""
    from gradio_client import Client

    from polyp_core.demo import DEMO_ADMIN

    class SchemaKnown(Client):
        def _get_api_info(self) -> dict:
            response = session.get("gradio_api/info")
            if response.status_code == 403:
                admin = sign_in(url, *DEMO_ADMIN)
                response = admin.get("gradio_api/info")
            response.raise_for_status()
            return response.json()

    return SchemaKnown(url, headers={"Cookie": f"{COOKIE}={session.cookies[COOKIE]}"},
                       verbose=False, **kwargs)


def ratings_of(db: Database, name: str) -> int:
    with db.session() as session:
        reviewer = queries.reviewer_by_name(session, name)
        study = queries.study_by_name(session, DEMO_STUDY)
        return queries.study_progress(session, study.id, reviewer.id)[1]


# the browser (Debian chromium + Playwright) ---------------------------------------------------

def offline_page(browser, url: str):
    """A page that may talk to the studio only; every other request is refused and recorded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(PAGE_WAIT_MS)
    outside = []

    def route(r):
        if r.request.url.startswith(url.rstrip("/")) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    failed = []  # page resources that did not load (the queue's event streams end by design)
    page.on("requestfailed", lambda req: failed.append(req.url)
            if req.resource_type in ("stylesheet", "script", "font", "image") else None)
    return page, outside, failed


def sign_in_page(page, url: str, name: str, password: str) -> None:
    page.goto(url)  # no session: the studio sends the browser to its sign-in form
    assert page.url.endswith("/login")
    page.locator("#name").fill(name)
    page.locator("#password").fill(password)
    page.locator("#sign-in-button").click()
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=PAGE_WAIT_MS)


def start_review(page, study: str) -> None:
    """Open the Review tab and press *Start / resume* once the page has chosen ``study`` (the
    list of the reviewer's studies fills after the tab loads: pressed before, there is no
    study to open, which a loaded machine made happen)."""
    import time

    page.get_by_role("tab", name="Review").click()
    box = page.get_by_label("Study", exact=True).locator("visible=true").first
    deadline = time.monotonic() + PAGE_WAIT_MS / 1000
    while study not in (box.input_value() or ""):
        assert time.monotonic() < deadline, \
            f"the Review tab did not choose {study!r}; it shows {box.input_value()!r}"
        time.sleep(0.25)
    page.get_by_role("button", name="Start / resume").click()
