"""Studies (admins): create and close blind studies, see statistics and agreement."""

from __future__ import annotations

import functools

import gradio as gr

from polyp_core.review.accounts import Person
from polyp_core.review.leaks import DESCRIPTIONS, LeakReport
from polyp_core.review.reader import forest_figure, roc_figure, summary_lines
from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool, parse_calibration
from polyp_core.validation import number, whole
from polyp_core.workflows import accounts as accounts_workflow
from polyp_core.workflows import pool as pool_workflow
from polyp_core.workflows import study as study_workflow
from studio_ui.access import Access
from studio_ui.services import Num, Studio, Text, shown_errors

STUDY = study_workflow.STUDY  # the widgets start where `study create`'s options do
NO_MASK = "no mask"


class StudyDesk:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def reviewers(self, person: Person) -> list[str]:
        return accounts_workflow.reviewer_names(self.studio.db, person)

    def generators(self, person: Person) -> list[str]:
        return pool_workflow.generators(self.studio.db, person)

    @shown_errors
    def table(self, person: Person) -> tuple:
        infos = study_workflow.studies(self.studio.db, person)
        rows = [[s.name, s.status, f"{s.rated}/{s.assigned}", ", ".join(s.reviewers),
                 "yes" if s.ask_histology else "no", s.audit] for s in infos]
        return gr.update(value=rows), gr.update(choices=[s.name for s in infos],
                                                value=infos[-1].name if infos else None)

    def choices(self, person: Person) -> tuple:
        return (gr.update(choices=self.studio.workspace.datasets()),
                gr.update(choices=self.generators(person)),
                gr.update(choices=self.reviewers(person)))

    @staticmethod
    def _spec(name: Text, dataset: Text, n_real: Num, generator: Text, n_synthetic: Num,
              reviewers: list[str] | None, overlap: Num, histology: bool, seed: Num,
              working: Text, repeats: Num, calibration: Text, show_mask: Text = None,
              override: Text = None) -> StudySpec:
        pools = []
        if dataset and whole(n_real or 0, "n_real") > 0:
            pools.append(RealPool(dataset, whole(n_real, "n_real"), split="train"))
        if whole(n_synthetic or 0, "n_synthetic") > 0:
            pools.append(SyntheticPool(whole(n_synthetic, "n_synthetic"), generator=generator or None))
        return study_workflow.study_request(
            name, tuple(pools), tuple(reviewers or ()),
            {"overlap": overlap, "ask_histology": histology, "seed": seed,
             "working_resolution": working, "override_audit": override, "repeats": repeats,
             "show_mask": None if show_mask == NO_MASK else show_mask},
            _calibration(calibration))

    @shown_errors
    def preview(self, person: Person, name: Text, dataset: Text, n_real: Num, generator: Text,
                n_synthetic: Num, reviewers: list[str] | None, overlap: Num,
                histology: bool, seed: Num, working: Text, repeats: Num, calibration: Text,
                show_mask: Text, target_auc: Num) -> str:
        """Native resolutions of the pools and the serving chain, before creating; and the
        power of the MRMC analysis to show the target AUC against 0.5."""
        spec = self._spec(name or "preview", dataset, n_real, generator, n_synthetic,
                          reviewers or ("-",), overlap, histology, seed, working, repeats,
                          calibration, show_mask)
        lines = study_workflow.plan(self.studio.db, self.studio.workspace, person, spec).lines()
        if target_auc and len(spec.reviewers) >= 2:
            from polyp_core.review.power import study_power

            n_real = sum(p.n for p in spec.pools if isinstance(p, RealPool))
            n_syn = sum(p.n for p in spec.pools if isinstance(p, SyntheticPool))
            lines.append(study_power(number(target_auc, "target_auc"), len(spec.reviewers),
                                     n_real, n_syn).line())
            if spec.overlap < len(spec.reviewers):
                lines.append(f"the MRMC analysis needs every reader to rate every image: "
                             f"overlap {spec.overlap} of {len(spec.reviewers)} leaves it few")
        return "\n".join(f"- {line}" for line in lines)

    @shown_errors
    def create(self, person: Person, name: Text, dataset: Text, n_real: Num, generator: Text,
               n_synthetic: Num, reviewers: list[str] | None, overlap: Num,
               histology: bool, seed: Num, working: Text, repeats: Num, calibration: Text,
               show_mask: Text, override: Text) -> str:
        spec = self._spec(name, dataset, n_real, generator, n_synthetic, reviewers, overlap,
                          histology, seed, working, repeats, calibration, show_mask, override)
        study_workflow.create(self.studio.db, self.studio.workspace, person, spec)
        state = study_workflow.integrity(self.studio.db, person, spec.name)["audit_state"]
        return (f"Study **{spec.name}** created: {sum(p.n for p in spec.pools)} images, "
                f"{len(spec.reviewers)} reviewers, {spec.overlap} rating(s) per image; "
                f"leak audit **{state}**" + (" — reviewers do not see it until it passes or is "
                                             "opened with a reason." if "held" in state else "."))

    @shown_errors
    def integrity(self, person: Person, name: Text) -> tuple:
        """The chosen study's leak audit (table) and what its results rest on."""
        if not name:
            return "", []
        info = study_workflow.integrity(self.studio.db, person, name)
        return info["summary"], _audit_rows(info["audit"])

    @shown_errors
    def audit(self, person: Person, name: Text) -> tuple:
        if not name:
            raise gr.Error("Choose a study.")
        study_workflow.audit(self.studio.db, self.studio.workspace, person, name)
        return self.integrity(person, name)

    @shown_errors
    def override(self, person: Person, name: Text, reason: Text) -> tuple:
        if not name:
            raise gr.Error("Choose a study.")
        study_workflow.override(self.studio.db, person, name, reason or "")
        return self.integrity(person, name)

    @shown_errors
    def close(self, person: Person, name: Text) -> str:
        if not name:
            raise gr.Error("Choose a study.")
        study_workflow.close(self.studio.db, person, name)
        return f"Study **{name}** closed; the answer key is now visible."

    @shown_errors
    def statistics(self, person: Person, name: Text) -> tuple:
        """The reader study: binary verdicts with the right chance, per-reader ROC, the OR
        analysis, pace, per-source tables and agreement (``study stats`` prints the same)."""
        empty = ("", [], [], [], [], [], None, None)
        if not name:
            return empty
        try:
            stats = study_workflow.statistics(self.studio.db, person, name)
        except Exception as exc:  # open study with a hidden key
            return (f"{exc}", *empty[1:])
        integrity = study_workflow.integrity(self.studio.db, person, name)["summary"]
        head = f"**{name}** · {stats['n_rated']} of {stats['n_assignments']} rated\n\n{integrity}"
        summary = head + "\n\n```\n" + "\n".join(summary_lines(stats)) + "\n```"
        def fmt(x: float) -> str:
            return f"{x:.3f}" if x == x else "-"
        def with_ci(v: float, lo: float, hi: float) -> str:
            return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"
        def roc(who: str) -> dict:
            return stats["reader_roc"].get(who, {})
        verdicts = [[who, m["n"], m["n_unsure"],
                     with_ci(roc(who).get("auc", float("nan")), roc(who).get("low", float("nan")),
                             roc(who).get("high", float("nan"))),
                     with_ci(m["balanced_accuracy"]["value"], m["balanced_accuracy"]["low"],
                             m["balanced_accuracy"]["high"]),
                     fmt(m["accuracy"]["value"]), f"{m['p_discrimination']:.3g}"]
                    for who, m in stats["verdicts_real_positive"].items()]
        quality = [[row["source"], row["good"], row["moderate"], row["poor"], row["n"]]
                   for row in stats["quality_by_source"]]
        pairs = [[p["a"], p["b"], p["n"], fmt(p["kappa"])] for p in stats["cohen_verdict"]]
        pace = [[who, m["n"], f"{m['median']:.1f}", f"{m['q1']:.1f}-{m['q3']:.1f}",
                 "too fast" if m["too_fast"] else ""] for who, m in stats["pace"].items()]
        sources = [[r["source"], r["class"], r["ratings"],
                    with_ci(r["called_synthetic"], r["called_synthetic_low"],
                            r["called_synthetic_high"]),
                    with_ci(r.get("auc_vs_real", float("nan")), r.get("auc_low", float("nan")),
                            r.get("auc_high", float("nan"))),
                    r["good"], r["moderate"], r["poor"]]
                   for r in stats["per_source"]]
        return (summary, verdicts, quality, pairs, pace, sources, roc_figure(stats),
                forest_figure(stats))


def _calibration(text: str | None) -> tuple:
    """``synthetic:gen@step-100:5, real:phantom:test:5`` as calibration pools."""
    return tuple(parse_calibration(part.strip()) for part in (text or "").split(",")
                 if part.strip())


def _audit_rows(audit: dict | None) -> list[list]:
    if not audit:
        return []
    report = LeakReport.from_json(audit)
    return [[c.name, f"{c.auc:.3f}", f"[{c.low:.3f}, {c.high:.3f}]",
             "LEAK" if c.leaks else ("ok" if c.gated else "reported"),
             DESCRIPTIONS.get(c.name, "")] for c in report.channels]


def build_studies_tab(studio: Studio, access: Access) -> dict:
    desk_ = StudyDesk(studio)
    table = gr.Dataframe(headers=["study", "status", "rated", "reviewers", "histology", "leak audit"],
                         label="Studies", interactive=False)
    with gr.Accordion("New study", open=False):
        with gr.Row():
            name = gr.Textbox(label="Name")
            seed = gr.Number(STUDY["seed"].default, label="Seed (draw and order)", precision=0)
        with gr.Row():
            dataset = gr.Dropdown([], label="Real images from data set (training split)",
                                  allow_custom_value=True)
            n_real = gr.Number(10, label="Real images", precision=0)
            generator = gr.Dropdown([], label="Synthetic images from generator (empty: any)",
                                    allow_custom_value=True)
            n_syn = gr.Number(10, label="Synthetic images", precision=0)
        with gr.Row():
            reviewers = gr.Dropdown([], multiselect=True, label="Reviewers",
                                    allow_custom_value=True)
            overlap = gr.Number(STUDY["overlap"].default, label="Ratings per image", precision=0)
            histology = gr.Checkbox(STUDY["ask_histology"].default, label="Ask histology")
            show_mask = gr.Dropdown([NO_MASK, *STUDY["show_mask"].choices],
                                    value=STUDY["show_mask"].default or NO_MASK,
                                    label="Show each image's mask (reviewers rate it too)")
        with gr.Row():
            repeats = gr.Number(STUDY["repeats"].default, label="Share of images shown twice (test-retest, 0-0.5)")
            calibration = gr.Textbox("", label="Calibration items (e.g. synthetic:gen@step-100:5"
                                               ", real:phantom:test:5; comma-separated)")
            target_auc = gr.Number(0.7, label="Preview: power to show this AUC against 0.5")
        with gr.Row():
            working = gr.Textbox(STUDY["working_resolution"].default, label="Working resolution (auto: the lowest native "
                                               "resolution of the sources; a number; native)")
            override = gr.Textbox(STUDY["override_audit"].default or "", label="Open even if the leak audit fails, because ... "
                                            "(recorded with the results)")
        plan = gr.Markdown()
        with gr.Row():
            preview = gr.Button("Preview resolutions and serving chain")
            create = gr.Button("Create study", variant="primary")
    message = gr.Markdown()
    with gr.Row():
        chosen = gr.Dropdown([], label="Study", allow_custom_value=True)  # the engine checks it
        close = gr.Button("Close study")
        stats_btn = gr.Button("Statistics")
        audit_btn = gr.Button("Audit for leaks")
    integrity = gr.Markdown(elem_id="study-integrity")
    audit_table = gr.Dataframe(headers=["channel", "AUC real vs synthetic", "95% CI (images)",
                                        "verdict", "what it is"],
                               label="Leak audit: does anything but the picture tell the sources "
                                     "apart? (AUC 0.5: no)", interactive=False, wrap=True)
    with gr.Row():
        reason = gr.Textbox("", label="Reason to open a study whose audit failed")
        override_btn = gr.Button("Open despite the audit", variant="stop")
    summary = gr.Markdown()
    with gr.Row():
        roc_plot = gr.Plot(label="Per-reader ROC")
        forest_plot = gr.Plot(label="Reader AUCs and the readers-together CI")
    verdicts = gr.Dataframe(headers=["reviewer", "n decisive", "unsure",
                                     "AUC (1-5 scale) [95% CI]", "balanced accuracy [95% CI]",
                                     "accuracy", "Fisher p"],
                            label="Real vs synthetic per reviewer (positive: real; chance: "
                                  "balanced accuracy 0.5, AUC 0.5)", interactive=False)
    sources = gr.Dataframe(headers=["source", "class", "ratings", "called synthetic [95% CI]",
                                    "AUC real vs it [95% CI]", "good", "moderate", "poor"],
                           label="Per generator, checkpoint and class", interactive=False)
    pace = gr.Dataframe(headers=["reviewer", "n", "median s", "IQR s", "flag"],
                        label="Pace: seconds from serving to rating (server clock)",
                        interactive=False)
    quality = gr.Dataframe(headers=["source", "good", "moderate", "poor", "n"],
                           label="Quality by source", interactive=False)
    pairs = gr.Dataframe(headers=["reviewer a", "reviewer b", "n", "Cohen's κ"],
                         label="Pairwise agreement on the verdict", interactive=False)
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
    form = [name, dataset, n_real, generator, n_syn, reviewers, overlap, histology, seed, working,
            repeats, calibration, show_mask]
    on(preview.click, desk_.preview, inputs=[*form, target_auc], outputs=plan,
       api_name="preview_study")
    created = on(create.click, desk_.create, inputs=[*form, override], outputs=message,
                 api_name="create_study")
    on(created.then, desk_.table, outputs=[table, chosen])
    on(on(close.click, desk_.close, inputs=chosen, outputs=message).then, desk_.table,
       outputs=[table, chosen])
    on(stats_btn.click, desk_.statistics, inputs=chosen,
       outputs=[summary, verdicts, quality, pairs, pace, sources, roc_plot, forest_plot],
       api_name="study_statistics")
    on(chosen.change, desk_.integrity, inputs=chosen, outputs=[integrity, audit_table])
    on(audit_btn.click, desk_.audit, inputs=chosen, outputs=[integrity, audit_table],
       api_name="audit_study")
    on(override_btn.click, desk_.override, inputs=[chosen, reason],
       outputs=[integrity, audit_table])

    def refresh(person: Person) -> tuple:
        return (*desk_.table(person), *desk_.choices(person))

    return {"refresh": refresh, "outputs": [table, chosen, dataset, generator, reviewers]}
