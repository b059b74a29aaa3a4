"""The blind review queue: one large image, real/synthetic then good/moderate/poor, keys too.

Nothing sent to the browser names the image's origin: the picture is the engine's blind
JPEG, served byte for byte as the study rendered it (same resolution chain, encoder and byte
length for real and synthetic), the assignment token stays in server state, and the page
shows only the reviewer's own progress.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import gradio as gr

from polyp_core.review import desk
from polyp_core.review.studies import list_studies
from studio_ui.access import Access
from studio_ui.services import Studio, shown_errors

HISTOLOGY = ("AD", "SSA", "HP", "unsure")

# R / S choose the verdict, 1 / 2 / 3 rate the quality and submit; 7-0 choose the histology.
KEYBOARD_JS = """
<script>
document.addEventListener('keydown', (event) => {
  const tag = (document.activeElement && document.activeElement.tagName) || '';
  if (tag === 'INPUT' || tag === 'TEXTAREA' || event.ctrlKey || event.metaKey || event.altKey) return;
  const keys = {r: 'rv-real', s: 'rv-synthetic', '1': 'rv-good', '2': 'rv-moderate', '3': 'rv-poor',
                '7': 'rv-h-AD', '8': 'rv-h-SSA', '9': 'rv-h-HP', '0': 'rv-h-unsure'};
  const id = keys[event.key.toLowerCase()];
  const button = id && document.getElementById(id);
  if (button && button.offsetParent !== null) { event.preventDefault(); button.click(); }
});
</script>
"""


def _empty() -> dict:
    return {"study": None, "token": None, "verdict": None, "histology": None, "shown": None}


class ReviewDesk:
    def __init__(self, studio: Studio, scratch: Path):
        self.studio = studio
        self.scratch = scratch  # inside this instance's UI cache

    def _served_file(self, data: bytes) -> str:
        """The study's bytes as a file Gradio serves unchanged (a PIL image would be re-encoded
        by Gradio, and its byte count would differ by source again)."""
        folder = self.scratch / hashlib.sha256(data).hexdigest()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "image.jpg"
        if not path.is_file():
            path.write_bytes(data)
        return str(path)

    @shown_errors
    def studies(self, person):  # noqa: ANN001
        infos = [s for s in list_studies(self.studio.db, person) if s.status == "open"]
        choices = [(f"{s.name} ({s.rated}/{s.assigned} rated)", s.name) for s in infos]
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def _show(self, person, state: dict):  # noqa: ANN001
        """The next unrated image of the study (where the reviewer left off)."""
        study = state["study"]
        infos = {s.name: s for s in list_studies(self.studio.db, person)}
        info = infos.get(study)
        progress = f"{info.rated} of {info.assigned} rated" if info else ""
        item = desk.next_unrated(self.studio.db, person, study) if study else None
        state = {**_empty(), "study": study}
        ask = bool(info and info.ask_histology)
        if item is None:
            done = f"**{study}**: all {info.assigned} images rated. Thank you." if info else \
                "Choose a study."
            return None, done, state, gr.update(visible=ask), "No verdict chosen"
        image = self._served_file(desk.image_for(self.studio.db, self.studio.workspace, person,
                                                 item.token))
        state.update(token=item.token, shown=time.monotonic())
        return image, f"**{study}** · {progress}", state, gr.update(visible=ask, value=None), \
            "No verdict chosen"

    @shown_errors
    def open_study(self, person, study: str | None, state: dict):  # noqa: ANN001
        state = {**(state or _empty()), "study": study}
        return self._show(person, state)

    def choose(self, verdict: str, state: dict):
        if not state or not state.get("token"):
            raise gr.Error("No image to rate: choose a study.")
        return {**state, "verdict": verdict}, f"Verdict: **{verdict}** — now rate the quality (1/2/3)"

    def choose_histology(self, histology: str | None, state: dict):
        return {**(state or _empty()), "histology": histology}

    @shown_errors
    def rate(self, person, quality: str, state: dict):  # noqa: ANN001
        if not state or not state.get("token"):
            raise gr.Error("No image to rate: choose a study.")
        if not state.get("verdict"):
            raise gr.Error("Choose real (R) or synthetic (S) first.")
        seconds = min(time.monotonic() - state["shown"], 3600.0) if state.get("shown") else None
        desk.rate(self.studio.db, person, state["token"], state["verdict"], quality,
                  state.get("histology"), seconds)
        return self._show(person, state)


def build_review_tab(studio: Studio, access: Access) -> dict:
    desk_ = ReviewDesk(studio, access.cache_dir / "review")
    state = gr.State(_empty())
    with gr.Row():
        # custom values reach the engine, which answers only for the reviewer's own studies
        study = gr.Dropdown([], label="Study", scale=3, allow_custom_value=True)
        start = gr.Button("Start / resume", variant="primary", scale=1)
    status = gr.Markdown()
    image = gr.Image(label="Image", type="filepath", interactive=False, height=512,
                     buttons=[], elem_id="rv-image")
    choice = gr.Markdown("No verdict chosen", elem_id="rv-choice")
    with gr.Row():
        real = gr.Button("Real (R)", elem_id="rv-real")
        synthetic = gr.Button("Synthetic (S)", elem_id="rv-synthetic")
    histology = gr.Radio(list(HISTOLOGY), label="Histology (7 AD · 8 SSA · 9 HP · 0 unsure)",
                         visible=False, elem_id="rv-histology")
    with gr.Row(visible=False):  # keyboard targets for the histology radio
        hidden = {h: gr.Button(h, elem_id=f"rv-h-{h}") for h in HISTOLOGY}
    with gr.Row():
        quality = {q: gr.Button(f"{q.capitalize()} ({k})", elem_id=f"rv-{q}", variant="secondary")
                   for q, k in (("good", 1), ("moderate", 2), ("poor", 3))}
    gr.Markdown("Keys: **R** real · **S** synthetic, then **1** good · **2** moderate · "
                "**3** poor submits and shows the next image.")
    shown = [image, status, state, histology, choice]
    # every signed-in account may review its own queue; the engine answers only for its own tokens
    on = lambda trigger, fn, **io: access.on(trigger, fn, "reviewer", **io)  # noqa: E731
    on(start.click, desk_.open_study, inputs=[study, state], outputs=shown, api_name="open_study")
    for verdict, button in (("real", real), ("synthetic", synthetic)):
        on(button.click, lambda s, v=verdict: desk_.choose(v, s), inputs=state,
           outputs=[state, choice], api_name=f"choose_{verdict}")
    on(histology.change, desk_.choose_histology, inputs=[histology, state], outputs=state)
    for name, button in hidden.items():
        on(button.click, lambda s, n=name: (desk_.choose_histology(n, s), n), inputs=state,
           outputs=[state, histology])
    for q, button in quality.items():
        on(button.click, lambda person, s, q=q: desk_.rate(person, q, s), inputs=state,
           outputs=shown, api_name=f"rate_{q}")
    return {"study": study, "refresh": desk_.studies}
