"""Data: import a data set (folder path or zip upload), counts per split, images with masks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from polyp_core.data.browse import ALL, browse_page, count_rows
from polyp_core.data.cache import PixelCache
from polyp_core.data.importer import ImportConfig
from polyp_core.data.splits import SPLITS
from polyp_core.demo import DEMO_DATASET
from polyp_core.errors import DatasetImportError, StudioError
from polyp_core.review.accounts import Person
from polyp_core.workflows import data
from polyp_core.workspace import Workspace
from review_db.database import Database
from studio_ui.access import Access
from studio_ui.services import shown_errors


class DataBrowser:
    """Callbacks of the Data tab; holds the workspace, no per-user state."""

    def __init__(self, workspace: Workspace, db: Database | None = None) -> None:
        self.workspace = workspace
        self.db = db
        self.cache = PixelCache(workspace.pixel_cache_dir)

    def datasets(self) -> list[str]:
        return self.workspace.datasets()

    @shown_errors
    def overview(self, name: str | None, scheme: str | None) -> tuple:
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

    @shown_errors
    def make_active(self, person: Person, name: str | None, scheme: str | None) -> str:
        if not name or not scheme:
            return "Choose a data set and a scheme first."
        manifest = data.set_scheme(self.db, self.workspace, person, name, scheme)
        return f"**{manifest.name}**: active scheme is now {manifest.scheme}; later runs use it."

    def import_source(self, person: Person, path: str, upload: str | None, name: str) -> tuple:
        """Import a folder on the server, or an uploaded zip unpacked into the workspace."""
        name = (name or "").strip() or None
        try:
            if upload is not None:
                if not name:
                    raise gr.Error("Give the uploaded data set a name.")
                # the engine checks, stages and moves it into place; never over a source
                result = data.import_data(self.db, self.workspace, person,
                                          ImportConfig(str(upload), name=name), archive=True)
            elif path and path.strip():
                source = Path(path.strip()).expanduser()
                result = data.import_data(self.db, self.workspace, person,
                                          ImportConfig(str(source), name=name), archive=False)
            else:
                raise gr.Error("Give a folder path or upload a zip.")
        except DatasetImportError as exc:
            raise gr.Error(str(exc)) from None
        except (ValueError, FileNotFoundError, StudioError) as exc:
            raise gr.Error(str(exc)) from None
        counts = result.counts["all"]
        return (gr.update(choices=self.datasets(), value=result.name),
                f"Imported **{result.name}**: {result.n_images} images, {result.n_masks} masks, "
                f"{counts}")

    @shown_errors
    def page(self, name: str | None, scheme: str | None, split: str, cls: str, page: int,
             show_masks: bool) -> tuple:
        if not name:
            return [], "", 0
        manifest = self.workspace.load_manifest(name)
        scheme = scheme if scheme in manifest.schemes else manifest.scheme
        result = browse_page(manifest, self.cache, split, cls, int(page or 0),
                             show_masks=show_masks, scheme=scheme)
        label = f"page {result.page + 1} of {result.pages} · {result.total} images"
        return result.tiles, label, result.page


def build_data_tab(workspace: Workspace, access: Access) -> dict:
    browser = DataBrowser(workspace, access.db)
    with gr.Accordion("Import a data set", open=False):
        with gr.Row():
            source = gr.Textbox(label="Folder or CSV on the server (hospital layout, class folders, CSV)")
            upload = gr.File(label="... or a zip", file_types=[".zip"], type="filepath")
            new_name = gr.Textbox(label="Name (default: the folder's)")
        import_btn = gr.Button("Import")
        import_msg = gr.Markdown()
    with gr.Row():
        dataset = gr.Dropdown([], value=None, label="Data set", allow_custom_value=True)  # filled at admin sign-in
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
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins

    def first_page_then_show(trigger: Callable) -> None:
        on(on(trigger, lambda: 0, outputs=page).then, browser.page, **page_io)

    # scheme.input, not .change: overview() itself sets the radio to the active scheme
    for trigger, name in ((dataset.change, "data_overview"), (scheme.input, None)):
        first_page_then_show(on(trigger, browser.overview, api_name=name, **overview_io).then)
    for trigger in (split.change, cls.change, masks.change):
        first_page_then_show(trigger)
    on(activate.click, browser.make_active, inputs=[dataset, scheme], outputs=summary)
    for button, turn in ((prev_btn, lambda p: max(0, p - 1)), (next_btn, lambda p: p + 1)):
        on(on(button.click, turn, inputs=page, outputs=page).then, browser.page, **page_io)
    on(import_btn.click, browser.import_source, inputs=[source, upload, new_name],
       outputs=[dataset, import_msg])

    def refresh(_person: Person) -> tuple:
        names = browser.datasets()
        first = DEMO_DATASET if DEMO_DATASET in names else (names[0] if names else None)
        return (gr.update(choices=names, value=first),)

    return {"browser": browser, "refresh": refresh, "outputs": [dataset]}
