"""Generate: sample by class or prompt, see each image's provenance, compare settings on an
X/Y grid, and add what is good to the synthetic pool."""

from __future__ import annotations

import functools
import random

import gradio as gr
import numpy as np
from PIL import Image

from polyp_core.data.browse import overlay_mask
from polyp_core.generation.backends import describe_model, list_models
from polyp_core.generation.grid import AXES, grid_labels, labelled_grid, max_cells, parse_axis
from polyp_core.generation.request import LoraChoice, SampleRequest
from polyp_core.review.accounts import Person
from polyp_core.validation import number
from polyp_core.workflows import generate
from polyp_core.workflows import jobs as jobs_workflow
from studio_ui.access import Access
from studio_ui.services import (Num, Studio, Text, form_event, job_line, shown_errors,
                                start_on_board, ticking)


SAMPLE = generate.SAMPLE  # the sampling panel starts where the CLI's options do, but for three
#: presets of the page: more images, and the plain DDPM sampler at 200 steps
SAMPLE_PRESETS = {"n": 8, "steps": 200, "scheduler": "ddpm"}
PAINT = generate.INPAINT  # the Inpaint panel starts where the CLI's options do, but for one
#: preset of the page: four seeds, to compare results side by side
PAINT_SEEDS = "0-3"

class GenerateDesk:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def models(self) -> list[str]:
        return list_models(self.studio.workspace)

    @shown_errors
    def model_info(self, model_id: str | None) -> tuple:
        """Checkpoints and classes of the chosen generator (read from its config, no weights)."""
        if not model_id:
            return gr.update(choices=[], value=None), gr.update(choices=[], value=None), ""
        info = describe_model(self.studio.workspace, model_id)
        checkpoints, classes, trained = info["checkpoints"], info["classes"], info["trained_on"]
        text = (f"backend **{info['backend']}** · classes {', '.join(classes)} · trained on "
                f"{trained.get('dataset', '?')} ({', '.join(trained.get('splits', []))})")
        return (gr.update(choices=checkpoints, value=checkpoints[-1] if checkpoints else None),
                gr.update(choices=classes, value=classes[0] if classes else None), text)

    def _request(self, cls: Text, prompt: Text, negative: Text, n: Num, seed: Num,
                 random_seed: bool, steps: Num, guidance: Num, scheduler: Text,
                 lora: Text, lora_scale: Num) -> SampleRequest:
        seed = random.randrange(2**31) if random_seed else seed
        loras = ((LoraChoice(lora.strip(), number(lora_scale, "lora_scale")),)
                 if lora and lora.strip() else ())
        return generate.sample_request(
            {"class_label": cls, "prompt": prompt, "negative_prompt": negative, "n": n,
             "seed": seed, "steps": steps, "guidance": guidance, "scheduler": scheduler}, loras)

    @shown_errors
    def sample(self, person: Person, model_id: Text, checkpoint: Text, cls: Text, prompt: Text,
               negative: Text, n: Num, seed: Num, random_seed: bool,
               steps: Num, guidance: Num, scheduler: Text, lora: Text, lora_scale: Num) -> tuple:
        """Queue the sampling as a job (the runner holds the generation lock); the page polls
        the board and shows images as each batch is made."""
        if not model_id:
            raise gr.Error("Choose a generator.")
        request = self._request(cls, prompt, negative, n, seed, random_seed, steps, guidance,
                                scheduler, lora, lora_scale)
        holder = {"kind": "sample", "model": model_id, "checkpoint": checkpoint,
                  "request": request, "images": []}
        work = generate.sample_work(self.studio.db, self.studio.workspace, person, model_id,
                                    checkpoint, request, holder)  # unknown models refused now
        return start_on_board(self.studio, person, "generate-sample",
                              {"model": model_id, "n": request.n}, work, holder)

    @staticmethod
    def _tiles(holder: dict) -> list:
        request = holder["request"]
        return [(img.rgb, f"seed {img.seed} · {img.class_label or img.prompt} · "
                          f"{request.scheduler} {request.steps} steps · guidance "
                          f"{request.guidance:g}") for img in holder["images"]]

    def poll(self, person: Person, job: str | None) -> tuple:
        """A timer tick: the job's line, the images so far, the batch to add (when done)."""
        holder = self.studio.board.get(job)
        if holder is None:
            return gr.update(), gr.update(), gr.update(), None, ticking(None)
        status = jobs_workflow.status(self.studio.db, person, job)
        line = job_line(status)
        batch = gr.update()
        if status.status == "done":
            line += " · not in the pool until you add them."
        if not status.active and holder["images"]:  # a cancelled job keeps what it made
            batch = {key: holder[key] for key in ("model", "checkpoint", "request", "images")}
        job = job if status.active else None
        return line, self._tiles(holder), batch, job, ticking(job)

    def cancel(self, job: str | None) -> str:
        if not job or not self.studio.jobs.cancel(job):
            return "Nothing of this page is running."
        return "Cancelling: the image being made finishes first."

    @shown_errors
    def add_to_pool(self, person: Person, batch: list | None) -> str:
        if not batch:
            raise gr.Error("Sample some images first.")
        stored = generate.add_to_pool(self.studio.db, self.studio.workspace, person,
                                      batch["model"], batch["checkpoint"], batch["images"],
                                      batch["request"])
        return f"Added {len(stored)} image(s) to the synthetic pool (stored once each, by SHA-256)."

    @shown_errors
    def grid(self, person: Person, model_id: Text, checkpoint: Text, cls: Text, prompt: Text,
             negative: Text, seed: Num, steps: Num, guidance: Num,
             scheduler: Text, lora: Text, lora_scale: Num, x_axis: Text, x_values: Text,
             y_axis: Text, y_values: Text) -> tuple:
        """Queue an X/Y grid as a job; refused at once when it is over the cell limit."""
        if not model_id:
            raise gr.Error("Choose a generator.")
        base = self._request(cls, prompt, negative, 1, seed, False, steps, guidance, scheduler,
                             lora, lora_scale)
        xs, ys = parse_axis(x_axis, x_values), parse_axis(y_axis, y_values)
        holder = {"kind": "grid", "labels": grid_labels(x_axis, xs, y_axis, ys),
                  "cells": [[None] * len(xs) for _ in ys]}
        work = generate.grid_work(self.studio.db, self.studio.workspace, person, model_id,
                                  checkpoint, base, x_axis, xs, y_axis, ys, holder)
        return start_on_board(self.studio, person, "generate-grid",
                              {"model": model_id, "x": x_axis, "y": y_axis,
                               "cells": len(xs) * len(ys)}, work, holder)

    def poll_grid(self, person: Person, job: str | None) -> tuple:
        """A timer tick: the job's line and the grid so far (cells not made yet are grey)."""
        holder = self.studio.board.get(job)
        if holder is None:
            return gr.update(), gr.update(), None, ticking(None)
        status = jobs_workflow.status(self.studio.db, person, job)
        picture = labelled_grid(holder["cells"], *holder["labels"])
        job = job if status.active else None
        return job_line(status), picture, job, ticking(job)


class InpaintDesk:
    """The Inpaint panel: a frame (a data set's, or uploaded), a mask (the frame's own, drawn
    in the editor, or made by an image-and-mask model), a class and seeds; the results go to the
    pool with their masks, and the page shows background, mask, result and overlay."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    @shown_errors
    def frames(self, person: Person, dataset: Text) -> dict:
        if not dataset:
            return gr.update(choices=[], value=None)
        ids = generate.background_frames(self.studio.db, self.studio.workspace, person, dataset)
        return gr.update(choices=ids, value=ids[0] if ids else None)

    @shown_errors
    def show_frame(self, person: Person, dataset: Text, frame: Text) -> dict:
        """The frame in the editor, its own mask outlined, to draw a new one on."""
        if not dataset or not frame:
            return gr.update(value=None)
        background = generate.background_frame(self.studio.db, self.studio.workspace, person,
                                                dataset, frame)
        shown = overlay_mask(background.rgb, background.mask) if background.mask is not None \
            else background.rgb
        return gr.update(value={"background": shown, "layers": [], "composite": shown})

    @staticmethod
    def drawn_mask(editor: dict | None, shape: tuple[int, int] | None) -> np.ndarray | None:
        """What was painted on the editor's layers (any opaque pixel), at the frame's size."""
        layers = [np.asarray(layer) for layer in (editor or {}).get("layers") or []]
        layers = [layer for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
        if not layers:
            return None
        mask = np.any([layer[..., 3] > 0 for layer in layers], axis=0)
        if shape is not None and mask.shape != shape:
            mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
                (shape[1], shape[0]), Image.Resampling.NEAREST)) >= 128
        return mask

    @shown_errors
    def inpaint(self, person: Person, fields: dict) -> tuple:
        """Inpaint from the panel's values (``generate.INPAINT``'s fields, by name, and the
        page's ``upload`` and ``editor``)."""
        fields = dict(fields)
        upload, editor = fields.pop("upload"), fields.pop("editor")
        if not fields.get("generator"):
            raise gr.Error("Choose a generator (above).")
        use_upload = upload is not None
        dataset, frame = fields.get("dataset"), fields.get("image")
        if use_upload:
            fields |= {"dataset": None, "image": None}
        request = generate.inpaint_request(fields)
        model_id = request.generator
        shape = upload.shape[:2] if use_upload else None
        if shape is None and dataset and frame:
            shape = generate.background_frame(self.studio.db, self.studio.workspace, person,
                                              dataset, frame).rgb.shape[:2]
        drawn = self.drawn_mask(editor, shape) if request.mask_source == "drawn" else None
        holder: dict = {"kind": "inpaint"}
        work = generate.inpaint_work(self.studio.db, self.studio.workspace, person, request,
                                     upload if use_upload else None, drawn, holder)
        return start_on_board(self.studio, person, "generate-inpaint",
                              {"model": model_id, "seeds": len(request.seeds)}, work, holder)

    def poll(self, person: Person, job: str | None) -> tuple:
        """A timer tick: the job's line; when done, the four panels and every result."""
        holder = self.studio.board.get(job)
        if holder is None:
            return (gr.update(),) * 3 + (None, ticking(None))
        status = jobs_workflow.status(self.studio.db, person, job)
        panels, tiles = gr.update(), gr.update()
        result = holder.get("result")
        if result is not None:
            first = result.images[0]
            # with a window the results are at the frame's size; without, at the model's
            shown = result.background.rgb if result.window else result.background_rgb
            mask_view = overlay_mask(overlay_mask(shown, first.hole, (255, 200, 0)), first.mask)
            panels = [(shown, "background"),
                      (mask_view, "hole (yellow) and polyp mask (green)"),
                      (first.rgb, f"result, seed {first.seed}"),
                      (overlay_mask(first.rgb, first.mask), "overlay")]
            tiles = [(overlay_mask(image.rgb, image.mask), f"seed {image.seed} · {result.method}")
                     for image in result.images]
        job = job if status.active else None
        return job_line(status), panels, tiles, job, ticking(job)


def build_generate_tab(studio: Studio, access: Access) -> dict:
    desk = GenerateDesk(studio)
    batch, job, grid_job = gr.State(None), gr.State(None), gr.State(None)
    with gr.Row():
        # the engine checks every value (unknown model, checkpoint or class: a clear error)
        model = gr.Dropdown([], label="Generator", allow_custom_value=True)  # filled at admin sign-in
        checkpoint = gr.Dropdown([], label="Checkpoint", allow_custom_value=True)
        cls = gr.Dropdown([], label="Class", allow_custom_value=True)
    info = gr.Markdown()
    with gr.Row():
        prompt = gr.Textbox(label="Prompt (Stable Diffusion; overrides the class)")
        negative = gr.Textbox(label="Negative prompt")
    with gr.Row():
        lora = gr.Textbox(label="LoRA adapter (file or model folder, Stable Diffusion)")
        lora_scale = gr.Slider(0, 2, 1.0, step=0.05, label="LoRA scale")
    with gr.Row():
        n = gr.Slider(1, 64, SAMPLE_PRESETS["n"], step=1, label="Images")
        seed = gr.Number(SAMPLE["seed"].default, label="Seed", precision=0)
        random_seed = gr.Checkbox(False, label="Random seed")
        steps = gr.Slider(5, SAMPLE["steps"].hi, SAMPLE_PRESETS["steps"], step=1, label="Steps")
        guidance = gr.Slider(0, 10, SAMPLE["guidance"].default, step=0.5, label="Guidance")
        scheduler = gr.Dropdown(list(SAMPLE["scheduler"].choices), value=SAMPLE_PRESETS["scheduler"],
                                label="Scheduler")
    with gr.Row():
        go = gr.Button("Sample", variant="primary")
        cancel = gr.Button("Cancel")
        add = gr.Button("Add these to the pool")
    status = gr.Markdown()
    gallery = gr.Gallery(label="Samples (caption: provenance)", columns=8, height="auto")
    with gr.Accordion("X/Y comparison grid", open=False):
        with gr.Row():
            x_axis = gr.Dropdown(list(AXES), value="guidance", label="X axis")
            x_values = gr.Textbox("1, 2, 4", label="X values")
            y_axis = gr.Dropdown(list(AXES), value="class_label", label="Y axis")
            y_values = gr.Textbox("", label="Y values (e.g. AD, SSA, HP)")
        with gr.Row():
            grid_btn = gr.Button(f"Make grid (at most {max_cells()} cells)")
            grid_cancel = gr.Button("Cancel grid")
        grid_status = gr.Markdown()
        grid = gr.Image(label="X/Y grid (cells appear as they are made)", type="numpy",
                        interactive=False)
    with gr.Accordion("Inpaint a polyp into a real frame", open=False):
        gr.Markdown("Uses the generator, checkpoint and class above. A model trained with "
                    "`--inpaint` fills the hole itself: the recommended route, measured closer "
                    "to real on NeoPolyp than RePaint (docs/benchmarks.md), which fills it with "
                    "a plain or `--with-mask` model. Pixels outside the hole stay the frame's. "
                    "Results join the pool with their masks; each records its frame.")
        with gr.Row():
            paint_dataset = gr.Textbox(label="Data set of the frame")
            paint_frame = gr.Dropdown([], label="Frame (training split, with a mask)",
                                      allow_custom_value=True)
            paint_upload = gr.Image(label="Or upload a frame", type="numpy")
        paint_editor = gr.ImageEditor(label="The frame: draw a mask here (mask source: drawn)",
                                      type="numpy")
        with gr.Row():
            mask_source = gr.Radio(list(PAINT["mask_source"].choices),
                                   value=PAINT["mask_source"].default,
                                   label="Mask source")
            mask_generator = gr.Textbox(label="Image-and-mask model (mask source: generated)")
            dilate = gr.Number(PAINT["dilate"].default, label="Dilate (px of the frame)",
                               precision=0)
            window = gr.Radio(list(PAINT["window"].choices), value=PAINT["window"].default,
                              label="Window (lesion: the frame's own resolution)")
            paint_seeds = gr.Textbox(PAINT_SEEDS, label="Seeds")
        with gr.Row():
            paint_steps = gr.Slider(5, PAINT["steps"].hi, PAINT["steps"].default, step=1,
                                    label="Steps")
            jump_length = gr.Number(PAINT["jump_length"].default, label="RePaint jump length",
                                    precision=0)
            jump_n = gr.Number(PAINT["jump_n_sample"].default, label="RePaint jumps per point",
                               precision=0)
            paint_go = gr.Button("Inpaint", variant="primary")
        paint_status = gr.Markdown()
        panels = gr.Gallery(label="Background · mask · result · overlay", columns=4,
                            height="auto")
        paint_results = gr.Gallery(label="Every result (mask outlined)", columns=8, height="auto")
    paint_job, paint_timer = gr.State(None), gr.Timer(1.0, active=False)
    painter = InpaintDesk(studio)
    timer, grid_timer = gr.Timer(1.0, active=False), gr.Timer(1.0, active=False)
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
    on(paint_dataset.submit, painter.frames, inputs=paint_dataset, outputs=paint_frame,
       api_name="inpaint_frames")
    on(paint_frame.change, painter.show_frame, inputs=[paint_dataset, paint_frame],
       outputs=paint_editor, api_name="inpaint_frame")
    paint_form = {"generator": model, "checkpoint": checkpoint, "class_label": cls,
                  "dataset": paint_dataset, "image": paint_frame, "upload": paint_upload,
                  "editor": paint_editor, "mask_source": mask_source,
                  "mask_generator": mask_generator, "dilate": dilate, "window": window,
                  "seeds": paint_seeds,
                  "steps": paint_steps, "guidance": guidance, "scheduler": scheduler,
                  "jump_length": jump_length, "jump_n_sample": jump_n}
    on(paint_go.click, form_event(list(paint_form), painter.inpaint),
       inputs=list(paint_form.values()),
       outputs=[paint_job, paint_status, paint_timer], api_name="inpaint")
    on(paint_timer.tick, painter.poll, inputs=paint_job,
       outputs=[paint_status, panels, paint_results, paint_job, paint_timer],
       api_name="poll_inpaint")
    on(model.change, desk.model_info, inputs=model, outputs=[checkpoint, cls, info])
    on(go.click, desk.sample, inputs=[model, checkpoint, cls, prompt, negative, n, seed, random_seed,
                                      steps, guidance, scheduler, lora, lora_scale],
       outputs=[job, status, timer], api_name="sample")
    on(timer.tick, desk.poll, inputs=job, outputs=[status, gallery, batch, job, timer],
       api_name="poll_samples")
    on(cancel.click, desk.cancel, inputs=job, outputs=status, api_name="cancel_samples")
    on(add.click, desk.add_to_pool, inputs=batch, outputs=status, api_name="add_to_pool")
    on(grid_btn.click, desk.grid, inputs=[model, checkpoint, cls, prompt, negative, seed, steps,
                                          guidance, scheduler, lora, lora_scale, x_axis, x_values,
                                          y_axis, y_values],
       outputs=[grid_job, grid_status, grid_timer], api_name="grid")
    on(grid_timer.tick, desk.poll_grid, inputs=grid_job,
       outputs=[grid_status, grid, grid_job, grid_timer], api_name="poll_grid")
    on(grid_cancel.click, desk.cancel, inputs=grid_job, outputs=grid_status, api_name="cancel_grid")

    def refresh(_person: Person) -> tuple:
        models = desk.models()
        return (gr.update(choices=models, value=models[0] if models else None),)

    return {"refresh": refresh, "outputs": [model]}
