"""Retrain & compare: the experiment form, its job's progress, and the dashboard."""

from __future__ import annotations

import gradio as gr

from polyp_core.classify import (ClassifierTrainConfig, ExperimentConfig, SelectionPolicy,
                                 compare_runs, parse_mix, run_experiment)
from polyp_core.classify.figures import (confusion_figure, delta_bars, evaluation_line,
                                         metric_table)
from polyp_core.classify.experiment import plan_experiment
from polyp_core.data.labels import SCHEMES
from polyp_core.demo import DEMO_DATASET, DEMO_NOTE
from polyp_core.jobs import job_status
from polyp_core.runs import load_run
from polyp_core.validation import number, whole
from review_db import queries
from studio_ui.access import Access
from studio_ui.services import Studio, job_line, poll_run_job, shown_errors, ticking, watch_active


class RetrainDesk:
    def __init__(self, studio: Studio):
        self.studio = studio

    def runs(self) -> list[tuple[str, str]]:
        with self.studio.db.session() as session:
            return [(f"{r.id} · {r.config.get('name') or r.config.get('dataset')}", r.id)
                    for r in queries.list_runs(session, "retrain")]

    @shown_errors
    def start(self, person, dataset, scheme, backbone, size, imbalance, seeds, epochs, freeze,
              min_quality, min_reviewers, verdict, unrated, mix, max_ratio, name,
              allow_small=False, probe=False, folds="auto", seen_train=False,  # noqa: ANN001
              inner_valid=0.15, refit=False):
        seed_list = tuple(whole(s.strip(), "seeds") for s in str(seeds).split(",") if s.strip())
        config = ExperimentConfig(
            dataset=dataset, scheme=scheme or None, seeds=seed_list, name=name or None,
            train=ClassifierTrainConfig(backbone=backbone, image_size=whole(size, "image_size"),
                                        imbalance=imbalance, epochs=whole(epochs, "epochs"),
                                        freeze_backbone=bool(freeze)),
            policy=SelectionPolicy(min_quality=min_quality or None,
                                   min_reviewers=whole(min_reviewers, "min_reviewers"),
                                   verdict=verdict, unrated=unrated, target_mix=parse_mix(mix),
                                   max_ratio=number(max_ratio, "max_ratio") if max_ratio else None),
            allow_small_test=bool(allow_small), linear_probe=bool(probe),
            folds=None if str(folds).strip().lower() in ("auto", "") else whole(folds, "folds"),
            seen_groups_train=bool(seen_train),
            inner_valid=number(inner_valid, "inner_valid"), refit=bool(refit))
        db, workspace = self.studio.db, self.studio.workspace
        # planned before anything is queued: folds, too few test lesions, leaking generators
        # and an empty selection are refused now
        plan_experiment(db, workspace, config)
        job = self.studio.jobs.submit(
            "retrain", config.to_json(),
            lambda progress, cancel: run_experiment(db, workspace, config, progress, cancel).run_id,
            owner_id=person.id)
        return job, job_line(job_status(db, job)), ticking(job)

    def poll(self, job: str | None):
        """Progress of the running job; when it is done, its run is shown."""
        return poll_run_job(self.studio.db, job, self.runs)

    def cancel(self, job: str | None) -> str:
        if not job or not self.studio.jobs.cancel(job):
            return "No running job of this session."
        return "Cancelling at the next training step ..."

    @shown_errors
    def show(self, run_id: str | None):
        if not run_id:
            return gr.update(value=[]), None, None, "", None
        run = load_run(self.studio.db, run_id)
        results = run["results"]
        report = run["folder"] / "report.html"
        header, rows = metric_table(results)
        warnings = "\n".join(f"- {'**regression**' if w['beyond_noise'] else 'warning'}: {w['text']}"
                             for w in results.get("warnings", []))
        selection = results.get("selection", {}).get("counts")
        text = (f"**{run_id}** · scheme {results['scheme']} · "
                f"{results['arms'][next(iter(results['arms']))]['summary']['macro_f1']['n']} seed(s)")
        per_fold = results.get("selection", {}).get("per_fold")
        if per_fold:
            text += " · synthetic images selected per fold: " + ", ".join(
                str(sum(c["selected"].values())) for c in per_fold)
        elif selection:
            text += f" · synthetic images selected per class: {selection['selected']}"
        text += ("\n\n" + warnings) if warnings else ("\n\nNo class lost recall or F1 beyond "
                                                        "its 95% interval.")
        design = results.get("test_groups")
        if design:
            cluster = results.get("delta_cluster") or next(iter(results["uncertainty"].values()))
            text += (f"\n\nEvaluation: {evaluation_line(results)}. 95% intervals: cluster "
                     f"bootstrap over {cluster['groups']} test units "
                     f"({design['unit']}) with {cluster['seeds']} seed(s). Design (groups / "
                     "images per class):\n\n| part | " + " | ".join(results["classes"]) +
                     " |\n|---|" + "---|" * len(results["classes"]) + "\n" +
                     "\n".join(f"| {split} | " + " | ".join(
                         f"{v['groups']} / {v['images']}" for v in table.values()) + " |"
                         for split, table in design["table"].items()))
            text += "".join(f"\n- design: {line}" for line in design.get("warnings", []))
        return (gr.update(value=rows, headers=header), delta_bars(results),
                confusion_figure(results), text, str(report) if report.is_file() else None)

    @shown_errors
    def compare(self, a: str | None, b: str | None) -> str:
        if not a or not b:
            return "Choose two runs."
        diff = compare_runs(self.studio.db, a, b)
        lines = [f"**{a}** → **{b}**",
                 f"- settings changed: {diff['config'] or 'none'}",
                 f"- synthetic images: {len(diff['images']['only_in_a'])} only in the first, "
                 f"{len(diff['images']['only_in_b'])} only in the second, {diff['images']['shared']} shared",
                 f"- ratings changed between them: {'yes' if diff['ratings_changed'] else 'no'}"]
        for arm, row in diff["metrics"].items():
            lines.append(f"- {arm}: Δ macro-F1 {row['macro_f1']:+.3f}, Δ balanced accuracy "
                         f"{row['balanced_accuracy']:+.3f}")
        return "\n".join(lines)


def build_retrain_tab(studio: Studio, access: Access) -> dict:
    desk = RetrainDesk(studio)
    job = gr.State(None)
    note = gr.Markdown(DEMO_NOTE, visible=False)
    with gr.Row():
        dataset = gr.Dropdown([], label="Data set", allow_custom_value=True)  # filled at admin sign-in
        scheme = gr.Dropdown(["", *SCHEMES], value="", label="Label scheme (empty: the data set's)")
        backbone = gr.Dropdown(["efficientnet_lite0", "efficientnet_b0"], value="efficientnet_lite0",
                               label="Backbone")
        size = gr.Radio([128, 224], value=128, label="Image size")
    with gr.Row():
        imbalance = gr.Radio(["none", "sampler", "loss"], value="sampler", label="Class imbalance")
        seeds = gr.Textbox("0,1,2", label="Seeds")
        epochs = gr.Number(10, label="Epochs", precision=0)
        freeze = gr.Checkbox(False, label="Train the head only (frozen backbone)")
        allow_small = gr.Checkbox(False, label="Run even if a test class has fewer than 3 "
                                               "patients/lesions")
        probe = gr.Checkbox(True, label="Linear probe beside the arms (logistic regression on "
                                        "frozen features)")
    with gr.Row():
        folds = gr.Dropdown(["auto", "0", "3", "5", "10"], value="auto", allow_custom_value=True,
                            label="Grouped cross-validation folds (auto: the most, up to 10, that "
                                  "keep 3 patients/lesions of each class in every test fold; 0: "
                                  "the data set's fixed split)")
        inner_valid = gr.Number(0.15, label="With folds: share of each fold's training groups "
                                            "networks stop early on (0: fixed epochs)")
        refit = gr.Checkbox(False, label="With folds: epochs by inner CV, then train on the "
                                         "whole training part")
        seen_train = gr.Checkbox(False, label="With folds: groups a generator learned from "
                                              "train in every fold (only unseen groups tested)")
    with gr.Accordion("Which synthetic images join (selection policy)", open=True):
        with gr.Row():
            min_quality = gr.Dropdown(["", "moderate", "good"], value="", label="Rated at least")
            min_reviewers = gr.Number(1, label="... by at least k reviewers", precision=0)
            verdict = gr.Dropdown(["any", "not_majority_synthetic", "majority_real", "all_real"],
                                  value="any", label="Verdict rule")
            unrated = gr.Radio(["include", "exclude"], value="include", label="Unrated images")
        with gr.Row():
            mix = gr.Textbox("", label="Target class mix ('balance' or AD=0.4,SSA=0.3,HP=0.3)")
            max_ratio = gr.Number(0, label="Max synthetic per real image (0: no cap)")
            name = gr.Textbox("", label="Run name")
    with gr.Row():
        start = gr.Button("Train baseline and augmented", variant="primary")
        cancel = gr.Button("Cancel")
    status = gr.Markdown()
    with gr.Row():
        run = gr.Dropdown([], label="Run")  # filled at admin sign-in
        other = gr.Dropdown([], label="Compare with")
        compare = gr.Button("Compare runs")
    summary = gr.Markdown()
    table = gr.Dataframe(label="Metrics on the real test images: 95% CI over patients/lesions "
                               "and seeds, and mean ± std [CI] over seeds alone",
                         interactive=False, wrap=True)
    with gr.Row():
        deltas = gr.Plot(label="Per-class change")
        confusion = gr.Plot(label="Confusion matrices")
    report = gr.File(label="The run's report (self-contained HTML: methods, design, results "
                           "with CIs, confusion matrices)", interactive=False)
    diff = gr.Markdown()
    timer = gr.Timer(1.0, active=False)
    on = lambda trigger, fn, **io: access.on(trigger, fn, "admin", **io)  # noqa: E731
    on(start.click, desk.start, inputs=[dataset, scheme, backbone, size, imbalance, seeds, epochs,
                                        freeze, min_quality, min_reviewers, verdict, unrated, mix,
                                        max_ratio, name, allow_small, probe, folds, seen_train,
                                        inner_valid, refit],
       outputs=[job, status, timer],
       api_name="start_retrain")
    on(timer.tick, desk.poll, inputs=job, outputs=[status, run, job, timer],
       api_name="retrain_progress")
    on(cancel.click, desk.cancel, inputs=job, outputs=status)
    on(run.change, desk.show, inputs=run, outputs=[table, deltas, confusion, summary, report],
       api_name="show_run")
    on(compare.click, desk.compare, inputs=[run, other], outputs=diff)

    def refresh(_person):  # noqa: ANN001
        runs = desk.runs()
        names = studio.workspace.datasets()
        return (gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=runs, value=runs[0][1] if runs else None), gr.update(choices=runs),
                gr.update(visible=DEMO_DATASET in names), *watch_active(studio.db, "retrain"))

    return {"refresh": refresh, "outputs": [dataset, run, other, note, job, status, timer]}
