"""The blind review queue: one large image, a five-point real/synthetic confidence then
good/moderate/poor, keys too.

Nothing sent to the browser names the image's origin: the picture is the engine's blind
JPEG, served byte for byte as the study rendered it (same resolution chain, encoder and byte
length for real and synthetic), the assignment token stays in server state, and the page
shows only the reviewer's own progress.
"""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path

import gradio as gr

from polyp_core.review.accounts import Person
from polyp_core.workflows import review
from polyp_core.workflows import study as study_workflow
from polyp_core.vocabulary import CONFIDENCE_LABELS, CONFIDENCES, HISTOLOGY_GUESSES
from studio_ui.access import Access
from studio_ui.services import Studio, shown_errors

HISTOLOGY = HISTOLOGY_GUESSES
NO_ANSWER = "No answer chosen"

# 1-5 choose the confidence (1 definitely real ... 5 definitely synthetic); G / M / P rate the
# quality and submit (in a study that shows masks, Q / W / E then rate the mask and submit);
# 7-0 choose the histology.
KEYBOARD_JS = """
<script>
document.addEventListener('keydown', (event) => {
  const tag = (document.activeElement && document.activeElement.tagName) || '';
  if (tag === 'INPUT' || tag === 'TEXTAREA' || event.ctrlKey || event.metaKey || event.altKey) return;
  const keys = {'1': 'rv-c1', '2': 'rv-c2', '3': 'rv-c3', '4': 'rv-c4', '5': 'rv-c5',
                g: 'rv-good', m: 'rv-moderate', p: 'rv-poor',
                q: 'rv-mask-good', w: 'rv-mask-moderate', e: 'rv-mask-poor',
                '7': 'rv-h-AD', '8': 'rv-h-SSA', '9': 'rv-h-HP', '0': 'rv-h-unsure'};
  const id = keys[event.key.toLowerCase()];
  const button = id && document.getElementById(id);
  if (button && button.offsetParent !== null) { event.preventDefault(); button.click(); }
});
</script>
"""


def _empty() -> dict:
    return {"study": None, "token": None, "confidence": None, "histology": None, "shown": None,
            "quality": None, "mask": False}


class ReviewDesk:
    def __init__(self, studio: Studio, scratch: Path) -> None:
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
    def studies(self, person: Person) -> dict:
        infos = [s for s in study_workflow.studies(self.studio.db, person) if s.status == "open"]
        choices = [(f"{s.name} ({s.rated}/{s.assigned} rated)", s.name) for s in infos]
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def _show(self, person: Person, state: dict) -> tuple:
        """The next unrated image of the study (where the reviewer left off)."""
        name = state["study"]
        infos = {s.name: s for s in study_workflow.studies(self.studio.db, person)}
        info = infos.get(name)
        progress = f"{info.rated} of {info.assigned} rated" if info else ""
        item = review.next_unrated(self.studio.db, person, name) if name else None
        # the page only shows the mask buttons; the desk decides from the study what it asks
        state = {**_empty(), "study": name, "mask": bool(info and info.show_mask)}
        ask = bool(info and info.ask_histology)
        masks = gr.update(visible=state["mask"])
        if item is None:
            done = f"**{name}**: all {info.assigned} images rated. Thank you." if info else \
                "Choose a study."
            return None, done, state, gr.update(visible=ask), NO_ANSWER, masks
        image = self._served_file(review.image(self.studio.db, self.studio.workspace, person,
                                               item.token))
        state.update(token=item.token, shown=time.monotonic())
        return image, f"**{name}** · {progress}", state, gr.update(visible=ask, value=None), \
            NO_ANSWER, masks

    @shown_errors
    def open_study(self, person: Person, study: str | None, state: dict) -> tuple:
        state = {**(state or _empty()), "study": study}
        return self._show(person, state)

    def choose(self, confidence: int, state: dict) -> tuple:
        if not state or not state.get("token"):
            raise gr.Error("No image to rate: choose a study.")
        return ({**state, "confidence": confidence},
                f"Answer: **{confidence} · {CONFIDENCE_LABELS[confidence]}** — now rate the "
                "quality (G/M/P)")

    def choose_histology(self, histology: str | None, state: dict) -> dict:
        return {**(state or _empty()), "histology": histology}

    @shown_errors
    def rate(self, person: Person, quality: str, state: dict) -> tuple:
        """The image quality: submits, or in a study that shows masks waits for the mask's."""
        if not state or not state.get("token"):
            raise gr.Error("No image to rate: choose a study.")
        if not state.get("confidence"):
            raise gr.Error("Choose how real it looks first (1 definitely real ... 5 definitely "
                           "synthetic).")
        if state.get("mask"):
            return (gr.update(), gr.update(), {**state, "quality": quality}, gr.update(),
                    f"Answer: **{state['confidence']} · {CONFIDENCE_LABELS[state['confidence']]}**"
                    f", image **{quality}** — now rate the mask (Q good · W moderate · E poor)",
                    gr.update())
        return self._submit(person, state, quality, None)

    @shown_errors
    def rate_mask(self, person: Person, mask_quality: str, state: dict) -> tuple:
        """The mask's quality: the third answer, which submits."""
        if not state or not state.get("token"):
            raise gr.Error("No image to rate: choose a study.")
        if not state.get("confidence") or not state.get("quality"):
            raise gr.Error("Rate how real it looks (1-5) and the image (G/M/P) first.")
        return self._submit(person, state, state["quality"], mask_quality)

    def _submit(self, person: Person, state: dict, quality: str, mask_quality: str | None) -> tuple:
        # server-side: from the moment the image was served to this rating
        seconds = min(time.monotonic() - state["shown"], 3600.0) if state.get("shown") else None
        review.rate(self.studio.db, person, state["token"], None, quality,
                    state.get("histology"), seconds, confidence=state["confidence"],
                    mask_quality=mask_quality)
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
    choice = gr.Markdown(NO_ANSWER, elem_id="rv-choice")
    with gr.Row():
        answers = {c: gr.Button(f"{CONFIDENCE_LABELS[c].capitalize()} ({c})", elem_id=f"rv-c{c}")
                   for c in CONFIDENCES}
    histology = gr.Radio(list(HISTOLOGY), label="Histology (7 AD · 8 SSA · 9 HP · 0 unsure)",
                         visible=False, elem_id="rv-histology")
    with gr.Row(visible=False):  # keyboard targets for the histology radio
        hidden = {h: gr.Button(h, elem_id=f"rv-h-{h}") for h in HISTOLOGY}
    with gr.Row():
        quality = {q: gr.Button(f"{q.capitalize()} ({k})", elem_id=f"rv-{q}", variant="secondary")
                   for q, k in (("good", "G"), ("moderate", "M"), ("poor", "P"))}
    with gr.Row(visible=False) as mask_row:  # studies that show masks: the mask's quality
        mask_quality = {q: gr.Button(f"Mask {q} ({k})", elem_id=f"rv-mask-{q}",
                                     variant="secondary")
                        for q, k in (("good", "Q"), ("moderate", "W"), ("poor", "E"))}
    gr.Markdown("Keys: **1** definitely real · **2** probably real · **3** unsure · **4** probably "
                "synthetic · **5** definitely synthetic, then **G** good · **M** moderate · "
                "**P** poor submits and shows the next image (where the study shows a mask, "
                "**Q** good · **W** moderate · **E** poor for the mask then submits).")
    shown = [image, status, state, histology, choice, mask_row]
    # every signed-in account may review its own queue; the engine answers only for its own tokens
    on = functools.partial(access.on, role="reviewer")  # every event of this tab: reviewers
    on(start.click, desk_.open_study, inputs=[study, state], outputs=shown, api_name="open_study")
    for confidence, button in answers.items():
        on(button.click, lambda s, c=confidence: desk_.choose(c, s), inputs=state,
           outputs=[state, choice], api_name=f"choose_{confidence}")
    on(histology.change, desk_.choose_histology, inputs=[histology, state], outputs=state)
    for name, button in hidden.items():
        on(button.click, lambda s, n=name: (desk_.choose_histology(n, s), n), inputs=state,
           outputs=[state, histology], api_name=f"histology_{name.lower()}")
    for q, button in quality.items():
        on(button.click, lambda person, s, q=q: desk_.rate(person, q, s), inputs=state,
           outputs=shown, api_name=f"rate_{q}")
    for q, button in mask_quality.items():
        on(button.click, lambda person, s, q=q: desk_.rate_mask(person, q, s), inputs=state,
           outputs=shown, api_name=f"rate_mask_{q}")
    return {"study": study, "refresh": desk_.studies}
