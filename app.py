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

import gradio as gr  # noqa: E402

from polyp_core.demo import DEMO_ADMIN, DEMO_REVIEWERS, ensure_demo_workspace  # noqa: E402
from polyp_core.errors import StudioError  # noqa: E402
from polyp_core.review.accounts import sign_in  # noqa: E402
from polyp_core.workspace import Workspace  # noqa: E402
from review_db.database import Database, database_url  # noqa: E402
from studio_ui import Studio  # noqa: E402
from studio_ui.data_tab import DataBrowser, build_data_tab  # noqa: E402, F401  (DataBrowser: tests)
from studio_ui.diagnostics_tab import build_diagnostics_tab  # noqa: E402
from studio_ui.generate_tab import build_generate_tab  # noqa: E402
from studio_ui.retrain_tab import build_retrain_tab  # noqa: E402
from studio_ui.review_tab import KEYBOARD_JS, build_review_tab  # noqa: E402
from studio_ui.studies_tab import build_studies_tab  # noqa: E402
from studio_ui.train_tab import build_train_tab  # noqa: E402

# System fonts only: the page must load fully with no network.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])
HEAD = KEYBOARD_JS
ADMIN_TABS = ("Data", "Generate", "Train generator", "Diagnostics", "Studies", "Retrain & compare")


def build_app(workspace: Workspace, db: Database | None = None) -> gr.Blocks:
    studio = Studio.open(workspace, db or Database(database_url(workspace.root)))
    with gr.Blocks(title="Polyp Studio") as demo:
        person = gr.State(None)
        with gr.Row():
            gr.Markdown("# Polyp Studio")
            who = gr.Markdown("Not signed in", elem_id="who")
            sign_out = gr.Button("Sign out", visible=False, size="sm", scale=0)
        with gr.Column(visible=True, elem_id="sign-in") as sign_in_box:
            name = gr.Textbox(label="Name", elem_id="sign-in-name")
            password = gr.Textbox(label="Password", type="password", elem_id="sign-in-password")
            go = gr.Button("Sign in", variant="primary", elem_id="sign-in-button")
            message = gr.Markdown()
        tabs, refreshers = {}, []
        with gr.Tabs():
            with gr.Tab("Data", visible=False, id="data") as tabs["Data"]:
                build_data_tab(workspace, person, demo)
            with gr.Tab("Generate", visible=False, id="generate") as tabs["Generate"]:
                refreshers.append(build_generate_tab(studio, person))
            with gr.Tab("Train generator", visible=False, id="train") as tabs["Train generator"]:
                refreshers.append(build_train_tab(studio, person))
            with gr.Tab("Diagnostics", visible=False, id="diagnostics") as tabs["Diagnostics"]:
                refreshers.append(build_diagnostics_tab(studio, person))
            with gr.Tab("Review", visible=False, id="review") as tabs["Review"]:
                review = build_review_tab(studio, person)
            with gr.Tab("Studies", visible=False, id="studies") as tabs["Studies"]:
                refreshers.append(build_studies_tab(studio, person))
            with gr.Tab("Retrain & compare", visible=False, id="retrain") as tabs["Retrain & compare"]:
                refreshers.append(build_retrain_tab(studio, person))

        order = list(tabs)

        def enter(user: str, secret: str):
            try:
                someone = sign_in(studio.db, (user or "").strip(), secret or "")
            except StudioError as exc:
                return (None, gr.update(), f"**{exc}**", gr.update(), gr.update(),
                        *[gr.update() for _ in order])
            visible = [t == "Review" or someone.is_admin for t in order]
            return (someone, gr.update(visible=False), "", f"Signed in as **{someone.name}** ({someone.role})",
                    gr.update(visible=True), *[gr.update(visible=v) for v in visible])

        def leave():
            return (None, gr.update(visible=True), "", "Not signed in", gr.update(visible=False),
                    *[gr.update(visible=False) for _ in order])

        shell = [person, sign_in_box, message, who, sign_out, *tabs.values()]
        refresh_outputs = [o for r in refreshers for o in r["outputs"]]

        def refresh_all(someone):  # noqa: ANN001
            if someone is None or not someone.is_admin:
                return [gr.update() for _ in refresh_outputs]
            return [u for r in refreshers for u in r["refresh"](someone)]

        for trigger, api in ((go.click, "sign_in"), (password.submit, False)):
            trigger(enter, inputs=[name, password], outputs=shell, api_name=api).then(
                refresh_all, inputs=person, outputs=refresh_outputs).then(
                review["refresh"], inputs=person, outputs=review["study"])
        sign_out.click(leave, outputs=shell)
    return demo


def launch_kwargs() -> dict:
    return {"theme": THEME, "head": HEAD}


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
    build_app(workspace, db).queue(default_concurrency_limit=4).launch(
        server_name=args.host, server_port=args.port, **launch_kwargs())


if __name__ == "__main__":
    main()
