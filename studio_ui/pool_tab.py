"""Pool (admins): browse the synthetic images with their provenance and ratings, filter them,
and remove the ones that should not be used (refused for images a study or run uses)."""

from __future__ import annotations

import functools
import json

import gradio as gr
import numpy as np

from polyp_core.data.browse import overlay_mask
from polyp_core.data.cache import PixelCache
from polyp_core.data.images import load_mask, resize_mask
from polyp_core.pool import QUALITY_ORDER, RATING_FILTERS, PoolFilter, PoolItem
from polyp_core.review.accounts import Person
from polyp_core.workflows import pool as pool_workflow
from polyp_core.workflows import jobs as jobs_workflow
from studio_ui.access import Access
from polyp_core.validation import number
from studio_ui.services import (Num, Studio, Text, form_event, job_line, shown_errors,
                                start_on_board,
                                ticking)

PER_PAGE = 24
ANY = "any"


class PoolDesk:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.pixels = PixelCache(studio.workspace.pixel_cache_dir)

    def generators(self, person: Person) -> list[str]:
        return pool_workflow.generators(self.studio.db, person)

    @staticmethod
    def _filter(generator: Text, checkpoint: Text, cls: Text, rated: Text,
                quality: Text, gate: Num = None) -> PoolFilter:
        def pick(v: Text) -> Text:
            return None if v in (None, "", ANY) else v
        return PoolFilter(generator=pick(generator), checkpoint=pick((checkpoint or "").strip()),
                          class_label=pick(cls), rated=rated or "any",
                          min_quality=pick(quality),
                          min_gate_iou=number(gate, "min_gate_iou") if gate else None)

    @shown_errors
    def page(self, person: Person, generator: Text, checkpoint: Text, cls: Text, rated: Text,
             quality: Text, gate: Num, page: Num) -> tuple:
        """A page of thumbnails with captions, the page line, the page number and the hashes
        shown (the selection is made among these)."""
        result = pool_workflow.page(self.studio.db, person,
                                    self._filter(generator, checkpoint, cls, rated, quality, gate),
                                    int(page or 0), PER_PAGE)
        tiles = [(self._thumbnail(i), i.caption()) for i in result.items]
        shown = [i.sha256 for i in result.items]
        label = f"page {result.page + 1} of {result.pages} · {result.total} image(s)"
        choices = [(f"{n + 1}. {item.caption()} · {item.sha256[:10]}", item.sha256)
                   for n, item in enumerate(result.items)]
        return tiles, label, result.page, shown, gr.update(choices=choices, value=[])

    def _thumbnail(self, item: PoolItem) -> np.ndarray:
        """The image at 128 px, its polyp mask (when stored with one) outlined."""
        rgb = self.pixels.rgb(item.path, item.sha256, 128)
        if item.mask_file is None or not item.mask_file.is_file():
            return rgb
        return overlay_mask(rgb, resize_mask(load_mask(item.mask_file), 128))

    @shown_errors
    def details(self, person: Person, shown: list[str], evt: gr.SelectData) -> str:
        """Full provenance and every rating of the clicked image."""
        if not shown or evt.index is None or evt.index >= len(shown):
            return ""
        item = pool_workflow.item(self.studio.db, person, shown[evt.index])
        return (f"**{item.sha256[:16]}…** · in studies: {', '.join(item.studies) or 'none'}\n\n"
                f"```json\n{json.dumps(item.provenance, indent=1, default=str)}\n```\n\n"
                + ("\n".join(f"- {r['study']}: {r['verdict']}, {r['quality']} (revision "
                             f"{r['revision']})" for r in item.ratings) or "unrated"))

    @shown_errors
    def import_external(self, person: Person, path: str, upload: str | None, generator: str,
                        dataset: str,
                        trained_on: str, version: str, source_note: str, licence: str) -> str:
        """Import a folder on the server, or an uploaded zip, of images made elsewhere."""
        source = str(upload) if upload is not None else (path or "").strip()
        if not source:
            raise gr.Error("Give a folder path on the server or upload a zip.")
        request = pool_workflow.import_synthetic_request(
            {"source": source, "generator": generator, "dataset": dataset,
             "trained_on": trained_on, "version": version, "source_note": source_note,
             "licence": licence})
        result = pool_workflow.import_synthetic(self.studio.db, self.studio.workspace, person,
                                                request)  # errors name the file and row
        learned = result.declared_training or "unknown: retrain uses its images only when told to"
        return (f"Imported **{len(result.images)}** images ({result.masks} with masks) of "
                f"**{result.generator}**; trained on: {learned}.")

    @shown_errors
    def gate(self, person: Person, fields: dict) -> tuple:
        """Queue the segmentation gate as a job (``pool.GATE``'s fields, by name); the page
        polls it for the result."""
        if not fields.get("dataset"):
            raise gr.Error("Name the real data set the gate learns from.")
        config = pool_workflow.gate_request(fields)
        holder: dict = {"kind": "gate"}
        work = pool_workflow.gate_work(self.studio.db, self.studio.workspace, person, config,
                                       holder)
        return start_on_board(self.studio, person, "pool-gate", {"dataset": config.dataset},
                              work, holder)

    def poll_gate(self, person: Person, job: str | None) -> tuple:
        holder = self.studio.board.get(job)
        if holder is None:
            return gr.update(), None, ticking(None)
        status = jobs_workflow.status(self.studio.db, person, job)
        line = job_line(status)
        if holder.get("result") is not None:
            line += "\n\n" + "\n\n".join(holder["result"].lines())
        job = job if status.active else None
        return line, job, ticking(job)

    def remove(self, person: Person, chosen: list[str]) -> str:
        if not chosen:
            raise gr.Error("Tick the images to remove first.")
        result = pool_workflow.remove(self.studio.db, self.studio.workspace, person,
                                      list(chosen))
        lines = [f"Removed {len(result.removed)} image(s) from the pool."]
        lines += [f"- kept {sha[:12]}…: {why}" for sha, why in result.refused.items()]
        return "\n".join(lines)


def build_pool_tab(studio: Studio, access: Access) -> dict:
    desk = PoolDesk(studio)
    gr.Markdown("The synthetic pool: every image a generator made and an admin added, newest "
                "first. Click an image for its full provenance and ratings. Images used by a "
                "study or a stored run cannot be removed.")
    with gr.Accordion("Import synthetic images made elsewhere", open=False):
        gr.Markdown("A folder (or zip) with `manifest.csv` or `manifest.jsonl` (columns `file`, "
                    "`class`, and any of `mask`, `seed`, `prompt`, `checkpoint`, `background`, "
                    "...), the images, and masks with the same stem under `masks/`. Every row "
                    "is checked before anything is stored; see the README.")
        with gr.Row():
            ext_path = gr.Textbox(label="Folder on the server")
            ext_upload = gr.File(label="... or a zip", file_types=[".zip"], type="filepath")
        with gr.Row():
            ext_name = gr.Textbox(label="Generator name (as the pool will show it)")
            ext_dataset = gr.Textbox(label="Real data set the images complement")
            ext_trained = gr.Textbox(pool_workflow.IMPORT_SYNTHETIC["trained_on"].default,
                                     label="Trained on (DATASET:SPLIT, DATASET:images=FILE, "
                                           "DATASET:groups=FILE or unknown)")
        with gr.Row():
            ext_version = gr.Textbox(label="Version")
            ext_source = gr.Textbox(label="Source (URL or citation)")
            ext_licence = gr.Textbox(label="Licence")
        ext_button = gr.Button("Import into the pool")
        ext_message = gr.Markdown()
    with gr.Accordion("Segmentation gate: is each polyp where its mask says?", open=False):
        gr.Markdown("A U-Net learns from the real training frames of a data set and predicts the "
                    "mask of every synthetic image stored with one; the IoU with the image's own "
                    "mask is stored per image. Beside it: the IoU of the data set's held-out real "
                    "frames under the same model (a gate is only as good as its model).")
        with gr.Row():
            gate_dataset = gr.Textbox(label="Real data set")
            gate_generator = gr.Textbox(label="Generator (empty: every image with a mask)")
            gate_threshold = gr.Number(pool_workflow.GATE["threshold"].default,
                                       label="IoU counted as accepted")
            gate_button = gr.Button("Run the gate")
        gate_message = gr.Markdown()
    gate_job, gate_timer = gr.State(None), gr.Timer(1.0, active=False)
    with gr.Row():
        generator = gr.Dropdown([ANY], value=ANY, label="Generator", allow_custom_value=True)
        checkpoint = gr.Textbox("", label="Checkpoint (e.g. step-002500)")
        cls = gr.Dropdown([ANY, "AD", "SSA", "HP"], value=ANY, label="Class")
        rated = gr.Radio(list(RATING_FILTERS), value="any", label="Rated")
        quality = gr.Dropdown([ANY, *reversed(QUALITY_ORDER)], value=ANY,
                              label="Median rating at least")
        gate_min = gr.Number(0, label="Gate IoU at least (0: any)")
    with gr.Row():
        prev_btn = gr.Button("◀ Previous")
        page_label = gr.Markdown()
        next_btn = gr.Button("Next ▶")
    page, shown = gr.State(0), gr.State([])
    gallery = gr.Gallery(label="Synthetic images (caption: class · generator@checkpoint · seed · "
                               "ratings)", columns=8, height="auto", format="png")
    details = gr.Markdown()
    chosen = gr.CheckboxGroup([], label="Select to remove (this page, in gallery order)")
    remove = gr.Button("Remove the selected images from the pool", variant="stop")
    message = gr.Markdown()

    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
    filters = [generator, checkpoint, cls, rated, quality, gate_min]
    page_io = dict(inputs=[*filters, page], outputs=[gallery, page_label, page, shown, chosen])
    for trigger in (generator.change, checkpoint.submit, cls.change, rated.change, quality.change,
                    gate_min.submit):
        on(on(trigger, lambda: 0, outputs=page).then, desk.page, **page_io)
    for button, turn in ((prev_btn, lambda p: max(0, p - 1)), (next_btn, lambda p: p + 1)):
        on(on(button.click, turn, inputs=page, outputs=page).then, desk.page, **page_io)
    on(gallery.select, desk.details, inputs=shown, outputs=details)
    gate_form = {"dataset": gate_dataset, "generator": gate_generator,
                 "threshold": gate_threshold}
    on(gate_button.click, form_event(list(gate_form), desk.gate), inputs=list(gate_form.values()),
       outputs=[gate_job, gate_message, gate_timer], api_name="gate")
    on(gate_timer.tick, desk.poll_gate, inputs=gate_job, outputs=[gate_message, gate_job, gate_timer],
       api_name="poll_gate")
    on(ext_button.click, desk.import_external,
       inputs=[ext_path, ext_upload, ext_name, ext_dataset, ext_trained, ext_version, ext_source,
               ext_licence], outputs=ext_message, api_name="import_synthetic")
    on(on(remove.click, desk.remove, inputs=chosen, outputs=message, api_name="remove_from_pool")
       .then, desk.page, **page_io)

    def refresh(person: Person) -> tuple:
        return (gr.update(choices=[ANY, *desk.generators(person)], value=ANY),
                *desk.page(person, ANY, "", ANY, "any", ANY, 0, 0))

    return {"refresh": refresh, "outputs": [generator, gallery, page_label, page, shown, chosen]}
