"""Train generator: start a DDPM or LoRA training job, watch its loss and sample grids, cancel."""

from __future__ import annotations

import dataclasses

import functools
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from polyp_core.generation.ddpm import DDPMTrainConfig
from polyp_core.generation.sd_lora import LoraTrainConfig
from polyp_core.generation.training_log import checkpoint_grids, loss_rows
from polyp_core.review.accounts import Person
from polyp_core.validation import whole
from polyp_core.workflows import train_generator
from polyp_core.workflows import jobs as jobs_workflow
from studio_ui.access import Access
from studio_ui.services import Num, Studio, Text, job_line, shown_errors, ticking


DDPM = train_generator.TRAIN_DDPM  # the DDPM widgets start where the CLI's options do, but for
#: the page's presets: a first training on a CPU should finish in minutes
DDPM_PRESETS = {"preset": "tiny", "steps": 500, "batch_size": 16, "checkpoint_every": 100}
#: the model's task when the radio sends none: the request's own default
DDPM_TASK = next(f.default for f in dataclasses.fields(DDPMTrainConfig) if f.name == "task")


def loss_figure(folder: Path) -> go.Figure | None:
    """The loss curve of a model folder's training log (None before the first row)."""
    rows = loss_rows(folder)
    if not rows:
        return None
    figure = go.Figure(go.Scatter(x=[step for step, _ in rows], y=[loss for _, loss in rows],
                                  mode="lines", name="loss"))
    figure.update_layout(title="Training loss", xaxis_title="step", yaxis_type="log", height=320,
                         margin=dict(l=40, r=20, t=50, b=40))
    return figure


class TrainDesk:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    @shown_errors
    def start(self, person: Person, backend: Text, dataset: Text, model_id: Text, preset: Text,
              steps: Num, batch_size: Num, every: Num,
              base_model: Text, rank: Num, balance: bool = False,
              task: Text = "image") -> tuple:
        workspace = self.studio.workspace
        if backend == "ddpm":
            config = train_generator.train_ddpm_request(
                {"dataset": dataset, "model_id": model_id, "preset": preset, "steps": steps,
                 "batch_size": batch_size, "checkpoint_every": every, "class_balance": balance},
                task=task or DDPM_TASK)
        else:
            config = LoraTrainConfig(dataset=dataset, model_id=model_id, base_model=base_model,
                                     steps=whole(steps, "steps"),
                                     batch_size=whole(batch_size, "batch_size"),
                                     checkpoint_every=whole(every, "checkpoint_every"),
                                     rank=whole(rank, "rank"))
        job = train_generator.start(
            self.studio.db, workspace, person, config,
            lambda kind, cfg, work, owner: self.studio.jobs.submit(kind, cfg, work,
                                                                   owner_id=owner))
        return job, model_id, job_line(jobs_workflow.status(self.studio.db, person, job)), ticking(job)

    def poll(self, person: Person, job: str | None, model_id: str | None) -> tuple:
        """While a job runs: its line, loss curve and grids (the last tick draws the final state)."""
        if not job or not model_id:
            return gr.update(), gr.update(), gr.update(), None, ticking(None)
        folder = self.studio.workspace.models_dir / model_id
        status = jobs_workflow.status(self.studio.db, person, job)
        job = job if status.active else None
        return job_line(status), loss_figure(folder), checkpoint_grids(folder), job, ticking(job)

    def cancel(self, job: str | None) -> str:
        if not job or not self.studio.jobs.cancel(job):
            return "No running training of this session."
        return "Cancelling: the current step finishes and a checkpoint is written."


def build_train_tab(studio: Studio, access: Access) -> dict:
    desk = TrainDesk(studio)
    job, watched = gr.State(None), gr.State(None)
    with gr.Row():
        backend = gr.Radio(["ddpm", "sd_lora"], value="ddpm", label="Backend")
        dataset = gr.Dropdown([], label="Data set (training split only)",
                              allow_custom_value=True)  # filled at admin sign-in
        model_id = gr.Textbox("my-ddpm", label="Model id")
    with gr.Row():
        preset = gr.Dropdown(list(DDPM["preset"].choices), value=DDPM_PRESETS["preset"],
                             label="DDPM preset")
        steps = gr.Number(DDPM_PRESETS["steps"], label="Steps", precision=0)
        batch_size = gr.Number(DDPM_PRESETS["batch_size"], label="Batch size", precision=0)
        every = gr.Number(DDPM_PRESETS["checkpoint_every"], label="Checkpoint (with sample grid) every",
                          precision=0)
        balance = gr.Checkbox(DDPM["class_balance"].default,
                              label="DDPM: draw every class equally often")
        task = gr.Radio([("images", "image"), ("image and mask", "image_mask"),
                         ("inpainting", "inpaint")], value=DDPM_TASK,
                        label="DDPM learns (masks needed for the last two; to inpaint, "
                              "inpainting measured better than RePaint: docs/benchmarks.md)")
    with gr.Row():
        base_model = gr.Textbox("runwayml/stable-diffusion-v1-5",
                                label="SD base model (folder or hub id, LoRA only)")
        rank = gr.Number(8, label="LoRA rank", precision=0)
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        cancel = gr.Button("Cancel")
    status = gr.Markdown()
    loss = gr.Plot(label="Loss")
    grids = gr.Gallery(label="Sample grid per checkpoint (one row per class)", columns=4, height="auto")
    timer = gr.Timer(2.0, active=False)
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
    on(start.click, desk.start, inputs=[backend, dataset, model_id, preset, steps, batch_size,
                                        every, base_model, rank, balance, task],
       outputs=[job, watched, status, timer], api_name="start_training")
    on(timer.tick, desk.poll, inputs=[job, watched], outputs=[status, loss, grids, job, timer])
    on(cancel.click, desk.cancel, inputs=job, outputs=status)

    def refresh(_person: Person) -> tuple:
        names = studio.workspace.datasets()
        return (gr.update(choices=names, value=names[0] if names else None),)

    return {"refresh": refresh, "outputs": [dataset]}
