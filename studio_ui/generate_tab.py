"""Generate: sample by class or prompt, see each image's provenance, compare settings on an
X/Y grid, and add what is good to the synthetic pool."""

from __future__ import annotations

import random

import gradio as gr

from polyp_core.generation.backends import (describe_model, list_models, load_generator,
                                            store_generated)
from polyp_core.generation.grid import AXES, parse_axis, xy_grid
from polyp_core.generation.request import SCHEDULERS, LoraChoice, SampleRequest
from studio_ui.access import Access
from studio_ui.services import Studio, shown_errors
from polyp_core.validation import number, whole


class GenerateDesk:
    def __init__(self, studio: Studio):
        self.studio = studio

    def models(self) -> list[str]:
        return list_models(self.studio.workspace)

    @shown_errors
    def model_info(self, model_id: str | None):
        """Checkpoints and classes of the chosen generator (read from its config, no weights)."""
        if not model_id:
            return gr.update(choices=[], value=None), gr.update(choices=[], value=None), ""
        info = describe_model(self.studio.workspace, model_id)
        checkpoints, classes, trained = info["checkpoints"], info["classes"], info["trained_on"]
        text = (f"backend **{info['backend']}** · classes {', '.join(classes)} · trained on "
                f"{trained.get('dataset', '?')} ({', '.join(trained.get('splits', []))})")
        return (gr.update(choices=checkpoints, value=checkpoints[-1] if checkpoints else None),
                gr.update(choices=classes, value=classes[0] if classes else None), text)

    def _request(self, cls, prompt, negative, n, seed, random_seed, steps, guidance, scheduler,
                 lora, lora_scale) -> SampleRequest:  # noqa: ANN001
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
    def sample(self, model_id, checkpoint, cls, prompt, negative, n, seed, random_seed,
               steps, guidance, scheduler, lora, lora_scale, progress=gr.Progress()):  # noqa: ANN001, B008
        if not model_id:
            raise gr.Error("Choose a generator.")
        request = self._request(cls, prompt, negative, n, seed, random_seed, steps, guidance,
                                scheduler, lora, lora_scale)
        with self.studio.jobs.gpu:  # one GPU user at a time
            generator = load_generator(self.studio.workspace, model_id, checkpoint)
            images = generator.sample(request, lambda d, t, m: progress((d, t), desc=m))
        tiles = [(img.rgb, f"seed {img.seed} · {img.class_label or img.prompt} · {request.scheduler} "
                           f"{request.steps} steps · guidance {request.guidance:g}") for img in images]
        batch = {"model": model_id, "checkpoint": checkpoint, "request": request, "images": images}
        return tiles, batch, f"{len(images)} image(s) from {model_id}@{generator.checkpoint}; " \
                             "not in the pool until you add them."

    @shown_errors
    def add_to_pool(self, batch):  # noqa: ANN001
        if not batch:
            raise gr.Error("Sample some images first.")
        generator = load_generator(self.studio.workspace, batch["model"], batch["checkpoint"])
        stored = store_generated(self.studio.db, self.studio.workspace, generator, batch["model"],
                                 batch["images"], batch["request"])
        return f"Added {len(stored)} image(s) to the synthetic pool (stored once each, by SHA-256)."

    @shown_errors
    def grid(self, model_id, checkpoint, cls, prompt, negative, seed, steps, guidance,
             scheduler, lora, lora_scale, x_axis, x_values, y_axis, y_values):  # noqa: ANN001
        if not model_id:
            raise gr.Error("Choose a generator.")
        base = self._request(cls, prompt, negative, 1, seed, False, steps, guidance, scheduler,
                             lora, lora_scale)
        xs, ys = parse_axis(x_axis, x_values), parse_axis(y_axis, y_values)
        with self.studio.jobs.gpu:
            return xy_grid(self.studio.workspace, model_id, base, x_axis, xs, y_axis, ys, checkpoint)


def build_generate_tab(studio: Studio, access: Access) -> dict:
    desk = GenerateDesk(studio)
    batch = gr.State(None)
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
        add = gr.Button("Add these to the pool")
    status = gr.Markdown()
    gallery = gr.Gallery(label="Samples (caption: provenance)", columns=8, height="auto")
    with gr.Accordion("X/Y comparison grid", open=False):
        with gr.Row():
            x_axis = gr.Dropdown(list(AXES), value="guidance", label="X axis")
            x_values = gr.Textbox("1, 2, 4", label="X values")
            y_axis = gr.Dropdown(list(AXES), value="class_label", label="Y axis")
            y_values = gr.Textbox("", label="Y values (e.g. AD, SSA, HP)")
        grid_btn = gr.Button("Make grid")
        grid = gr.Image(label="X/Y grid", type="numpy", interactive=False)
    on = lambda trigger, fn, **io: access.on(trigger, fn, "admin", **io)  # noqa: E731
    on(model.change, desk.model_info, inputs=model, outputs=[checkpoint, cls, info])
    on(go.click, desk.sample, inputs=[model, checkpoint, cls, prompt, negative, n, seed, random_seed,
                                      steps, guidance, scheduler, lora, lora_scale],
       outputs=[gallery, batch, status], api_name="sample")
    on(add.click, desk.add_to_pool, inputs=batch, outputs=status, api_name="add_to_pool")
    on(grid_btn.click, desk.grid, inputs=[model, checkpoint, cls, prompt, negative, seed, steps,
                                          guidance, scheduler, lora, lora_scale, x_axis, x_values,
                                          y_axis, y_values], outputs=grid)

    def refresh(_person):  # noqa: ANN001
        models = desk.models()
        return (gr.update(choices=models, value=models[0] if models else None),)

    return {"refresh": refresh, "outputs": [model]}
