"""Retrain & compare: the experiment form, its job's progress, and the dashboard."""

from __future__ import annotations

import functools

import gradio as gr

from polyp_core.experiment.figures import (confusion_figure, delta_bars, evaluation_line,
                                         metric_table)
from polyp_core.experiment.report import answer_parts
from polyp_core.data.labels import SCHEMES
from polyp_core.demo import DEMO_DATASET, DEMO_NOTE
from polyp_core.review.accounts import Person
from polyp_core.workflows import export as export_workflow
from polyp_core.workflows import recipe as recipe_workflow
from polyp_core.workflows import retrain
from polyp_core.workflows import jobs as jobs_workflow
from studio_ui.access import Access
from studio_ui.services import (Studio, form_event, job_line, poll_run_job, shown_errors, shown_fields,
                                ticking, watch_active)


class RetrainDesk:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def runs(self, person: Person) -> list[tuple[str, str]]:
        return [(f"{r['id']} · {r['name']}", r["id"])
                for r in retrain.runs(self.studio.db, person)]

    @shown_errors
    def start(self, person: Person, fields: dict) -> tuple:
        """Start a retrain from the form's values (``retrain.RETRAIN``'s fields, by name)."""
        fields = dict(fields)
        if not fields.get("min_gate_iou"):  # the box's 0 means no gate
            fields["min_gate_iou"] = None
        config = retrain.retrain_request(fields)
        # planned before anything is queued: folds, too few test lesions, leaking generators
        # and an empty selection are refused now; the job runs that plan
        started = retrain.start(self.studio.db, self.studio.workspace, person, config,
                                lambda kind, cfg, work, owner: self.studio.jobs.submit(
                                    kind, cfg, work, owner_id=owner),
                                executor=self.studio.executor)
        job = started.job
        return job, job_line(jobs_workflow.status(self.studio.db, person, job)), ticking(job)

    def poll(self, person: Person, job: str | None) -> tuple:
        """Progress of the running job; when it is done, its run is shown."""
        return poll_run_job(self.studio.db, person, job, lambda: self.runs(person))

    def cancel(self, job: str | None) -> str:
        if not job or not self.studio.jobs.cancel(job):
            return "No running job of this session."
        return "Cancelling at the next training step ..."

    @shown_errors
    def show(self, person: Person, run_id: str | None) -> tuple:
        if not run_id:
            return "", gr.update(value=[]), None, None, "", None
        run = retrain.stored_run(self.studio.db, person, run_id)
        results = run["results"]
        answer = "".join(answer_parts(results, run.get("config")))
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
        return (answer, gr.update(value=rows, headers=header), delta_bars(results),
                confusion_figure(results), text, str(report) if report.is_file() else None)

    @shown_errors
    def start_recipe(self, person: Person, dataset: str | None, minutes: float,
                     per_class: float, seeds: str, fast: bool, size: int,
                     epochs: float | None) -> tuple:
        """Start the whole loop on ``dataset`` as a job (its refusals come before the job)."""
        config = recipe_workflow.recipe_request({
            "dataset": dataset, "minutes": minutes, "per_class": per_class, "seeds": seeds,
            "fast": fast, "size": size, "epochs": epochs or None})
        job = recipe_workflow.start(self.studio.db, self.studio.workspace, person, config,
                                    lambda kind, cfg, work, owner: self.studio.jobs.submit(
                                        kind, cfg, work, owner_id=owner),
                                    executor=self.studio.executor)
        return job, job_line(jobs_workflow.status(self.studio.db, person, job)), ticking(job)

    def poll_recipe(self, person: Person, job: str | None) -> tuple:
        """The recipe job's progress; its runs join the run list when it is done."""
        return poll_run_job(self.studio.db, person, job, lambda: self.runs(person))

    @shown_errors
    def start_export(self, person: Person, run_id: str | None, arm: str, fold: float,
                     to: str) -> tuple:
        """Export what ``arm`` of the chosen run learned from in ``fold`` as a job (refusals
        before the job); the zip is offered when it is done."""
        if not run_id:
            raise ValueError("choose a run first")
        config = export_workflow.tab_export(self.studio.workspace, run_id, arm,
                                            int(fold or 1), to)
        job = export_workflow.start(self.studio.db, self.studio.workspace, person, config,
                                    lambda kind, cfg, work, owner: self.studio.jobs.submit(
                                        kind, cfg, work, owner_id=owner))
        return job, job_line(jobs_workflow.status(self.studio.db, person, job)), ticking(job), None

    def poll_export(self, person: Person, job: str | None) -> tuple:
        """The export job's line; its zip when it is done."""
        if not job:
            return gr.update(), None, ticking(None), gr.update()
        status = jobs_workflow.status(self.studio.db, person, job)
        if status.status == "done":
            return job_line(status), None, ticking(None), status.message
        job = job if status.active else None
        return job_line(status), job, ticking(job), gr.update()

    @shown_errors
    def compare(self, person: Person, a: str | None, b: str | None) -> str:
        if not a or not b:
            return "Choose two runs."
        diff = retrain.compare(self.studio.db, person, a, b)
        lines = [f"**{a}** → **{b}**",
                 f"- settings changed: {diff['config'] or 'none'}",
                 f"- synthetic images: {len(diff['images']['only_in_a'])} only in the first, "
                 f"{len(diff['images']['only_in_b'])} only in the second, {diff['images']['shared']} shared",
                 f"- ratings changed between them: {'yes' if diff['ratings_changed'] else 'no'}"]
        for arm, row in diff["metrics"].items():
            lines.append(f"- {arm}: Δ macro-F1 {row['macro_f1']:+.3f}, Δ balanced accuracy "
                         f"{row['balanced_accuracy']:+.3f}")
        return "\n".join(lines)


DEFAULTS = retrain.DEFAULTS  # the widgets start where the CLI's options do, but for two
#: presets of the page: 128 px and the linear probe on (a first run on a CPU should be quick
#: and show the baseline a network must beat)
UI_PRESETS = {"image_size": 128, "linear_probe": True}
RECIPE_DEFAULTS = recipe_workflow.RECIPE.defaults()  # the panel starts where `recipe` does


def build_retrain_tab(studio: Studio, access: Access) -> dict:
    desk = RetrainDesk(studio)
    job = gr.State(None)
    note = gr.Markdown(DEMO_NOTE, visible=False)
    with gr.Row():
        task = gr.Radio(list(retrain.RETRAIN["task"].choices), value=DEFAULTS["task"],
                        label="Task (segmentation: a U-Net on the data set's masks, Dice and IoU)")
        synthetic_arm = gr.Checkbox(DEFAULTS["synthetic_arm"], label="Segmentation: also train on the synthetic "
                                                 "images alone")
        real_fractions = gr.Textbox(DEFAULTS["real_fractions"] or "", label="Segmentation: learning curve, shares of the real "
                                              "training groups (e.g. 0.25,0.5)")
        against = gr.Textbox(DEFAULTS["against"] or "", label="Segmentation: also test on data sets (comma-separated)")
    with gr.Row():
        dataset = gr.Dropdown([], label="Data set", allow_custom_value=True)  # filled at admin sign-in
        scheme = gr.Dropdown(["", *SCHEMES], value="", label="Label scheme (empty: the data set's)")
        backbone = gr.Dropdown(["efficientnet_lite0", "efficientnet_b0"], value=DEFAULTS["backbone"],
                               label="Backbone")
        size = gr.Radio(list(retrain.WORKING_SIZES), value=UI_PRESETS["image_size"], label="Image size")
    with gr.Row():
        imbalance = gr.Radio(list(retrain.RETRAIN["imbalance"].choices),
                             value=DEFAULTS["imbalance"],
                             label="Class imbalance")
        seeds = gr.Textbox(DEFAULTS["seeds"], label="Seeds")
        epochs = gr.Number(DEFAULTS["epochs"], label="Epochs", precision=0)
        freeze = gr.Checkbox(DEFAULTS["freeze_backbone"], label="Train the head only (frozen backbone)")
        allow_small = gr.Checkbox(DEFAULTS["allow_small_test"], label="Run even if a test class has fewer than 3 "
                                               "patients/lesions")
        probe = gr.Checkbox(UI_PRESETS["linear_probe"], label="Linear probe beside the arms (logistic regression on "
                                        "frozen features)")
    with gr.Row():
        folds = gr.Dropdown(["auto", "0", "3", "5", "10"], value=DEFAULTS["folds"],
                            allow_custom_value=True,
                            label="Grouped cross-validation folds (auto: the most, up to 10, that "
                                  "keep 3 patients/lesions of each class in every test fold; 0: "
                                  "the data set's fixed split)")
        inner_valid = gr.Number(DEFAULTS["inner_valid"], label="With folds: share of each fold's training groups "
                                            "networks stop early on (0: fixed epochs)")
        refit = gr.Checkbox(DEFAULTS["refit"], label="With folds: epochs by inner CV, then train on the "
                                         "whole training part")
        seen_train = gr.Checkbox(DEFAULTS["seen_groups_train"], label="With folds: groups a generator learned from "
                                              "train in every fold (only unseen groups tested)")
        allow_unknown = gr.Checkbox(DEFAULTS["allow_unknown_training_data"], label="Use imported generators whose training data "
                                                 "are unknown (the report warns)")
    with gr.Accordion("Which synthetic images join (selection policy)", open=True):
        with gr.Row():
            min_quality = gr.Dropdown(["", *retrain.RETRAIN["min_quality"].choices],
                                      value=DEFAULTS["min_quality"] or "",
                                      label="Rated at least")
            min_reviewers = gr.Number(DEFAULTS["min_reviewers"], label="... by at least k reviewers", precision=0)
            verdict = gr.Dropdown(list(retrain.RETRAIN["verdict"].choices),
                                  value=DEFAULTS["verdict"], label="Verdict rule")
            unrated = gr.Radio(list(retrain.RETRAIN["unrated"].choices), value=DEFAULTS["unrated"],
                               label="Unrated images")
        with gr.Row():
            mix = gr.Textbox(DEFAULTS["target_mix"] or "", label="Target class mix ('balance' or AD=0.4,SSA=0.3,HP=0.3)")
            max_ratio = gr.Number(DEFAULTS["max_ratio"] or 0, label="Max synthetic per real image (0: no cap)")
            min_gate_iou = gr.Number(DEFAULTS["min_gate_iou"] or 0, label="Segmentation gate: min IoU (0: no gate; each "
                                              "fold's gate learns from its training part)")
            gated_arm = gr.Checkbox(DEFAULTS["gated_arm"], label="Also a gated arm (the same images with and "
                                                 "without the gate)")
        with gr.Row():
            min_mask_quality = gr.Dropdown(["", *retrain.RETRAIN["min_mask_quality"].choices],
                                           value=DEFAULTS["min_mask_quality"] or "",
                                           label="Mask rated at least (studies that showed masks)")
            expert_arm = gr.Checkbox(DEFAULTS["expert_arm"], label="Also an expert arm (the same images, only "
                                                  "those whose mask was rated that well)")
            name = gr.Textbox(DEFAULTS["name"] or "", label="Run name")
    with gr.Row():
        start = gr.Button("Train baseline and augmented", variant="primary")
        cancel = gr.Button("Cancel")
    status = gr.Markdown()
    with gr.Accordion("Run the whole loop on the chosen data set (recipe: generators on the "
                      "training split, inpainting and copy-paste, the cross-fitted gate, every "
                      "arm, one summary)", open=False):
        with gr.Row():
            recipe_minutes = gr.Number(RECIPE_DEFAULTS["minutes"],
                                       label="Inpainter training budget (minutes)")
            recipe_n = gr.Number(RECIPE_DEFAULTS["per_class"], precision=0,
                                 label="Images per class (inpainted, and as many pasted)")
            recipe_seeds = gr.Textbox(RECIPE_DEFAULTS["seeds"], label="Seeds (the key pair: "
                                                                     "two at least)")
            recipe_fast = gr.Checkbox(False, label="Many-arm part: U-Net decoders only")
            recipe_size = gr.Radio(list(retrain.WORKING_SIZES), value=RECIPE_DEFAULTS["size"],
                                   label="Working size")
            recipe_epochs = gr.Number(None, precision=0, label="Epochs (empty: the task's)")
        with gr.Row():
            recipe_start = gr.Button("Run the whole loop", variant="primary")
            recipe_cancel = gr.Button("Cancel the loop")
        recipe_status = gr.Markdown()
        recipe_job = gr.State(None)
        recipe_timer = gr.Timer(2.0, active=False)
    with gr.Row():
        # filled at admin sign-in; any id is checked on the server (an unknown run is refused)
        run = gr.Dropdown([], label="Run", allow_custom_value=True)
        other = gr.Dropdown([], label="Compare with")
        compare = gr.Button("Compare runs")
    answer = gr.HTML()  # the report's first screen: question, verdict, forest plot, regressions
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
    with gr.Accordion("Export what an arm of this run learned from (nnU-Net, image folders or "
                      "CSV, with a data card and the studio's folds)", open=False):
        with gr.Row():
            export_arm = gr.Dropdown(["augmented", "baseline", "gated", "expert", "synthetic"],
                                     value="augmented", label="Arm")
            export_fold = gr.Number(1, precision=0, label="Fold (from 1)")
            export_to = gr.Radio(["nnunet", "imagefolder", "csv"], value="nnunet",
                                 label="Format")
            export_start = gr.Button("Export as a zip")
        export_status = gr.Markdown()
        export_file = gr.File(label="The export (zip)", interactive=False)
        export_job = gr.State(None)
        export_timer = gr.Timer(1.0, active=False)
    timer = gr.Timer(1.0, active=False)
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
    form = {"dataset": dataset, "scheme": scheme, "backbone": backbone, "image_size": size,
            "imbalance": imbalance, "seeds": seeds, "epochs": epochs, "freeze_backbone": freeze,
            "min_quality": min_quality, "min_reviewers": min_reviewers, "verdict": verdict,
            "unrated": unrated, "target_mix": mix, "max_ratio": max_ratio, "name": name,
            "allow_small_test": allow_small, "linear_probe": probe, "folds": folds,
            "seen_groups_train": seen_train, "inner_valid": inner_valid, "refit": refit,
            "allow_unknown_training_data": allow_unknown, "task": task,
            "synthetic_arm": synthetic_arm, "real_fractions": real_fractions, "against": against,
            "min_gate_iou": min_gate_iou, "gated_arm": gated_arm,
            "min_mask_quality": min_mask_quality, "expert_arm": expert_arm}
    on(start.click, form_event(list(form), desk.start), inputs=list(form.values()),
       outputs=[job, status, timer],
       api_name="start_retrain")
    on(timer.tick, desk.poll, inputs=job, outputs=[status, run, job, timer],
       api_name="retrain_progress")
    on(cancel.click, desk.cancel, inputs=job, outputs=status)
    on(run.change, desk.show, inputs=run,
       outputs=[answer, table, deltas, confusion, summary, report],
       api_name="show_run")
    on(compare.click, desk.compare, inputs=[run, other], outputs=diff)
    on(recipe_start.click, desk.start_recipe,
       inputs=[dataset, recipe_minutes, recipe_n, recipe_seeds, recipe_fast, recipe_size,
               recipe_epochs], outputs=[recipe_job, recipe_status, recipe_timer],
       api_name="start_recipe")
    on(recipe_timer.tick, desk.poll_recipe, inputs=recipe_job,
       outputs=[recipe_status, run, recipe_job, recipe_timer], api_name="recipe_progress")
    on(recipe_cancel.click, desk.cancel, inputs=recipe_job, outputs=recipe_status)
    on(export_start.click, desk.start_export, inputs=[run, export_arm, export_fold, export_to],
       outputs=[export_job, export_status, export_timer, export_file], api_name="start_export")
    on(export_timer.tick, desk.poll_export, inputs=export_job,
       outputs=[export_status, export_job, export_timer, export_file], api_name="export_progress")

    def refresh(person: Person) -> tuple:
        runs = desk.runs(person)
        names = studio.workspace.datasets()
        return (gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=runs, value=runs[0][1] if runs else None), gr.update(choices=runs),
                gr.update(visible=DEMO_DATASET in names), *watch_active(studio.db, person, "retrain"))

    return {"refresh": refresh, "outputs": [dataset, run, other, note, job, status, timer]}
