"""The whole loop on a data set with masks, in one call: does synthetic data help here?

``recipe DATASET`` trains the generators on the training split only, inside a time budget (the
window inpainter, and copy-paste, which needs no training), inpaints ``per_class`` images of
every class into training frames and pastes as many, and retrains:

- segmentation, the key pair: real against real + the inpainted images that the cross-fitted
  gate kept (IoU 0.7; an image is scored by a gate that never learned from its frame), always
  fully fine-tuned with at least two seeds;
- segmentation, the many arms (decoder only with ``fast``): real, real + inpainted, real +
  inpainted and gated, inpainted only, and real at 25 % and 50 % with and without the gated
  images (100 % are the arms themselves);
- segmentation, real against real + copy-paste (the cheap baseline every generator must beat);
- classification, where the data set has two classes or more: real against real + inpainted,
  with the linear probe.

Every step is an ordinary studio object (a generator in ``models/``, pool images with their
provenance, retrain runs with their reports), named after the recipe, and recorded in
``runs/<name>-<dataset>/recipe.json`` as it finishes: a re-run skips what is made, a cancel
keeps what finished. The summary (every arm's paired difference against real with its
interval, which exclude zero, the gate's acceptance per class, where the images came from) is
printed, written beside the state (``summary.json``, ``recipe.html`` linking every run's
report) and stored as a run of kind ``recipe``.
"""

from __future__ import annotations

import html
import json
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyp_core.experiment.svg import signed
from polyp_core.validation import checked, rule

if TYPE_CHECKING:
    from polyp_core.experiment import ExperimentConfig
    from polyp_core.progress import CancelToken, Progress
    from polyp_core.workspace import Workspace
    from review_db.database import Database

#: the shares of the real training groups of the learning curve (100 %: the arms themselves)
SHARES = (0.25, 0.5)


@checked
@dataclass(frozen=True)
class RecipeConfig:
    """One run of the whole loop.

    Attributes:
        dataset: the real data set (with masks for the segmentation part).
        minutes: the inpainter's training budget (minutes of this machine).
        per_class: N: images of each class inpainted, and as many pasted.
        seeds: training seeds of every retrain (the key pair takes at least two).
        fast: train the many-arm part's U-Nets decoder only (the key pair stays full).
        size: the working size of the U-Nets and the classifiers.
        epochs: training epochs of every network (default: the task's).
        against: segmentation: also test on these other data sets.
        preset: the inpainter's network (``tiny`` for checks, ``demo64``, ``64``, ...).
        inpainter: use this generator of the workspace (trained on this data set's training
            split) instead of training one.
        steps: sampler steps per inpainted image (DDIM).
        gate_folds: the cross-fitted gate's parts.
        gate_iou: the gate keeps an image whose predicted mask meets its own at this IoU (the
            paper's 0.7).
        name: the prefix of everything the recipe makes.
        allow_small_test: run even where a class has fewer than 3 test groups.
    """

    dataset: str = rule(text=True)
    minutes: float = rule(20.0, above=0.0, hi=100_000.0)
    per_class: int = rule(100, lo=1, hi=100_000)
    seeds: tuple[int, ...] = (0, 1)
    fast: bool = False
    size: int = rule(128, lo=32, hi=1024)
    epochs: int | None = rule(None, lo=1, hi=10_000)
    against: tuple[str, ...] = ()
    preset: str = rule("demo64", choices=("tiny", "demo64", "64", "128", "224"))
    inpainter: str | None = rule(None, text=True)
    steps: int = rule(20, lo=1, hi=1000)
    gate_folds: int = rule(3, lo=2, hi=20)
    gate_iou: float = rule(0.7, lo=0.0, hi=1.0)
    name: str = rule("recipe", text=True)
    allow_small_test: bool = False

    @property
    def inpainter_id(self) -> str:
        return self.inpainter or f"{self.name}-{self.dataset}-inpaint"

    @property
    def copy_paste_id(self) -> str:
        return f"{self.name}-{self.dataset}-copy-paste"

    def to_json(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class Facts:
    """What the checks found: the classes, whether the segmentation part can run."""

    classes: tuple[str, ...]
    masks: bool
    notes: tuple[str, ...]
    #: where the retrain steps' trainings run (``polyp_core.executors``; this process: None)
    executor: Any = None


def seconds_per_step(preset: str, batch: int, classes: int) -> float:
    """One training step of the inpainter on this machine (a random batch; nothing stored)."""
    import torch

    from polyp_core.generation.ddpm.model import build_unet, get_preset, task_channels

    config = get_preset(preset)
    unet = build_unet(config, classes + 1, task="inpaint")
    channels, condition = task_channels("inpaint")
    x = torch.randn(batch, channels + condition, config.size, config.size)
    start = time.perf_counter()
    out = unet(x, torch.randint(0, 1000, (batch,)), class_labels=torch.zeros(batch, dtype=torch.long))
    out.sample.mean().backward()
    return time.perf_counter() - start


def check(workspace: Workspace, config: RecipeConfig, step_seconds: float | None = None
          ) -> Facts:
    """Refuse before any work: an unknown data set, one whose split holds no test part, a
    data set with neither masks nor two classes, N larger than a class's training frames with
    a mask allow (one image per frame), and a generator budget below one training step.

    Raises:
        ValueError: naming the field and the figures.
    """
    manifest = workspace.load_manifest(config.dataset)
    test = manifest.split_items("test")
    if not test:
        raise ValueError(f"`dataset`: {config.dataset!r} has no test part in its split (train "
                         f"{len(manifest.split_items('train'))}, valid "
                         f"{len(manifest.split_items('valid'))}); the recipe compares arms on "
                         "the fixed split's test part: re-import it with a test share")
    train = manifest.split_items("train")
    classes = tuple(sorted({manifest.label_of(i) for i in manifest.items}))
    masks = all(i.mask for i in train + test)
    notes = []
    if not masks:
        if len(classes) < 2:
            raise ValueError(f"`dataset`: {config.dataset!r} has no masks (segmentation) and one "
                             "class (classification): the recipe has nothing to compare")
        notes.append(f"{config.dataset!r} has frames without masks: the segmentation part "
                     "(and the inpainter, which learns from masks) cannot run; classification "
                     "alone runs, with copy-paste and inpainting left out")
        return Facts(classes, False, tuple(notes))
    for cls in classes:
        frames = sum(1 for i in train if i.mask and manifest.label_of(i) == cls)
        if config.per_class > frames:
            raise ValueError(f"`per_class`: {config.per_class} images of {cls} need as many "
                             f"training frames of {cls} with a mask (one image per frame); "
                             f"{config.dataset!r} has {frames}")
    if config.inpainter is None:
        seconds = step_seconds if step_seconds is not None else seconds_per_step(
            config.preset, 8, len(classes))
        if config.minutes * 60 < seconds:
            raise ValueError(f"`minutes`: {config.minutes:g} min is below one training step of "
                             f"the inpainter on this machine ({seconds:.1f} s measured): nothing "
                             "would be learned")
    return Facts(classes, True, tuple(notes))


class State:
    """``recipe.json``: what each finished step made (written as each finishes)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "recipe.json"
        folder.mkdir(parents=True, exist_ok=True)
        self.data: dict = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        from polyp_core.files import atomic_write

        self.data[key] = value
        atomic_write(self.path, json.dumps(self.data, indent=1).encode())


@dataclass
class Outcome:
    """What the recipe did: its summary, state folder and the lines it printed."""

    summary: dict
    folder: Path
    lines: list[str]


def run_recipe(db: Database, workspace: Workspace, config: RecipeConfig,
               progress: Progress | None = None, cancel: CancelToken | None = None,
               step_seconds: float | None = None, executor: Any = None) -> Outcome:
    """Every step of the loop that is not made yet, then the summary (the retrain steps'
    trainings on ``executor``: ``polyp_core.executors``, this process when None).

    Raises:
        ValueError: the refusals of :func:`check` (before any work).
        Cancelled: when ``cancel`` is set (finished steps stay).
    """
    from polyp_core.progress import no_progress

    progress = progress or no_progress
    facts = replace(check(workspace, config, step_seconds), executor=executor)
    folder = workspace.runs_dir / f"{config.name}-{config.dataset}"
    state = State(folder)
    steps = _steps(config, facts)
    for n, (key, label, action) in enumerate(steps):
        if cancel is not None:
            cancel.check()
        done = state.get(key)
        if done is not None and _still_there(db, workspace, key, done):
            progress(n + 1, len(steps), f"{label}: made before, kept")
            continue

        def sub(d: int, t: int, message: str, n: int = n, label: str = label) -> None:
            progress(n + (d / t if t else 0), len(steps), f"{label}: {message}")

        state.put(key, action(db, workspace, config, facts, state, sub, cancel))
    summary = summarise(db, config, facts, state)
    lines = summary_lines(summary)
    _store_summary(db, workspace, config, folder, summary)
    return Outcome(summary, folder, lines)


def _steps(config: RecipeConfig, facts: Facts) -> list[tuple[str, str, Any]]:
    steps: list[tuple[str, str, Any]] = []
    if facts.masks:
        if config.inpainter is None:
            steps.append(("inpainter", "training the window inpainter", _train_inpainter))
        steps += [("inpainted", "inpainting into training frames", _inpaint),
                  ("copy_paste", "copy-paste into training frames", _copy_paste)]
        steps += [(f"run:{key}", f"retraining: {title}", _retrain(key))
                  for key, title in RUNS.items() if key != "classification"]
    if len(facts.classes) > 1 and facts.masks:
        steps.append(("run:classification", f"retraining: {RUNS['classification']}",
                      _retrain("classification")))
    elif len(facts.classes) > 1:  # no masks: real against real + copy-paste is impossible too
        steps.append(("run:classification-real", "retraining: the real classifiers",
                      _retrain("classification-real")))
    return steps


#: the recipe's retrain runs: key -> what it compares
RUNS = {"key": "real vs real + gated inpainted (full fine-tuning)",
        "arms": "every segmentation arm and the learning curve",
        "copy-paste": "real vs real + copy-paste",
        "classification": "classification: real vs real + inpainted, with the linear probe"}


def _still_there(db: Database, workspace: Workspace, key: str, done: Any) -> bool:
    """Whether a finished step's product still exists (a deleted run is made again)."""
    from review_db import queries

    if key.startswith("run:"):
        if not isinstance(done, dict) or "run" not in done:
            return True  # a refusal is remembered as one
        with db.session() as session:
            return queries.get_run(session, done["run"]) is not None
    if key == "inpainter":
        return (workspace.models_dir / done["model"]).is_dir()
    with db.session() as session:
        return all(queries.image_by_sha(session, sha) is not None
                   for shas in done.values() for sha in shas)


def _train_inpainter(db: Database, workspace: Workspace, config: RecipeConfig, facts: Facts,
        state: State, progress: Progress, cancel: CancelToken | None) -> dict:
    """The window inpainter on the training split, stopped when its budget is spent (its last
    checkpoint is written then)."""
    from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm
    from polyp_core.progress import CancelToken

    tiny = config.preset == "tiny"
    train = DDPMTrainConfig(dataset=config.dataset, model_id=config.inpainter_id,
                            preset=config.preset, steps=10**7, batch_size=8 if tiny else 16,
                            lr=2e-4, warmup=100, checkpoint_every=500, class_balance=True,
                            task="inpaint", window="lesion", grid_per_class=2, grid_steps=10)
    timer_token = CancelToken()
    timer = threading.Timer(config.minutes * 60, timer_token.cancel)

    def watch() -> None:  # the job's cancel stops the training too
        while not timer_token.cancelled:
            if cancel is not None and cancel.cancelled:
                timer_token.cancel()
            time.sleep(0.5)

    timer.start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = train_ddpm(workspace, train, progress, timer_token)
    finally:
        timer.cancel()
        timer_token.cancel()
    if cancel is not None:
        cancel.check()  # stopped by the job, not by the budget: not finished
    return {"model": config.inpainter_id, "steps": result.steps_done,
            "seconds": result.seconds, "minutes": config.minutes}


def _frames(workspace: Workspace, config: RecipeConfig, cls: str) -> list:
    """The training frames of ``cls`` with a mask, in a seeded order."""
    manifest = workspace.load_manifest(config.dataset)
    items = [i for i in manifest.split_items("train")
             if i.mask and manifest.label_of(i) == cls]
    order = np.random.default_rng(0).permutation(len(items))
    return [items[k] for k in order]


def _inpaint(db: Database, workspace: Workspace, config: RecipeConfig, facts: Facts,
        state: State, progress: Progress, cancel: CancelToken | None) -> dict:
    """``per_class`` images of each class, each into its own training frame of that class
    (a frame the window cannot hold is passed over)."""
    from polyp_core.generation.inpaint import (InpaintRequest, frame_background, inpaint,
                                               plan_masks, store_inpainted)

    made: dict[str, list[str]] = {}
    total = config.per_class * len(facts.classes)
    for c, cls in enumerate(facts.classes):
        shas = []
        for item in _frames(workspace, config, cls):
            if len(shas) == config.per_class:
                break
            if cancel is not None:
                cancel.check()
            request = InpaintRequest(generator=config.inpainter_id, class_label=cls,
                                     dataset=config.dataset, image=item.id,
                                     seeds=(len(shas),), steps=config.steps, scheduler="ddim")
            background = frame_background(workspace, config.dataset, item.id)
            try:
                planned = plan_masks(workspace, request, background)
            except ValueError:
                continue  # a polyp at the border or too large for a window
            result = inpaint(workspace, request, background, planned=planned)
            shas += [sha for _, sha in store_inpainted(db, workspace, request, result)]
            progress(c * config.per_class + len(shas), total, f"{cls} {len(shas)}")
        if len(shas) < config.per_class:
            raise ValueError(f"`per_class`: only {len(shas)} training frames of {cls} hold a "
                             f"polyp a window can take; ask for at most that many")
        made[cls] = shas
    return made


def _copy_paste(db: Database, workspace: Workspace, config: RecipeConfig, facts: Facts,
        state: State, progress: Progress, cancel: CancelToken | None) -> dict:
    """``per_class`` copy-paste images of each class into training frames."""
    from polyp_core.generation.copy_paste import CopyPasteRequest, copy_paste, store_pasted

    made = {}
    for c, cls in enumerate(facts.classes):
        request = CopyPasteRequest(dataset=config.dataset, class_label=cls, n=config.per_class,
                                   seed=100_000 * c, generator=config.copy_paste_id)
        label, images = copy_paste(workspace, request, progress, cancel)
        made[cls] = [sha for _, sha in store_pasted(db, workspace, request, label, images)]
    return made


def experiment(config: RecipeConfig, key: str) -> ExperimentConfig:
    """The retrain request of the recipe's run ``key``."""
    from polyp_core.experiment import ExperimentConfig, SelectionPolicy
    from polyp_core.tasks import AUGMENTED, BASELINE, GATED, SYNTHETIC, train_defaults
    from polyp_core.training import TrainConfig

    task = "classification" if key.startswith("classification") else "segmentation"
    train = TrainConfig(**(train_defaults(task) | {"image_size": config.size}
                           | ({"epochs": config.epochs} if config.epochs else {})))
    fast = config.fast and key in ("arms", "copy-paste")
    train = replace(train, freeze_backbone=fast)
    seeds = tuple(config.seeds) if key != "key" or len(config.seeds) >= 2 else \
        (config.seeds[0], config.seeds[0] + 1)
    gated = SelectionPolicy(generators=(config.inpainter_id,), min_gate_iou=config.gate_iou,
                            gate_folds=config.gate_folds)
    common = {"dataset": config.dataset, "folds": 0, "seeds": seeds, "train": train,
              "allow_small_test": config.allow_small_test, "task": task,
              "name": f"{config.name}: {RUNS.get(key, 'real classifiers')}"}
    if task == "segmentation":
        common["against"] = tuple(config.against)
    if key == "key":
        return ExperimentConfig(**common, arms=(BASELINE, AUGMENTED), policy=gated)
    if key == "arms":
        return ExperimentConfig(**common, arms=(BASELINE, AUGMENTED, GATED, SYNTHETIC),
                                real_fractions=SHARES, policy=gated)
    if key == "copy-paste":
        return ExperimentConfig(**common, arms=(BASELINE, AUGMENTED),
                                policy=SelectionPolicy(generators=(config.copy_paste_id,)))
    if key == "classification":
        return ExperimentConfig(**common, arms=(BASELINE, AUGMENTED), linear_probe=True,
                                policy=SelectionPolicy(generators=(config.inpainter_id,)))
    return ExperimentConfig(**common, arms=(BASELINE,), linear_probe=True)


def _retrain(key: str) -> Any:
    def action(db: Database, workspace: Workspace, config: RecipeConfig, facts: Facts,
        state: State, progress: Progress, cancel: CancelToken | None) -> dict:
        from polyp_core.experiment import run_experiment

        request = experiment(config, key)
        try:
            result = run_experiment(db, workspace, request, progress, cancel,
                                    executor=facts.executor)
        except ValueError as refused:  # e.g. the gate kept nothing: recorded, the rest runs
            return {"refused": str(refused)}
        return {"run": result.run_id}
    return action


def summarise(db: Database, config: RecipeConfig, facts: Facts, state: State) -> dict:
    """The table of arms (each against its real arm, with intervals), which differences
    exclude zero, the gate's acceptance per class, and where the images came from."""
    from polyp_core.experiment.verdict import detectable_change, figure, verdict
    from polyp_core.runs import load_run
    from polyp_core.segment.gate import rate
    from polyp_core.tasks import task_of

    rows, runs, refused = [], {}, {}
    for key in (*RUNS, "classification-real"):
        done = state.get(f"run:{key}")
        if not done:
            continue
        if "refused" in done:
            refused[key] = done["refused"]
            continue
        run = load_run(db, done["run"])
        results = run["results"]
        label, path = task_of(results).HEADLINE
        runs[key] = {"run": done["run"], "report": str(run["folder"] / "report.html"),
                     "verdict": verdict(results), "title": RUNS.get(key, "real classifiers")}
        for arm, u in results["uncertainty"].items():
            d = figure(u, path)
            row = {"run": done["run"], "key": key, "arm": _arm_name(key, arm),
                   "metric": label, "score": d}
            versus = results.get("versus_real", {}).get(arm)
            if versus is not None:
                delta = figure(versus, path)
                row |= {"against": _arm_name(key, versus["against"]), "delta": delta,
                        "excludes_zero": bool(delta["low"] > 0 or delta["high"] < 0),
                        "smallest_detectable": detectable_change(results, delta)}
            rows.append(row)
    gate = _gate_acceptance(db, state, rate, config.gate_iou)
    generators = {"inpainter": state.get("inpainter") or (
        {"model": config.inpainter, "given": True} if config.inpainter else None),
        "inpainted": {c: len(s) for c, s in (state.get("inpainted") or {}).items()},
        "copy_paste": {c: len(s) for c, s in (state.get("copy_paste") or {}).items()}}
    beats = [r for r in rows if r.get("delta") and r["delta"]["low"] > 0]
    key_rows = [r for r in rows if r["key"] == "key" and r.get("delta")]
    return {"dataset": config.dataset, "config": config.to_json(), "notes": list(facts.notes),
            "rows": rows, "runs": runs, "refused": refused, "gate": gate,
            "generators": generators, "answer": _answer(beats, key_rows)}


def _arm_name(key: str, arm: str) -> str:
    """The arm in the recipe's words."""
    inpainted = {"baseline": "real", "augmented": "real + inpainted", "gated":
                 "real + inpainted, gated", "synthetic": "inpainted only",
                 "linear probe": "linear probe, real",
                 "linear probe + synthetic": "linear probe, real + inpainted"}
    if key == "key":
        inpainted["augmented"] = "real + inpainted, gated (full fine-tuning)"
    if key == "copy-paste":
        inpainted["augmented"] = "real + copy-paste"
    base, _, share = arm.rpartition(" ")
    if share.endswith("%") and base in inpainted:
        return f"{inpainted[base]}, {share} of the real groups"
    name = inpainted.get(arm, arm)
    return f"{name} (classification)" if key.startswith("classification") else name


def _gate_acceptance(db: Database, state: State, rate: Any, threshold: float) -> dict:
    """Per class: how many inpainted images the key run's cross-fitted gate kept (Wilson
    interval over images)."""
    from polyp_core.runs import load_run

    done = state.get("run:key")
    inpainted = state.get("inpainted") or {}
    if not done or "run" not in done:
        return {}
    gates = load_run(db, done["run"])["results"].get("gate", [])
    iou = {sha: v for g in gates for sha, v in g.get("iou", {}).items()}
    out = {}
    for cls, shas in inpainted.items():
        scored = [iou[s] for s in shas if s in iou]
        out[cls] = rate(sum(v is not None and v >= threshold for v in scored), len(scored))
    return out


def _answer(beats: list[dict], key_rows: list[dict]) -> str:
    """The answer in one sentence: which arms beat real, or what the design could detect."""
    if beats:
        return "Beat real beyond noise: " + "; ".join(
            f"{r['arm']} ({r['metric']} {signed(r['delta']['estimate'])} "
            f"[{signed(r['delta']['low'])}, {signed(r['delta']['high'])}])" for r in beats) + "."
    smallest = [r["smallest_detectable"] for r in key_rows
                if r.get("smallest_detectable") is not None]
    return ("No arm beat real beyond noise" + (
        f"; the key comparison could detect a change of about {min(smallest):.3f} "
        f"{key_rows[0]['metric']} (80% power)" if smallest else "") + ".")


def summary_lines(summary: dict) -> list[str]:
    """The summary as text: the answer, then one line per arm."""
    lines = [f"recipe on {summary['dataset']}: {summary['answer']}"]
    lines += [f"  note: {n}" for n in summary["notes"]]
    for row in summary["rows"]:
        s = row["score"]
        text = (f"  {row['arm']:<55} {row['metric']} {s['estimate']:.3f} [{s['low']:.3f}, "
                f"{s['high']:.3f}]")
        if row.get("delta"):
            d = row["delta"]
            text += (f"  vs {row['against']}: {signed(d['estimate'])} [{signed(d['low'])}, "
                     f"{signed(d['high'])}]" + (f" p {d['p']:.2g}" if d.get("p") is not None
                                                 and math.isfinite(d["p"]) else "")
                     + (" *" if row["excludes_zero"] else ""))
        lines.append(text + f"  ({row['run']})")
    for cls, r in summary["gate"].items():
        if r["n"]:
            lines.append(f"  gate (IoU >= {summary['config']['gate_iou']:g}, cross-fitted): "
                         f"{cls} kept "
                         f"{r['accepted']}/{r['n']} = {r['rate']:.0%} [{r['ci'][0]:.0%}, "
                         f"{r['ci'][1]:.0%}]")
    for key, why in summary["refused"].items():
        lines.append(f"  {key}: refused: {why}")
    lines.append("  *: the paired 95% interval excludes zero")
    return lines


def _store_summary(db: Database, workspace: Workspace, config: RecipeConfig, folder: Path,
                   summary: dict) -> None:
    """``summary.json`` and ``recipe.html`` (linking every run's report) in the recipe's
    folder, and a run of kind ``recipe``."""
    from polyp_core.files import atomic_write
    from polyp_core.runs import new_run_dir, save_run

    atomic_write(folder / "summary.json", json.dumps(summary, indent=1).encode())

    def cell(d: dict | None) -> str:
        return "" if not d else f"{signed(d['estimate'])} [{signed(d['low'])}, " \
                                f"{signed(d['high'])}]"
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (
            r["arm"], f"{r['score']['estimate']:.3f} [{r['score']['low']:.3f}, "
                      f"{r['score']['high']:.3f}]", r.get("against", ""), cell(r.get("delta")),
            "yes" if r.get("excludes_zero") else ""))
        + f"<td><a href='../{html.escape(r['run'])}/report.html'>{html.escape(r['run'])}</a>"
        "</td></tr>" for r in summary["rows"])
    head = "".join(f"<th>{h}</th>" for h in ("arm", "score [95% CI]", "against",
                                            "paired difference [95% CI]", "excludes 0", "run"))
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>recipe</title></head>"
            "<body style='font-family:sans-serif;max-width:1100px;margin:1em auto'>",
            f"<h1>Does synthetic data help on {html.escape(summary['dataset'])}?</h1>",
            f"<p>{html.escape(summary['answer'])}</p>",
            f"<table border='1' cellpadding='4' style='border-collapse:collapse'><tr>{head}</tr>"
            f"{rows}</table>",
            *[f"<p>{html.escape(line.strip())}</p>" for line in summary_lines(summary)
              if "gate" in line or "refused" in line or "note" in line], "</body></html>"]
    atomic_write(folder / "recipe.html", "\n".join(page).encode())
    run_id, run_folder = new_run_dir(workspace, "recipe")
    save_run(db, workspace, run_id, run_folder, "recipe", config.to_json(), summary,
             {"runs": [r["run"] for r in summary["runs"].values()]})
