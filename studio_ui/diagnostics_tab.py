"""Diagnostics: KID class-pair heatmap, checkpoint sweep, a class check of a generator's samples,
UMAP/t-SNE with thumbnails on hover, memorisation pairs side by side."""

from __future__ import annotations

import functools
import html
from pathlib import Path

import gradio as gr

from polyp_core.data.cache import PixelCache
from polyp_core.demo import DEMO_DATASET, DEMO_NOTE
from polyp_core.diagnostics.distances import PairMatrix
from polyp_core.diagnostics.probe import check_generator_classes
from polyp_core.diagnostics.report import DiagnoseConfig, pair_heatmap
from polyp_core.diagnostics.sweep import sweep_figure, sweep_generator
from polyp_core.generation.backends import describe_model, list_models
from polyp_core.generation.request import SCHEDULERS
from polyp_core.progress import CancelToken, Progress
from polyp_core.review.accounts import Person
from polyp_core.validation import number, whole
from polyp_core.workflows import diagnose as diagnose_workflow
from polyp_core.workflows import jobs as jobs_workflow
from studio_ui.access import Access
from studio_ui.services import (Num, Text, Studio, job_line, poll_run_job, shown_errors, start_on_board,
                                ticking, watch_active)
from polyp_core.data.labels import SCHEMES


class DiagnosticsDesk:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def runs(self, person: Person) -> list[tuple[str, str]]:
        return [(f"{r['id']} · {r['config'].get('generator') or 'all generators'}", r["id"])
                for r in diagnose_workflow.runs(self.studio.db, person)]

    def generators(self) -> list[str]:
        return list_models(self.studio.workspace)

    @shown_errors
    def start(self, person: Person, dataset: Text, generator: Text, subsets: Num, subset_size: Num,
              projection: Text, near_copy: Num,
              against: Text = "", region: Text = "frame") -> tuple:
        config = DiagnoseConfig(dataset=dataset, generator=generator or None,
                                subsets=whole(subsets, "subsets"),
                                subset_size=whole(subset_size, "subset_size"),
                                projections=(projection,),
                                near_copy=number(near_copy, "near_copy"), against=against or None,
                                region=region or "frame")
        job = diagnose_workflow.start(
            self.studio.db, self.studio.workspace, person, config,
            lambda kind, cfg, work, owner: self.studio.jobs.submit(kind, cfg, work,
                                                                   owner_id=owner))
        return job, job_line(jobs_workflow.status(self.studio.db, person, job)), ticking(job)

    def poll(self, person: Person, job: str | None) -> tuple:
        """Progress of the running job; when it is done, its run is shown."""
        return poll_run_job(self.studio.db, person, job, lambda: self.runs(person))

    @shown_errors
    def show(self, person: Person, run_id: str | None, scheme: str | None) -> tuple:
        if not run_id:
            return None, "", None, []
        results = diagnose_workflow.stored_run(self.studio.db, person, run_id)["results"]
        kid = results["kid"]
        scheme = scheme if scheme in kid else next(iter(kid))
        heatmap = pair_heatmap(PairMatrix.from_json(kid[scheme]))
        # a one-class scheme (lesion) has no off-diagonal cell: no margin (stored as null)
        margins = ", ".join(f"{c} {m:+.4f}" if m is not None else f"{c} - (one class)"
                            for c, m in kid[scheme]["margin"].items())
        text = (f"**{run_id}** · {results['extractor']} · margins (off-diagonal minus diagonal; "
                f"positive is good): {margins}")
        floors = results.get("kid_floor", {}).get(scheme, {})
        if floors:
            text += (" · real-vs-real floor (two halves of a real class split by patient/lesion;"
                     " a diagonal cell near it is as close as real data gets): " + ", ".join(
                         f"{c} {f['mean']:.4f} ± {f['std']:.4f}" for c, f in floors.items()))
        second = results.get("second_real", {})
        if scheme in second.get("kid", {}):
            cells = second["kid"][scheme]["cells"]
            text += (f" · second real source {second['dataset']} (real vs real, same class): " +
                     ", ".join(f"{c} {cells[c][c]['mean']:.4f} ± {cells[c][c]['std']:.4f}"
                               for c in cells))
        lesion = results.get("lesion", {})
        if scheme in lesion.get("kid", {}):
            cells, ci = lesion["kid"][scheme]["cells"], lesion["intervals"][scheme]
            floors = lesion["kid_floor"].get(scheme, {})
            text += (" · **around each polyp** (crops; 95% intervals over lesions): " + ", ".join(
                f"{c} {cells[c][c]['mean']:.4f} [{ci[c]['low']:.4f}, {ci[c]['high']:.4f}]"
                + (f" (floor {floors[c]['mean']:.4f})" if c in floors else "") for c in cells)
                + "".join(f" · {g}: " + ", ".join(
                    f"{c} {v['kid']:.4f} [{v['interval']['low']:.4f}, {v['interval']['high']:.4f}]"
                    for c, v in by[scheme].items())
                    for g, by in lesion.get("by_generator", {}).items() if scheme in by))
        projection = None
        for path in results.get("projections", {}).values():
            if Path(path).is_file():  # self-contained: plotly.js inlined, hover thumbnails
                projection = (f'<iframe style="width:100%;height:640px;border:0" '
                              f'srcdoc="{html.escape(Path(path).read_text())}"></iframe>')
                break
        pixels = PixelCache(self.studio.workspace.pixel_cache_dir)
        pairs = []
        shown = results["memorisation"]["pairs"][:12]
        files = diagnose_workflow.images(self.studio.db, person, [
            sha for pair in shown for sha in (pair["synthetic_id"], pair["real_id"])])
        for pair in shown:
            syn, real = files.get(pair["synthetic_id"]), files.get(pair["real_id"])
            if syn is None or real is None:
                continue
            pairs.append((pixels.rgb(syn.path, syn.sha256, 128),
                          f"synthetic {pair['synthetic_class']} · cosine {pair['similarity']:.3f}"))
            pairs.append((pixels.rgb(real.path, real.sha256, 128), "its nearest real image"))
        return heatmap, text, projection, pairs

    def poll_result(self, person: Person, job: str | None) -> tuple:
        """A timer tick of a sweep or class check: its line, and its result once it is done."""
        holder = self.studio.board.get(job)
        if holder is None:
            return gr.update(), gr.update(), None, ticking(None)
        status = jobs_workflow.status(self.studio.db, person, job)
        job = job if status.active else None
        return job_line(status), holder.get("output", gr.update()), job, ticking(job)

    @shown_errors
    def sweep(self, person: Person, generator: Text, dataset: Text, n_per_class: Num,
              steps: Num) -> tuple | str:
        """Queue a checkpoint sweep (a job: the runner holds the generation lock)."""
        if not generator:
            raise gr.Error("Choose a generator.")
        describe_model(self.studio.workspace, generator)  # an unknown model: refused at once
        n, steps = whole(n_per_class, "n_per_class"), whole(steps, "steps")
        holder: dict = {}
        workspace = self.studio.workspace

        def work(progress: Progress, _cancel: CancelToken) -> str:
            result = sweep_generator(workspace, generator, dataset, n_per_class=n, steps=steps,
                                     subsets=20, progress=progress)
            holder["output"] = sweep_figure(result, f"Checkpoint sweep of {generator} "
                                                    f"(best: {result.best()})")
            return f"sweep of {generator}: best {result.best()}"

        return start_on_board(self.studio, person, "sweep",
                              {"generator": generator, "dataset": dataset}, work, holder)

    @shown_errors
    def check_classes(self, person: Person, generator: Text, dataset: Text, n_per_class: Num,
                      steps: Num, guidance: Num,
                      scheduler: Text) -> tuple | str:
        """Do the generator's samples carry their class? (``check-classes`` on the CLI.) A job."""
        if not generator or not dataset:
            raise gr.Error("Choose a generator and the real data set it should match.")
        describe_model(self.studio.workspace, generator)
        self.studio.workspace.load_manifest(dataset)
        n, steps = whole(n_per_class, "n_per_class"), whole(steps, "steps")
        guidance = number(guidance, "guidance")
        holder: dict = {}
        workspace = self.studio.workspace

        def work(progress: Progress, cancel: CancelToken) -> str:
            result = check_generator_classes(workspace, generator, dataset, n=n, steps=steps,
                                             guidance=guidance, scheduler=scheduler,
                                             progress=progress, cancel=cancel)
            head, *table = result.lines()
            holder["output"] = (
                f"**{generator}**, {scheduler} {steps} steps, guidance {guidance:g}: {head}. "
                "Rows: the class asked for (or the real class), columns: the probe's reading."
                "\n\n```\n" + "\n".join(table) + "\n```")
            return f"class check of {generator}: {head}"

        return start_on_board(self.studio, person, "check-classes",
                              {"generator": generator, "dataset": dataset}, work, holder)


def build_diagnostics_tab(studio: Studio, access: Access) -> dict:
    desk = DiagnosticsDesk(studio)
    job = gr.State(None)
    note = gr.Markdown(DEMO_NOTE, visible=False)
    with gr.Row():
        dataset = gr.Dropdown([], label="Real data set", allow_custom_value=True)  # filled at admin sign-in
        generator = gr.Dropdown([""], value="", label="Generator (empty: whole pool)",
                                allow_custom_value=True)  # filled at admin sign-in
        projection = gr.Radio(["umap", "tsne", "pca"], value="umap", label="Projection")
    with gr.Row():
        subsets = gr.Number(50, label="KID subsets", precision=0)
        subset_size = gr.Number(1000, label="KID subset size (adapts to the smallest group)", precision=0)
        near_copy = gr.Slider(0.8, 1.0, 0.95, step=0.005, label="Near-copy cosine threshold")
        against = gr.Dropdown([""], value="", allow_custom_value=True,  # checked on the server
                              label="Second real source (another data set: real-vs-real KID "
                                    "rows beside the synthetic)")
        region = gr.Radio(["frame", "lesion"], value="frame",
                          label="Region (lesion: also crops around each polyp)")
    start = gr.Button("Run diagnostics", variant="primary")
    status = gr.Markdown()
    with gr.Row():
        run = gr.Dropdown([], label="Diagnostics run")
        scheme = gr.Radio(list(SCHEMES), value="three_class", label="Scheme")
    summary = gr.Markdown()
    heatmap = gr.Plot(label="KID class-pair matrix (mean ± std)")
    projection_html = gr.HTML(label="Real vs synthetic projection (hover: thumbnail)")
    pairs = gr.Gallery(label="Nearest real image of the most similar synthetic images", columns=6,
                       height="auto")
    with gr.Accordion("Checkpoint sweep", open=False):
        with gr.Row():
            n_per_class = gr.Number(16, label="Images per class and checkpoint", precision=0)
            steps = gr.Number(25, label="Sampling steps", precision=0)
            sweep_btn = gr.Button("Sweep every checkpoint")
        sweep_status = gr.Markdown()
        sweep_plot = gr.Plot(label="KID diagonal and margin per checkpoint")
    with gr.Accordion("Do the samples carry their class?", open=False):
        gr.Markdown("A linear probe learns the classes from the real training split, seen at the "
                    "generator's resolution, then reads samples of each class. Its score on real "
                    "test frames is the ceiling.")
        with gr.Row():
            check_n = gr.Number(30, label="Samples per class", precision=0)
            check_steps = gr.Number(200, label="Sampling steps", precision=0)
            check_guidance = gr.Number(4.0, label="Guidance")
            check_scheduler = gr.Dropdown(list(SCHEDULERS), value="ddpm", label="Scheduler")
            check_btn = gr.Button("Check classes")
        check_status = gr.Markdown()
        check_text = gr.Markdown()
    timer = gr.Timer(1.0, active=False)
    sweep_job, sweep_timer = gr.State(None), gr.Timer(2.0, active=False)
    check_job, check_timer = gr.State(None), gr.Timer(1.0, active=False)
    on = functools.partial(access.on, role="admin")  # every event of this tab: admins
    on(start.click, desk.start, inputs=[dataset, generator, subsets, subset_size, projection,
                                        near_copy, against, region], outputs=[job, status, timer])
    on(timer.tick, desk.poll, inputs=job, outputs=[status, run, job, timer])
    for trigger in (run.change, scheme.change):
        on(trigger, desk.show, inputs=[run, scheme],
           outputs=[heatmap, summary, projection_html, pairs])
    on(sweep_btn.click, desk.sweep, inputs=[generator, dataset, n_per_class, steps],
       outputs=[sweep_job, sweep_status, sweep_timer])
    on(sweep_timer.tick, desk.poll_result, inputs=sweep_job,
       outputs=[sweep_status, sweep_plot, sweep_job, sweep_timer])
    on(check_btn.click, desk.check_classes, inputs=[generator, dataset, check_n, check_steps,
                                                    check_guidance, check_scheduler],
       outputs=[check_job, check_status, check_timer], api_name="check_classes")
    on(check_timer.tick, desk.poll_result, inputs=check_job,
       outputs=[check_status, check_text, check_job, check_timer], api_name="poll_check_classes")

    def refresh(person: Person) -> tuple:
        runs = desk.runs(person)
        names = studio.workspace.datasets()
        return (gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=["", *desk.generators()]), gr.update(choices=["", *names]),
                gr.update(choices=runs, value=runs[0][1] if runs else None),
                gr.update(visible=DEMO_DATASET in names),
                *watch_active(studio.db, person, "diagnose"))

    return {"refresh": refresh, "outputs": [dataset, generator, against, run, note, job, status,
                                            timer]}
