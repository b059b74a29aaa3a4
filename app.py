"""Polyp Studio in the browser. Layout and wiring only: the engine is ``polyp_core``, the tab
builders are in ``studio_ui``.

Run ``python app.py`` (``--workspace``, ``--host``, ``--port``). The first start makes the
demo workspace: the phantom data set, the demo generator and its images, a demo admin
(``admin`` / ``polyp-demo-admin``), two reviewers and an open study.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: clinics are offline

import gradio as gr

from polyp_core.demo import (DEMO_ADMIN, DEMO_REVIEWERS, demo_analyses,
                             ensure_demo_workspace)
from polyp_core.review.accounts import Person
from polyp_core.workspace import Workspace
from review_db.database import Database, database_url
from studio_ui import Studio
from studio_ui.access import Access
from studio_ui.guard import SessionGuard
from studio_ui.ui_cache import instance_cache
from studio_ui.accounts_tab import build_accounts_tab
from studio_ui.data_tab import DataBrowser, build_data_tab  # noqa: F401  (DataBrowser: tests)
from studio_ui.diagnostics_tab import build_diagnostics_tab
from studio_ui.generate_tab import build_generate_tab
from studio_ui.pool_tab import build_pool_tab
from studio_ui.retrain_tab import build_retrain_tab
from studio_ui.review_tab import KEYBOARD_JS, build_review_tab
from studio_ui.studies_tab import build_studies_tab
from studio_ui.train_tab import build_train_tab

# System fonts only: the page must load fully with no network.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])
HEAD = KEYBOARD_JS
ADMIN_TABS = ("Data", "Generate", "Pool", "Train generator", "Diagnostics", "Studies",
              "Retrain & compare", "Accounts")


def build_app(workspace: Workspace, db: Database | None = None,
              access: Access | None = None) -> gr.Blocks:
    """The page. Every event is wired through ``access.on`` with the role allowed to call it;
    building fails if one is not. The page is only ever served behind :func:`create_server`."""
    db = db or Database(database_url(workspace.root))
    if access is None:
        cache = instance_cache(workspace.root)
        os.environ["GRADIO_TEMP_DIR"] = str(cache)  # Gradio's file cache: ours, not /tmp's
        access = Access(db, cache)
    studio = Studio.open(workspace, db)
    with gr.Blocks(title="Polyp Studio") as demo:
        with gr.Row():
            gr.Markdown("# Polyp Studio")
            who = gr.Markdown("", elem_id="who")
            gr.Button("Sign out", link="/logout", size="sm", scale=0, elem_id="sign-out")
        tabs, refreshers = {}, []
        with gr.Tabs():
            with gr.Tab("Data", visible=False, id="data") as tabs["Data"]:
                refreshers.append(build_data_tab(workspace, access))
            with gr.Tab("Generate", visible=False, id="generate") as tabs["Generate"]:
                refreshers.append(build_generate_tab(studio, access))
            with gr.Tab("Pool", visible=False, id="pool") as tabs["Pool"]:
                refreshers.append(build_pool_tab(studio, access))
            with gr.Tab("Train generator", visible=False, id="train") as tabs["Train generator"]:
                refreshers.append(build_train_tab(studio, access))
            with gr.Tab("Diagnostics", visible=False, id="diagnostics") as tabs["Diagnostics"]:
                refreshers.append(build_diagnostics_tab(studio, access))
            with gr.Tab("Review", visible=False, id="review") as tabs["Review"]:
                review = build_review_tab(studio, access)
            with gr.Tab("Studies", visible=False, id="studies") as tabs["Studies"]:
                refreshers.append(build_studies_tab(studio, access))
            with gr.Tab("Retrain & compare", visible=False, id="retrain") as tabs["Retrain & compare"]:
                refreshers.append(build_retrain_tab(studio, access))
            with gr.Tab("Accounts", visible=False, id="accounts") as tabs["Accounts"]:
                refreshers.append(build_accounts_tab(studio, access))

        order = list(tabs)
        refresh_outputs = [o for r in refreshers for o in r["outputs"]]

        def enter(person: Person) -> tuple:
            """Who is signed in (from the server's session) and the tabs of their role."""
            return (f"Signed in as **{person.name}** ({person.role})",
                    *[gr.update(visible=t == "Review" or person.is_admin) for t in order])

        def refresh_all(person: Person) -> list:
            """Fill the admin tabs' lists; a reviewer's page gets nothing of them."""
            if not person.is_admin:
                return [gr.update() for _ in refresh_outputs]
            return [u for r in refreshers for u in r["refresh"](person)]

        loaded = access.on(demo.load, enter, "reviewer", outputs=[who, *tabs.values()])
        filled = access.on(loaded.then, refresh_all, "reviewer", outputs=refresh_outputs)
        access.on(filled.then, review["refresh"], "reviewer", outputs=review["study"])
    access.check_declared(demo)
    demo.studio_access = access
    demo.studio = studio
    return demo


def create_server(workspace: Workspace, db: Database | None = None) -> SessionGuard:
    """The studio as one ASGI app: sign-in routes, the page mounted at ``/``, and the session
    gate in front of both. Serve it with uvicorn (``main``) or any ASGI server."""
    from fastapi import FastAPI

    db = db or Database(database_url(workspace.root))
    demo = build_app(workspace, db)
    access = demo.studio_access
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    access.add_routes(app)
    demo.queue(default_concurrency_limit=4)
    gr.mount_gradio_app(app, demo, path="/", auth_dependency=access.auth_dependency,
                        run_history=False, ssr_mode=False, show_error=True, **launch_kwargs())
    return SessionGuard(app, access)


def launch_kwargs() -> dict:
    # no "Use via API" link: the API's schema is an admin's (the session guard answers 403 to reviewers)
    return {"theme": THEME, "head": HEAD, "footer_links": ["gradio", "settings"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Polyp Studio")
    parser.add_argument("--workspace", default=os.environ.get("STUDIO_WORKSPACE", "workspace"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--no-demo", action="store_true", help="do not create the demo workspace")
    args = parser.parse_args(argv)
    workspace = Workspace(args.workspace)
    db = Database(database_url(workspace.root))
    if not args.no_demo:
        made = ensure_demo_workspace(workspace, db, progress=lambda d, t, m: (
            print(f"  {m}", flush=True) if d in (0, t) else None))
        if made:
            print(f"First start in {workspace.root}: made " + "; ".join(made))
        print(f"Demo admin: {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}; reviewers: "
              + ", ".join(f"{n} / {p}" for n, p in DEMO_REVIEWERS))
    import uvicorn

    print(f"Serving http://{args.host}:{args.port}/ (sign in at /login)", flush=True)
    # proxy_headers: behind a TLS reverse proxy on this machine (docs/SECURITY.md), the
    # client's address and https come from its X-Forwarded-* headers (trusted from 127.0.0.1)
    server = create_server(workspace, db)
    if not args.no_demo:  # the dashboards' first content, made as any user's jobs are
        for kind, config, work in demo_analyses(db, workspace):
            server.access.blocks.studio.jobs.submit(kind, config, work)
            print(f"  started the demo's {kind} job in the background (progress in its tab)",
                  flush=True)
    uvicorn.run(server, host=args.host, port=args.port,
                proxy_headers=True, forwarded_allow_ips="127.0.0.1", log_level="warning")


if __name__ == "__main__":
    main()
