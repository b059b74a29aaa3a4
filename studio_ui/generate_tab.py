"""Generate: sample by class or prompt, see each image's provenance, compare settings on an
X/Y grid, and add what is good to the synthetic pool."""

from __future__ import annotations

import functools
import random

import gradio as gr

from polyp_core.generation.backends import describe_model, list_models
from polyp_core.generation.grid import AXES, grid_labels, labelled_grid, max_cells, parse_axis
from polyp_core.generation.request import SCHEDULERS, LoraChoice, SampleRequest
from polyp_core.jobs import job_status
from polyp_core.review.accounts import Person
from polyp_core.validation import number, whole
from polyp_core.workflows import generate
from studio_ui.access import Access
from studio_ui.services import Num, Studio, Text, job_line, shown_errors, start_on_board, ticking


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
        seed = random.randrange(2**31) if random_seed else whole(seed, "seed")
        loras = ((LoraChoice(lora.strip(), number(lora_scale, "lora_scale")),)
                 if lora and lora.strip() else ())
        request = SampleRequest(class_label=None if prompt else cls, prompt=prompt or None,
                                negative_prompt=negative or None, n=whole(n, "n"), seed=seed,
                                steps=whole(steps, "steps"),
                                guidance=number(guidance, "guidance"), scheduler=scheduler,
                                loras=loras)
        request.validate()
        return request

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

    def poll(self, job: str | None) -> tuple:
        """A timer tick: the job's line, the images so far, the batch to add (when done)."""
        holder = self.studio.board.get(job)
        if holder is None:
            return gr.update(), gr.update(), gr.update(), None, ticking(None)
        status = job_status(self.studio.db, job)
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

    def poll_grid(self, job: str | None) -> tuple:
        """A timer tick: the job's line and the grid so far (cells not made yet are grey)."""
        holder = self.studio.board.get(job)
        if holder is None:
            return gr.update(), gr.update(), None, ticking(None)
        status = job_status(self.studio.db, job)
        picture = labelled_grid(holder["cells"], *holder["labels"])
        job = job if status.active else None
        return job_line(status), picture, job, ticking(job)


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
        n = gr.Slider(1, 64, 8, step=1, label="Images")
        seed = gr.Number(0, label="Seed", precision=0)
        random_seed = gr.Checkbox(False, label="Random seed")
        steps = gr.Slider(5, 1000, 200, step=1, label="Steps")
        guidance = gr.Slider(0, 10, 2.0, step=0.5, label="Guidance")
        scheduler = gr.Dropdown(list(SCHEDULERS), value="ddpm", label="Scheduler")
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
    timer, grid_timer = gr.Timer(1.0, active=False), gr.Timer(1.0, active=False)
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
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
