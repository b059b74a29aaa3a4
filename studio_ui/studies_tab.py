"""Studies (admins): create and close blind studies, see statistics and agreement."""

from __future__ import annotations

import gradio as gr

from polyp_core.review import desk
from polyp_core.review.stats import study_statistics
from polyp_core.review.studies import (RealPool, StudySpec, SyntheticPool, close_study, create_study,
                                      list_studies)
from review_db import queries
from studio_ui.access import Access
from studio_ui.services import Studio, shown_errors


class StudyDesk:
    def __init__(self, studio: Studio):
        self.studio = studio

    def reviewers(self) -> list[str]:
        with self.studio.db.session() as session:
            return [r.name for r in queries.list_reviewers(session)]

    def generators(self) -> list[str]:
        with self.studio.db.session() as session:
            return sorted({i.provenance.generator for i in queries.synthetic_images(session)})

    @shown_errors
    def table(self, person):  # noqa: ANN001
        infos = list_studies(self.studio.db, person)
        rows = [[s.name, s.status, f"{s.rated}/{s.assigned}", ", ".join(s.reviewers),
                 "yes" if s.ask_histology else "no"] for s in infos]
        return gr.update(value=rows), gr.update(choices=[s.name for s in infos],
                                                value=infos[-1].name if infos else None)

    def choices(self):
        return (gr.update(choices=self.studio.workspace.datasets()),
                gr.update(choices=self.generators()), gr.update(choices=self.reviewers()))

    @shown_errors
    def create(self, person, name, dataset, n_real, generator, n_synthetic, reviewers, overlap,
               histology, seed):  # noqa: ANN001
        pools = []
        if dataset and int(n_real or 0) > 0:
            pools.append(RealPool(dataset, int(n_real), split="train"))
        if int(n_synthetic or 0) > 0:
            pools.append(SyntheticPool(int(n_synthetic), generator=generator or None))
        spec = StudySpec(name=(name or "").strip(), pools=tuple(pools),
                         reviewers=tuple(reviewers or ()), overlap=int(overlap),
                         ask_histology=bool(histology), seed=int(seed or 0))
        create_study(self.studio.db, self.studio.workspace, person, spec)
        return f"Study **{spec.name}** created: {sum(p.n for p in pools)} images, " \
               f"{len(spec.reviewers)} reviewers, {spec.overlap} rating(s) per image."

    @shown_errors
    def close(self, person, name):  # noqa: ANN001
        if not name:
            raise gr.Error("Choose a study.")
        close_study(self.studio.db, person, name)
        return f"Study **{name}** closed; the answer key is now visible."

    @shown_errors
    def statistics(self, person, name):  # noqa: ANN001
        if not name:
            return "", [], [], []
        try:
            records = desk.rating_records(self.studio.db, person, name)
        except Exception as exc:  # open study with a hidden key
            return f"{exc}", [], [], []
        stats = study_statistics(records)
        fleiss = stats["fleiss_verdict"]
        kripp = stats["krippendorff_quality"]
        summary = (f"**{name}** · {stats['n_rated']} of {stats['n_assignments']} rated · Fleiss' κ "
                   f"(real/synthetic) {fleiss.get('kappa', float('nan')):.3f} · Krippendorff's α "
                   f"(quality, ordinal) {kripp.get('alpha', float('nan')):.3f}")
        verdicts = [[who, m["n"], f"{m['accuracy']['value']:.3f}",
                     f"{m['recall']['value']:.3f}", f"{m['specificity']['value']:.3f}",
                     f"{m['p_better_than_chance']:.3g}"]
                    for who, m in stats["verdicts_real_positive"].items()]
        quality = [[row["source"], row["good"], row["moderate"], row["poor"], row["n"]]
                   for row in stats["quality_by_source"]]
        pairs = [[p["a"], p["b"], p["n"], f"{p['kappa']:.3f}" if p["kappa"] == p["kappa"] else "-"]
                 for p in stats["cohen_verdict"]]
        return summary, verdicts, quality, pairs


def build_studies_tab(studio: Studio, access: Access) -> dict:
    desk_ = StudyDesk(studio)
    table = gr.Dataframe(headers=["study", "status", "rated", "reviewers", "histology"],
                         label="Studies", interactive=False)
    with gr.Accordion("New study", open=False):
        with gr.Row():
            name = gr.Textbox(label="Name")
            seed = gr.Number(0, label="Seed (draw and order)", precision=0)
        with gr.Row():
            dataset = gr.Dropdown([], label="Real images from data set (training split)")
            n_real = gr.Number(10, label="Real images", precision=0)
            generator = gr.Dropdown([], label="Synthetic images from generator (empty: any)")
            n_syn = gr.Number(10, label="Synthetic images", precision=0)
        with gr.Row():
            reviewers = gr.Dropdown([], multiselect=True, label="Reviewers")
            overlap = gr.Number(1, label="Ratings per image", precision=0)
            histology = gr.Checkbox(False, label="Ask histology")
        create = gr.Button("Create study", variant="primary")
    message = gr.Markdown()
    with gr.Row():
        chosen = gr.Dropdown([], label="Study")
        close = gr.Button("Close study")
        stats_btn = gr.Button("Statistics")
    summary = gr.Markdown()
    verdicts = gr.Dataframe(headers=["reviewer", "n", "accuracy", "recall (real)", "specificity",
                                     "p (better than chance)"],
                            label="Real vs synthetic per reviewer (positive: real)", interactive=False)
    quality = gr.Dataframe(headers=["source", "good", "moderate", "poor", "n"],
                           label="Quality by source", interactive=False)
    pairs = gr.Dataframe(headers=["reviewer a", "reviewer b", "n", "Cohen's κ"],
                         label="Pairwise agreement on the verdict", interactive=False)
    on = lambda trigger, fn, **io: access.on(trigger, fn, "admin", **io)  # noqa: E731
    created = on(create.click, desk_.create, inputs=[name, dataset, n_real, generator, n_syn,
                                                     reviewers, overlap, histology, seed],
                 outputs=message, api_name="create_study")
    on(created.then, desk_.table, outputs=[table, chosen])
    on(on(close.click, desk_.close, inputs=chosen, outputs=message).then, desk_.table,
       outputs=[table, chosen])
    on(stats_btn.click, desk_.statistics, inputs=chosen, outputs=[summary, verdicts, quality, pairs],
       api_name="study_statistics")

    def refresh(person):  # noqa: ANN001
        return (*desk_.table(person), *desk_.choices())

    return {"refresh": refresh, "outputs": [table, chosen, dataset, generator, reviewers]}
