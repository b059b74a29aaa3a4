"""Retrain & compare: the experiment form, its job's progress, and the dashboard."""

from __future__ import annotations

import functools

import gradio as gr

from polyp_core.classify import compare_runs
from polyp_core.classify.figures import (confusion_figure, delta_bars, evaluation_line,
                                         metric_table)
from polyp_core.data.labels import SCHEMES
from polyp_core.demo import DEMO_DATASET, DEMO_NOTE
from polyp_core.jobs import job_status
from polyp_core.review.accounts import Person
from polyp_core.runs import load_run
from polyp_core.workflows import retrain
from studio_ui.access import Access
from studio_ui.services import (Num, Text, Studio, job_line, poll_run_job, shown_errors, shown_fields,
                                ticking, watch_active)


class RetrainDesk:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def runs(self, person: Person) -> list[tuple[str, str]]:
        return [(f"{r['id']} · {r['name']}", r["id"])
                for r in retrain.runs(self.studio.db, person)]

    @shown_errors
    def start(self, person: Person, dataset: Text, scheme: Text, backbone: Text, size: Num,
              imbalance: Text, seeds: Text, epochs: Num, freeze: bool,
              min_quality: Text, min_reviewers: Num, verdict: Text, unrated: Text, mix: Text,
              max_ratio: Num, name: Text,
              allow_small: bool = False, probe: bool = False, folds: Text = "auto",
              seen_train: bool = False,
              inner_valid: Num = 0.15, refit: bool = False, allow_unknown: bool = False,
              task: Text = "classification", synthetic_arm: bool = False,
              real_fractions: Text = "", against: Text = "", min_gate_iou: Num = 0,
              gated_arm: bool = False, min_mask_quality: Text = "",
              expert_arm: bool = False) -> tuple:
        config = retrain.retrain_request({
            "dataset": dataset, "scheme": scheme, "backbone": backbone, "image_size": size,
            "imbalance": imbalance, "seeds": seeds, "epochs": epochs, "freeze_backbone": freeze,
            "min_quality": min_quality, "min_reviewers": min_reviewers, "verdict": verdict,
            "unrated": unrated, "target_mix": mix, "max_ratio": max_ratio, "name": name,
            "allow_small_test": allow_small, "linear_probe": probe, "folds": folds,
            "seen_groups_train": seen_train, "inner_valid": inner_valid, "refit": refit,
            "allow_unknown_training_data": allow_unknown, "task": task or "classification",
            "synthetic_arm": synthetic_arm, "real_fractions": real_fractions,
            "against": against, "min_gate_iou": min_gate_iou or None, "gated_arm": gated_arm,
            "min_mask_quality": min_mask_quality or None, "expert_arm": expert_arm})
        # planned before anything is queued: folds, too few test lesions, leaking generators
        # and an empty selection are refused now; the job runs that plan
        started = retrain.start(self.studio.db, self.studio.workspace, person, config,
                                lambda kind, cfg, work, owner: self.studio.jobs.submit(
                                    kind, cfg, work, owner_id=owner))
        job = started.job
        return job, job_line(job_status(self.studio.db, job)), ticking(job)

    def poll(self, person: Person, job: str | None) -> tuple:
        """Progress of the running job; when it is done, its run is shown."""
        return poll_run_job(self.studio.db, job, lambda: self.runs(person))

    def cancel(self, job: str | None) -> str:
        if not job or not self.studio.jobs.cancel(job):
            return "No running job of this session."
        return "Cancelling at the next training step ..."

    @shown_errors
    def show(self, run_id: str | None) -> tuple:
        if not run_id:
            return gr.update(value=[]), None, None, "", None
        run = load_run(self.studio.db, run_id)
        results = run["results"]
        report = run["folder"] / "report.html"
        header, rows = metric_table(results)
        warnings = "\n".join(f"- {'**regression**' if w['beyond_noise'] else 'warning'}: {w['text']}"
                             for w in results.get("warnings", []))
        selection = results.get("selection", {}).get("counts")
        segmentation = results.get("task") == "segmentation"
        first = results["arms"][next(iter(results["arms"]))]["summary"]
        text = (f"**{run_id}** · {'segmentation' if segmentation else 'classification'} · scheme "
                f"{results['scheme']} · {first['dice' if segmentation else 'macro_f1']['n']} "
                "seed(s)")
        per_fold = results.get("selection", {}).get("per_fold")
        if per_fold:
            text += " · synthetic images selected per fold: " + ", ".join(
                str(sum(c["selected"].values())) for c in per_fold)
        elif selection:
            text += f" · synthetic images selected per class: {selection['selected']}"
        text += ("\n\n" + warnings) if warnings else (
            "\n\nDice did not fall beyond its 95% interval." if segmentation else
            "\n\nNo class lost recall or F1 beyond its 95% interval.")
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
            text += "".join(f"\n- design: {shown_fields(line)}"
                            for line in design.get("warnings", []))
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


DEFAULTS = retrain.DEFAULTS  # the widgets start where the CLI's options do (the UI presets
# 128 px and the linear probe on: a first run on a CPU should be quick and show its baseline)


def build_retrain_tab(studio: Studio, access: Access) -> dict:
    desk = RetrainDesk(studio)
    job = gr.State(None)
    note = gr.Markdown(DEMO_NOTE, visible=False)
    with gr.Row():
        task = gr.Radio(["classification", "segmentation"], value=DEFAULTS["task"],
                        label="Task (segmentation: a U-Net on the data set's masks, Dice and IoU)")
        synthetic_arm = gr.Checkbox(False, label="Segmentation: also train on the synthetic "
                                                 "images alone")
        real_fractions = gr.Textbox("", label="Segmentation: learning curve, shares of the real "
                                              "training groups (e.g. 0.25,0.5)")
        against = gr.Textbox("", label="Segmentation: also test on data set")
    with gr.Row():
        dataset = gr.Dropdown([], label="Data set", allow_custom_value=True)  # filled at admin sign-in
        scheme = gr.Dropdown(["", *SCHEMES], value="", label="Label scheme (empty: the data set's)")
        backbone = gr.Dropdown(["efficientnet_lite0", "efficientnet_b0"], value="efficientnet_lite0",
                               label="Backbone")
        size = gr.Radio([128, 224], value=128, label="Image size")
    with gr.Row():
        imbalance = gr.Radio(["none", "sampler", "loss"], value=DEFAULTS["imbalance"],
                             label="Class imbalance")
        seeds = gr.Textbox(DEFAULTS["seeds"], label="Seeds")
        epochs = gr.Number(DEFAULTS["epochs"], label="Epochs", precision=0)
        freeze = gr.Checkbox(False, label="Train the head only (frozen backbone)")
        allow_small = gr.Checkbox(False, label="Run even if a test class has fewer than 3 "
                                               "patients/lesions")
        probe = gr.Checkbox(True, label="Linear probe beside the arms (logistic regression on "
                                        "frozen features)")
    with gr.Row():
        folds = gr.Dropdown(["auto", "0", "3", "5", "10"], value=DEFAULTS["folds"],
                            allow_custom_value=True,
                            label="Grouped cross-validation folds (auto: the most, up to 10, that "
                                  "keep 3 patients/lesions of each class in every test fold; 0: "
                                  "the data set's fixed split)")
        inner_valid = gr.Number(DEFAULTS["inner_valid"], label="With folds: share of each fold's training groups "
                                            "networks stop early on (0: fixed epochs)")
        refit = gr.Checkbox(False, label="With folds: epochs by inner CV, then train on the "
                                         "whole training part")
        seen_train = gr.Checkbox(False, label="With folds: groups a generator learned from "
                                              "train in every fold (only unseen groups tested)")
        allow_unknown = gr.Checkbox(False, label="Use imported generators whose training data "
                                                 "are unknown (the report warns)")
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
            min_gate_iou = gr.Number(0, label="Segmentation gate: min IoU (0: no gate; each "
                                              "fold's gate learns from its training part)")
            gated_arm = gr.Checkbox(False, label="Also a gated arm (the same images with and "
                                                 "without the gate)")
        with gr.Row():
            min_mask_quality = gr.Dropdown(["", "moderate", "good"], value="",
                                           label="Mask rated at least (studies that showed masks)")
            expert_arm = gr.Checkbox(False, label="Also an expert arm (the same images, only "
                                                  "those whose mask was rated that well)")
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
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
    on(start.click, desk.start, inputs=[dataset, scheme, backbone, size, imbalance, seeds, epochs,
                                        freeze, min_quality, min_reviewers, verdict, unrated, mix,
                                        max_ratio, name, allow_small, probe, folds, seen_train,
                                        inner_valid, refit, allow_unknown, task,
                                        synthetic_arm, real_fractions, against,
                                        min_gate_iou, gated_arm, min_mask_quality,
                                        expert_arm],
       outputs=[job, status, timer],
       api_name="start_retrain")
    on(timer.tick, desk.poll, inputs=job, outputs=[status, run, job, timer],
       api_name="retrain_progress")
    on(cancel.click, desk.cancel, inputs=job, outputs=status)
    on(run.change, desk.show, inputs=run, outputs=[table, deltas, confusion, summary, report],
       api_name="show_run")
    on(compare.click, desk.compare, inputs=[run, other], outputs=diff)

    def refresh(person: Person) -> tuple:
        runs = desk.runs(person)
        names = studio.workspace.datasets()
        return (gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=runs, value=runs[0][1] if runs else None), gr.update(choices=runs),
                gr.update(visible=DEMO_DATASET in names), *watch_active(studio.db, person, "retrain"))

    return {"refresh": refresh, "outputs": [dataset, run, other, note, job, status, timer]}
