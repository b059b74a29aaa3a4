"""Polyp Studio in the browser. Layout and wiring only: the engine is ``polyp_core``.

Run ``python app.py`` (``--workspace``, ``--host``, ``--port``); the first start paints
and imports the phantom demo data set into the workspace.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: clinics are offline

import gradio as gr  # noqa: E402

from polyp_core.data.browse import ALL, browse_page, count_rows  # noqa: E402
from polyp_core.data.cache import PixelCache  # noqa: E402
from polyp_core.data.splits import SPLITS  # noqa: E402
from polyp_core.demo import DEMO_DATASET, ensure_demo_dataset  # noqa: E402
from polyp_core.workspace import Workspace  # noqa: E402

# System fonts only: the page must load fully with no network.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])


class DataBrowser:
    """Callbacks of the Data tab; holds the workspace, no per-user state."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.cache = PixelCache(workspace.pixel_cache_dir)

    def datasets(self) -> list[str]:
        return self.workspace.datasets()

    def overview(self, name: str | None, scheme: str | None):
        if not name:
            return (gr.update(value=None), gr.update(choices=[ALL], value=ALL),
                    "No data set yet.", gr.update(choices=[], value=None))
        manifest = self.workspace.load_manifest(name)
        scheme = scheme if scheme in manifest.schemes else manifest.scheme
        header, rows = count_rows(manifest, scheme)
        summary = (f"**{manifest.name}** · {len(manifest.items)} images · layout "
                   f"{manifest.layout} · split {manifest.split_method} · scheme {scheme} "
                   f"(available: {', '.join(manifest.schemes)})")
        classes = [ALL, *header[1:-1]]
        return (gr.update(value=rows, headers=header), gr.update(choices=classes, value=ALL),
                summary, gr.update(choices=manifest.schemes, value=scheme))

    def make_active(self, name: str | None, scheme: str | None) -> str:
        if not name or not scheme:
            return "Choose a data set and a scheme first."
        manifest = self.workspace.set_scheme(name, scheme)
        return f"**{manifest.name}**: active scheme is now {manifest.scheme}; later runs use it."

    def page(self, name: str | None, scheme: str | None, split: str, cls: str, page: int,
             show_masks: bool):
        if not name:
            return [], "", 0
        manifest = self.workspace.load_manifest(name)
        scheme = scheme if scheme in manifest.schemes else manifest.scheme
        result = browse_page(manifest, self.cache, split, cls, int(page or 0),
                             show_masks=show_masks, scheme=scheme)
        label = f"page {result.page + 1} of {result.pages} · {result.total} images"
        return result.tiles, label, result.page


def build_app(workspace: Workspace) -> gr.Blocks:
    browser = DataBrowser(workspace)
    names = browser.datasets()
    first = DEMO_DATASET if DEMO_DATASET in names else (names[0] if names else None)
    with gr.Blocks(title="Polyp Studio") as demo:
        gr.Markdown("# Polyp Studio")
        with gr.Tab("Data"):
            with gr.Row():
                dataset = gr.Dropdown(names, value=first, label="Data set")
                scheme = gr.Radio([], value=None, label="Label scheme (view)")
                activate = gr.Button("Make this scheme the data set's default", size="sm")
            summary = gr.Markdown()
            counts = gr.Dataframe(label="Images per split and class", interactive=False)
            with gr.Row():
                split = gr.Radio([ALL, *SPLITS], value=ALL, label="Split")
                cls = gr.Dropdown([ALL], value=ALL, label="Class")
                masks = gr.Checkbox(True, label="Outline masks")
            with gr.Row():
                prev_btn = gr.Button("◀ Previous")
                page_label = gr.Markdown()
                next_btn = gr.Button("Next ▶")
            page = gr.State(0)
            gallery = gr.Gallery(label="Images", columns=6, height="auto", format="jpeg")

            overview_io = dict(inputs=[dataset, scheme], outputs=[counts, cls, summary, scheme])
            page_io = dict(inputs=[dataset, scheme, split, cls, page, masks],
                           outputs=[gallery, page_label, page])
            # scheme.input, not .change: overview() itself sets the radio to the active scheme
            for trigger in (dataset.change, scheme.input, demo.load):
                trigger(browser.overview, **overview_io).then(lambda: 0, outputs=page).then(
                    browser.page, **page_io)
            activate.click(browser.make_active, inputs=[dataset, scheme], outputs=summary)
            for trigger in (split.change, cls.change, masks.change):
                trigger(lambda: 0, outputs=page).then(browser.page, **page_io)
            prev_btn.click(lambda p: max(0, p - 1), inputs=page, outputs=page).then(
                browser.page, **page_io)
            next_btn.click(lambda p: p + 1, inputs=page, outputs=page).then(
                browser.page, **page_io)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Polyp Studio")
    parser.add_argument("--workspace", default=os.environ.get("STUDIO_WORKSPACE", "workspace"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--no-demo", action="store_true", help="do not create the demo data set")
    args = parser.parse_args(argv)
    workspace = Workspace(args.workspace)
    if not args.no_demo and not workspace.datasets():
        print(f"First start: painting the phantom demo data set into {workspace.root} ...")
        result = ensure_demo_dataset(workspace, progress=lambda d, t, m: (
            print(f"  {m}", flush=True) if d in (0, t) else None))
        if result:
            print(f"  {result.n_images} frames ready")
    build_app(workspace).queue().launch(server_name=args.host, server_port=args.port,
                                        theme=THEME)


if __name__ == "__main__":
    main()
