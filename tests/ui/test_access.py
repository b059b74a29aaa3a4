"""Access control as an attacker on the network would try it: every event the page can send,
through the raw queue protocol, as a client that never signed in and as a reviewer; sessions
that end when they should; sign-in that leaks nothing by timing and slows guessing; files only
for the session they were sent to; no password anywhere in the browser."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from polyp_core.demo import DEMO_ADMIN, DEMO_REVIEWERS, DEMO_STUDY
from polyp_core.review import accounts, desk
from polyp_core.review.accounts import (AuthPolicy, end_session, open_session, resolve_session,
                                        set_active, set_role, sign_in)
from polyp_core.review.errors import AuthError, PermissionDenied, SignInLocked
from review_db import queries
from tests.conftest import PASSWORD
from tests.studio_server import (COOKIE, PAGE_WAIT_MS, gradio_client, offline_page, ratings_of,
                                 sign_in_page, start_review)
from tests.studio_server import sign_in as http_sign_in

if TYPE_CHECKING:
    from review_db.database import Database


@pytest.fixture
def hashes(monkeypatch):
    """Counts the password-hash computations (``accounts._scrypt``)."""
    calls = []
    real = accounts._scrypt

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(accounts, "_scrypt", counted)
    return calls


# the engine: sign-in, backoff, sessions ------------------------------------------------------

def test_unknown_name_and_wrong_password_run_the_same_work(review_env, hashes):
    for name in ("rev0", "nobody-by-this-name"):
        before = len(hashes)
        with pytest.raises(AuthError, match="^unknown name or wrong password$"):
            sign_in(review_env.db, name, "not the password")
        assert len(hashes) - before == 1, name
    set_active(review_env.db, "rev1", False)
    before = len(hashes)
    with pytest.raises(AuthError, match="^unknown name or wrong password$"):
        sign_in(review_env.db, "rev1", PASSWORD)  # a deactivated account: the same answer
    assert len(hashes) - before == 1


def test_sixth_rapid_failure_is_refused_without_hashing(review_env, hashes):
    db = review_env.db
    for _ in range(5):
        with pytest.raises(AuthError) as caught:
            sign_in(db, "rev0", "wrong guess", "10.9.9.9")
        assert not isinstance(caught.value, SignInLocked)
    assert len(hashes) == 5
    with pytest.raises(SignInLocked, match="try again in") as caught:
        sign_in(db, "rev0", PASSWORD, "10.9.9.8")  # even the right password, from elsewhere
    assert len(hashes) == 5 and 0 < caught.value.seconds <= AuthPolicy().lockout_s
    # an unknown name locks the same way, so a lockout does not tell which names exist
    for _ in range(5):
        with pytest.raises(AuthError):
            sign_in(db, "ghost", "guess", "10.9.9.7")
    with pytest.raises(SignInLocked):
        sign_in(db, "ghost", "guess", "10.9.9.7")
    with db.session() as session:
        kinds = [e.kind for e in queries.audit_events(session, actor="rev0")]
    assert kinds.count("sign_in_failed") == 5 and kinds.count("sign_in_locked") == 1


def test_lockout_is_short_and_doubles_and_success_resets_it(review_env, clock):
    db = review_env.db
    policy = AuthPolicy(max_failures=2, lockout_s=30, max_lockout_s=90)
    for _ in range(2):
        with pytest.raises(AuthError):
            sign_in(db, "rev0", "wrong", policy=policy)
    with pytest.raises(SignInLocked) as caught:
        sign_in(db, "rev0", PASSWORD, policy=policy)
    assert caught.value.seconds == 30
    clock.advance(29)
    with pytest.raises(SignInLocked) as caught:  # still locked one second before the end
        sign_in(db, "rev0", PASSWORD, policy=policy)
    assert caught.value.seconds == 1
    clock.advance(1.5)  # the first lock (30 s) is over
    with pytest.raises(AuthError) as caught:
        sign_in(db, "rev0", "wrong", policy=policy)  # third failure: 60 s now
    assert not isinstance(caught.value, SignInLocked)
    with pytest.raises(SignInLocked) as caught:
        sign_in(db, "rev0", PASSWORD, policy=policy)
    assert caught.value.seconds == 60
    clock.advance(60.5)
    assert sign_in(db, "rev0", PASSWORD, policy=policy).name == "rev0"
    with pytest.raises(AuthError) as caught:  # the success reset the count
        sign_in(db, "rev0", "wrong", policy=policy)
    assert not isinstance(caught.value, SignInLocked)


def test_one_address_guessing_many_names_is_slowed(review_env, hashes):
    policy = AuthPolicy(address_max_failures=4)
    for i in range(4):
        with pytest.raises(AuthError):
            sign_in(review_env.db, f"name{i}", "guess", "10.1.1.1", policy)
    with pytest.raises(SignInLocked):
        sign_in(review_env.db, "rev0", PASSWORD, "10.1.1.1", policy)
    assert len(hashes) == 4
    # another address signs in as usual
    assert sign_in(review_env.db, "rev0", PASSWORD, "10.1.1.2", policy).name == "rev0"


def test_sessions_end_on_sign_out_account_changes_and_idle(review_env, clock):
    db = review_env.db
    person = sign_in(db, "rev0", PASSWORD)
    token = open_session(db, person, "10.0.0.1")
    assert resolve_session(db, token) == person
    with db.session() as session:  # only the token's hash is stored
        assert queries.auth_session_by_hash(session, token) is None
        assert queries.auth_session_by_hash(session, hashlib.sha256(token.encode()).hexdigest())
    end_session(db, token)
    with pytest.raises(AuthError, match="sign in again"):
        resolve_session(db, token)
    for change in (lambda: set_active(db, "rev0", False), lambda: set_role(db, "rev0", "admin"),
                   lambda: accounts.change_password(db, "rev0", "a new long password")):
        token = open_session(db, person)
        assert change() == 1  # one session ended
        with pytest.raises(AuthError):
            resolve_session(db, token)
        set_active(db, "rev0", True)
    token = open_session(db, person)
    clock.advance(1799)
    assert resolve_session(db, token).name == "rev0"  # used within the idle timeout (1,800 s)
    clock.advance(1801)
    with pytest.raises(AuthError, match="idle timeout"):
        resolve_session(db, token)
    with pytest.raises(AuthError):  # deleted, not merely refused once
        resolve_session(db, token)
    token = open_session(db, person)
    lenient = AuthPolicy(idle_timeout_s=5 * 3600)  # used every 4 h: never idle for long
    for _ in range(3):  # kept in use, it still ends at its maximum age (12 h)
        clock.advance(4 * 3600 - 60)
        assert resolve_session(db, token, lenient).name == "rev0"
    clock.advance(181)
    with pytest.raises(AuthError, match="maximum age"):
        resolve_session(db, token, lenient)
    with pytest.raises(AuthError, match="not signed in"):
        resolve_session(db, None)


def test_a_stale_person_cannot_rate_after_deactivation(review_env):
    """The engine checks the account again: a Person kept by a page is not enough."""
    from polyp_core.review.studies import StudySpec, SyntheticPool, create_study

    db = review_env.db
    create_study(db, review_env.workspace, review_env.admin,
                 StudySpec("s", (SyntheticPool(4),), ("rev0",), 1))
    person = review_env.reviewers[0]
    token = desk.queue(db, person, "s")[0].token
    set_active(db, "rev0", False, by="admin")
    with pytest.raises(PermissionDenied, match="deactivated"):
        desk.rate(db, person, token, "real", "good")
    with pytest.raises(PermissionDenied, match="deactivated"):
        desk.image_for(db, review_env.workspace, person, token)
    with db.session() as session:
        assert queries.count_ratings(session) == 0
        kinds = [e.kind for e in queries.audit_events(session)]
    assert {"study_created", "account_deactivated"} <= set(kinds)
    set_role(db, "admin", "reviewer")
    with pytest.raises(PermissionDenied, match="needs an admin"):
        from polyp_core.workflows import accounts as accounts_workflow

        accounts_workflow.audit(db, review_env.admin)  # a demoted admin's Person is stale too


def test_policy_from_environment_is_checked():
    assert AuthPolicy.from_env({"STUDIO_IDLE_TIMEOUT_S": "60"}).idle_timeout_s == 60
    with pytest.raises(ValueError, match="STUDIO_MAX_FAILURES='many' is not a number"):
        AuthPolicy.from_env({"STUDIO_MAX_FAILURES": "many"})
    with pytest.raises(ValueError, match="idle_timeout_s must be a positive finite number"):
        AuthPolicy(idle_timeout_s=float("nan"))


# the page: every event has a declared role ---------------------------------------------------

def test_an_event_wired_without_a_role_stops_the_app_from_building(tmp_path):
    import gradio as gr

    from studio_ui.access import Access

    with gr.Blocks() as demo:
        button, text = gr.Button(), gr.Markdown()
        button.click(lambda: "hello", outputs=text)
    with pytest.raises(RuntimeError, match="without a declared role"):
        Access(None, tmp_path).check_declared(demo)
    with pytest.raises(ValueError, match="is not one of: reviewer, admin"):
        Access(None, tmp_path).guard(lambda: 1, "anonymous")


def test_ui_cache_is_per_instance_inside_the_workspace(tmp_path):
    from studio_ui.ui_cache import instance_cache

    first = instance_cache(tmp_path)
    (first / "x.jpeg").write_bytes(b"x")
    stale = tmp_path / "ui-cache" / "deadbeef"
    stale.mkdir()
    (tmp_path / "ui-cache" / "deadbeef.lock").touch()  # a process that is gone
    second = instance_cache(tmp_path)
    assert first.parent == second.parent == (tmp_path / "ui-cache").resolve()
    assert not stale.exists() and (first / "x.jpeg").is_file()  # the live one is kept
    assert oct(second.stat().st_mode & 0o777) == "0o700"


# the live server, through the raw protocol ---------------------------------------------------

def _default_inputs(config: dict, dependency: dict) -> list:
    """The values the page itself would send: each input component's value in the config."""
    components = {c["id"]: c for c in config["components"]}
    values = []
    for component_id in dependency["inputs"]:
        props = components[component_id].get("props", {})
        values.append(props.get("value"))
    return values


def _call(client: httpx.Client, fn_index: int, data: list, trigger_id=None) -> tuple[int, list]:
    """One event through the queue protocol, as the page sends it: join, then read the stream
    until this event completes. Returns the join's HTTP status and the messages received."""
    session_hash = uuid.uuid4().hex[:11]
    joined = client.post("/gradio_api/queue/join", json={
        "data": data, "fn_index": fn_index, "session_hash": session_hash,
        "event_data": None, "trigger_id": trigger_id})
    if joined.status_code != 200:
        return joined.status_code, [joined.text]
    event_id = joined.json()["event_id"]
    messages = []
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash},
                       timeout=120) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            messages.append(message)
            if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                break
    return 200, messages


def _snapshot(workspace, db) -> tuple[dict, dict]:
    """Every workspace file (size, mtime) but the UI cache, and every table but the
    sign-in sessions and the audit log (which record the attempts themselves)."""
    from sqlalchemy import inspect, text

    files = {str(p.relative_to(workspace.root)): (p.stat().st_size, p.stat().st_mtime_ns)
             for p in workspace.root.rglob("*") if p.is_file()
             and "ui-cache" not in p.relative_to(workspace.root).parts}
    tables = {}
    with db.engine.connect() as connection:
        for table in inspect(db.engine).get_table_names():
            if table not in ("auth_session", "audit_event"):
                rows = connection.execute(text(f"SELECT * FROM {table}")).all()
                tables[table] = sorted(map(repr, rows))
    return files, tables


# The events a reviewer may call, by API name, written here rather than read from the tags
# ``Access.on`` gave them: an admin event tagged "reviewer" by mistake fails this test.
REVIEWER_EVENTS = frozenset({
    "enter", "refresh_all", "studies",  # who is signed in, the tabs, their own studies
    "open_study", "choose_1", "choose_2", "choose_3", "choose_4", "choose_5",
    "choose_histology", "histology_ad", "histology_ssa", "histology_hp", "histology_unsure",
    "rate_good", "rate_moderate", "rate_poor",
    "rate_mask_good", "rate_mask_moderate", "rate_mask_poor"})  # mask studies' third answer
#: a reviewer who has opened no study: the answer events are refused for that reason alone
PROBE = "reviewer-probe"
REVIEWER_DEFAULT_FAILURES: dict[str, str] = {
    name: "No image to rate: choose a study." for name in (
        "choose_1", "choose_2", "choose_3", "choose_4", "choose_5", "rate_good", "rate_moderate",
        "rate_poor", "rate_mask_good", "rate_mask_moderate", "rate_mask_poor")}
EVENT_ROUTES = ("call", "run", "api")  # /gradio_api/<route>/<api_name>, besides queue/join
SCHEMA_ROUTES = ("/gradio_api/info", "/gradio_api/openapi.json", "/monitoring",
                 "/monitoring/summary")


def _completed(messages: list) -> dict:
    return next(m for m in messages if m.get("msg") == "process_completed")


def test_every_event_refuses_who_may_not_call_it(live_app):
    """Read every event from the app's own config and call each through the raw queue protocol
    and by name through every event route, as a client that never signed in and as a signed-in
    reviewer. Only the events in REVIEWER_EVENTS may run for a reviewer, and what they send
    back carries nothing of the admin tabs."""
    url, db, workspace = live_app["url"], live_app["db"], live_app["workspace"]
    admin = http_sign_in(url, *DEMO_ADMIN)
    config = admin.get("/config").json()
    assert config["run_history"] is False
    dependencies = config["dependencies"]
    names = {d["id"]: d.get("api_name") for d in dependencies}
    assert len(dependencies) > 40 and all(names.values())  # every event has a name to call
    assert REVIEWER_EVENTS <= set(names.values())
    # a reviewer of its own, who has opened no study: what the reviewer events answer to the
    # page's defaults does not then depend on what other tests did on this server before
    accounts.create_account(db, PROBE, PASSWORD)
    before = _snapshot(workspace, db)

    anonymous = httpx.Client(base_url=url, timeout=60)
    reviewer = http_sign_in(url, PROBE, PASSWORD)
    for path in ("/", "/config", "/gradio_api/runs", "/gradio_api/upload",
                 "/gradio_api/heartbeat/x", "/gradio_api/startup-events", *SCHEMA_ROUTES):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code in (303, 401), (path, response.status_code)
        assert response.status_code == 401 or response.headers["location"] == "/login"
    for path in SCHEMA_ROUTES:  # the API's schema names every admin event: admins only
        assert reviewer.get(path).status_code == 403, path
    assert admin.get("/gradio_api/info").status_code == 200
    refused, failed = 0, {}
    for dependency in dependencies:
        fn, name = dependency["id"], dependency["api_name"]
        data = _default_inputs(config, dependency)
        trigger = (dependency["targets"] or [[None]])[0][0]
        status, messages = _call(anonymous, fn, data, trigger)
        assert status == 401 and "not signed in" in messages[0], (fn, status, messages)
        for route in EVENT_ROUTES:
            response = anonymous.post(f"/gradio_api/{route}/{name}", json={"data": data})
            assert response.status_code == 401, (route, name, response.status_code)
        status, messages = _call(reviewer, fn, data, trigger)
        if name not in REVIEWER_EVENTS:  # refused before Gradio queues or preprocesses it
            refused += 1
            assert status == 403, (fn, name, status, messages)
            assert json.loads(messages[0]) == {"error": f"{PROBE}: this needs an admin"}
            for route in EVENT_ROUTES:
                response = reviewer.post(f"/gradio_api/{route}/{name}", json={"data": data})
                assert response.status_code == 403 and "needs an admin" in response.text, \
                    (route, name, response.status_code)
            continue
        assert status == 200, (name, messages)
        done = _completed(messages)  # the page's defaults may be refused (no study chosen yet)
        if not done["success"]:
            failed[name] = done["output"].get("error")
        output = done["output"].get("data", [])
        if name in ("refresh_all", "enter"):
            assert done["success"], done
        if name == "refresh_all":  # the admin tabs' lists: a reviewer gets empty updates
            assert output and all(u in ({"__type__": "update"}, None) for u in output), output
        if name == "enter":  # who they are, and only the Review tab shown
            assert PROBE in output[0] and "(reviewer)" in output[0]
            assert [u["visible"] for u in output[1:]].count(True) == 1
    assert refused == len(dependencies) - len(REVIEWER_EVENTS)
    # a reviewer event run with the page's defaults fails only for the reason it should (no
    # study or image chosen yet), never for another error
    assert failed == REVIEWER_DEFAULT_FAILURES, failed
    # made-up events: an index and a name that do not exist
    for client, expected in ((anonymous, 401), (reviewer, 403)):
        status, _ = _call(client, 10_000, [], None)
        assert status == expected
        for route in EVENT_ROUTES:
            assert client.post(f"/gradio_api/{route}/no_such_event",
                               json={"data": []}).status_code == expected
    assert _snapshot(workspace, db) == before
    with db.session() as session:  # every refusal is in the audit log
        refusals = queries.audit_events(session, kinds=("event_refused",), limit=None)
    assert sum(e.actor == PROBE for e in refusals) >= refused


def test_no_api_link_on_the_page(live_app):
    """The footer offers no "Use via API" link to anyone: the page config lists no API link."""
    config = http_sign_in(live_app["url"], *DEMO_ADMIN).get("/config").json()
    assert "api" not in config["footer_links"]


def test_session_cookie_sign_out_and_run_history(live_app):
    url = live_app["url"]
    response = httpx.post(url + "login", data=dict(zip(("name", "password"), DEMO_REVIEWERS[1])))
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    token = response.cookies[COOKIE]
    client = httpx.Client(base_url=url, cookies={COOKIE: token})
    assert client.get("/config").status_code == 200
    assert client.get("/gradio_api/runs").status_code == 404  # run history is off
    assert client.post("/logout").status_code == 303
    replay = httpx.Client(base_url=url, cookies={COOKIE: token})  # the old cookie, kept
    assert replay.get("/config").status_code == 401


def test_deactivated_reviewer_cannot_rate_from_an_open_page(live_app):
    url, db = live_app["url"], live_app["db"]
    name, password = DEMO_REVIEWERS[1]
    client = gradio_client(url, http_sign_in(url, name, password))
    client.predict(DEMO_STUDY, api_name="/open_study")
    client.predict(api_name="/choose_1")
    before = ratings_of(db, name)
    set_active(db, name, False, by="test")
    try:
        with pytest.raises(Exception, match="401 Unauthorized"):
            client.predict(api_name="/rate_good")
        assert ratings_of(db, name) == before
        response = httpx.post(url + "gradio_api/queue/join", json={"fn_index": 0, "data": []},
                              headers=client.headers)
        assert response.status_code == 401 and "session has ended" in response.text
    finally:
        set_active(db, name, True, by="test")
    with pytest.raises(Exception, match="401 Unauthorized"):  # reactivating does not revive it
        client.predict(api_name="/rate_good")


def test_the_event_guard_decides_from_the_session(review_env, tmp_path):
    """Behind the session guard, each event checks the session again when it runs (a session can end
    between queueing and running), and hands the callback the server's Person."""
    import gradio as gr

    from studio_ui.access import Access

    access = Access(review_env.db, tmp_path)
    seen = []
    guarded = access.guard(lambda person, x: seen.append((person.name, x)) or x, "admin")
    def request(token):
        return type("R", (), {"cookies": {COOKIE: token}, "client": None})()
    admin_token = open_session(review_env.db, review_env.admin)
    reviewer_token = open_session(review_env.db, review_env.reviewers[0])
    assert guarded(request(admin_token), 7) == 7 and seen == [("admin", 7)]
    with pytest.raises(gr.Error, match="needs an admin"):
        guarded(request(reviewer_token), 8)
    set_active(review_env.db, "admin", False)
    with pytest.raises(gr.Error, match="Sign in first"):
        guarded(request(admin_token), 9)
    assert seen == [("admin", 7)]  # the callback never ran for a refused call


def test_files_only_for_the_session_they_were_sent_to(live_app):
    url = live_app["url"]
    one = http_sign_in(url, *DEMO_REVIEWERS[0])
    image = gradio_client(url, one, download_files=False).predict(
        DEMO_STUDY, api_name="/open_study")[0]
    path = image["path"]
    assert Path(path).is_relative_to(live_app["workspace"].root.resolve() / "ui-cache")
    file_url = f"/gradio_api/file={path}"
    assert one.get(file_url).status_code == 200
    assert httpx.get(url.rstrip("/") + file_url).status_code == 401  # no session
    other = http_sign_in(url, *DEMO_REVIEWERS[1])
    assert other.get(file_url).status_code == 403  # another session
    admin = http_sign_in(url, *DEMO_ADMIN)
    assert admin.get(file_url).status_code == 403  # an admin's session too
    assert other.post("/gradio_api/upload", files={"files": ("a.zip", b"PK")}).status_code == 403


def test_browser_keeps_no_password(live_app, browser):
    """Sign in, work, sign out in Chromium: the password is in no storage the page can read
    and in no response the studio sent."""
    url = live_app["url"]
    name, password = DEMO_REVIEWERS[0]
    page, outside, _ = offline_page(browser, url)
    bodies = []

    def keep(response):
        try:
            bodies.append(response.body())
        except Exception:  # noqa: BLE001  (streams and redirects have no body to read)
            pass

    page.on("response", keep)
    sign_in_page(page, url, name, password)
    start_review(page, DEMO_STUDY)
    page.locator("#rv-image img").wait_for(timeout=PAGE_WAIT_MS)
    stored = page.evaluate("""async () => {
        const dump = s => JSON.stringify(Object.entries(s));
        const dbs = indexedDB.databases ? await indexedDB.databases() : [];
        const idb = [];
        for (const info of dbs) {
          const db = await new Promise((ok, fail) => {
            const r = indexedDB.open(info.name); r.onsuccess = () => ok(r.result);
            r.onerror = fail; });
          for (const store of db.objectStoreNames) {
            const all = await new Promise(ok => {
              const r = db.transaction(store).objectStore(store).getAll();
              r.onsuccess = () => ok(r.result); });
            idb.push(JSON.stringify(all));
          }
        }
        return [dump(localStorage), dump(sessionStorage), document.cookie, idb.join()];
    }""")
    assert all(password not in part for part in stored), stored
    assert COOKIE not in stored[2]  # HttpOnly: the session is not readable by script
    page.locator("#sign-out").click()
    page.wait_for_url("**/login", timeout=PAGE_WAIT_MS)
    stored_after = page.evaluate("() => [JSON.stringify(Object.entries(localStorage)), "
                                 "JSON.stringify(Object.entries(sessionStorage)), document.cookie]")
    assert all(password not in part for part in stored_after)
    assert bodies and not any(password.encode() in body for body in bodies)
    assert outside == []
    page.goto(url)  # signed out on the server: back to the form
    assert page.url.endswith("/login")


def test_job_poll_timers_tick_only_while_a_job_runs(db):
    """An idle page sends no timer ticks (a reviewer's page used to send admin ones every
    second): the poll switches its timer off once the job has ended, and on for a live job."""
    from polyp_core.jobs import _create, _finish
    from polyp_core.workflows import TERMINAL
    from studio_ui.services import poll_run_job
    from studio_ui.services import watch_active as watch

    def watch_active(db: Database, kind: str) -> tuple:
        return watch(db, TERMINAL, kind)

    def runs():
        return []
    assert poll_run_job(db, TERMINAL, None, runs)[-1].active is False
    assert watch_active(db, "retrain")[0] is None and watch_active(db, "retrain")[2].active is False
    job = _create(db, "retrain", {}, None)
    line, _, kept, timer = poll_run_job(db, TERMINAL, job, runs)
    assert kept == job and timer.active is True and "queued" in line
    assert watch_active(db, "retrain")[0] == job and watch_active(db, "retrain")[2].active is True
    _finish(db, job, "failed", error="boom")
    assert poll_run_job(db, TERMINAL, job, runs)[2] is None
    assert poll_run_job(db, TERMINAL, job, runs)[-1].active is False
