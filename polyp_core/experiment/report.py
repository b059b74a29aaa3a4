"""A run's report: one self-contained HTML file (no script, no external resource; its charts are
inline SVG) for a paper's supplement. The answer comes first: the question, a one-sentence
verdict and a forest plot of the paired differences, with any regression; then the per-class
charts, the learning curve, what entered training and every figure with its interval; the
methods paragraph (written from the stored config) and the design folded below."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.experiment.charts import class_chart, learning_curve
from polyp_core.experiment.figures import evaluation_line, metric_table
from polyp_core.experiment.verdict import forest_svg, question, regression_flags, verdict
from polyp_core.html_table import table
from polyp_core.tasks import task_of

if TYPE_CHECKING:
    from collections.abc import Callable

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:1em auto;color:#222}
h1{font-size:22px;margin:0 0 .4em}.verdict{font-size:17px;line-height:1.45;margin:.4em 0}
.sub{color:#666;font-size:12px}figure{margin:.5em 0}details{margin:1em 0}
summary{cursor:pointer;font-weight:bold;font-size:17px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;
font-size:13px;text-align:left}th{background:#eee}.warn{color:#a00}p{line-height:1.5}"""


def methods_paragraph(config: dict, results: dict) -> str:
    """What was done, in words, from the stored config and results."""
    policy = config["policy"]
    cv = results.get("evaluation", {}).get("kind") == "grouped cross-validation"
    design = results.get("test_groups", {})
    parts = design.get("table", {})

    def count(split: str, key: str) -> int:
        return sum(v[key] for v in parts.get(split, {}).values())
    text = [
        task_of(results).methods(config, results, cv),
        _evaluation_sentence(results, count),
    ]
    if "augmented" in results["arms"]:
        selected = results.get("selection", {}).get("counts", {}).get("selected", {})
        text.append(
            f"The augmented arm added {sum(selected.values())} synthetic images "
            f"({', '.join(f'{c}: {n}' for c, n in selected.items())}) chosen by the selection "
            f"policy (quality at least {policy.get('min_quality') or 'any'} from at least "
            f"{policy['min_reviewers']} reviewer(s), verdict rule {policy['verdict']}, unrated "
            f"images {policy['unrated']}); no generator that supplied them had seen a validation "
            "or test image." if not cv else
            f"In every fold the augmented arm added the synthetic images the selection policy "
            f"chose for that fold's training counts (fold 1: {sum(selected.values())}; "
            f"{', '.join(f'{c}: {n}' for c, n in selected.items())}; quality at least "
            f"{policy.get('min_quality') or 'any'} from at least {policy['min_reviewers']} "
            f"reviewer(s), verdict rule {policy['verdict']}, unrated images {policy['unrated']}); "
            "no generator that supplied a fold had learned from an image of a group in that "
            "fold's validation or test part.")
    if any(name.startswith("linear probe") for name in results["arms"]):
        probe = next(rows["per_seed"][0]["probe"] for name, rows in results["arms"].items()
                     if name.startswith("linear probe"))
        text.append("A linear probe (logistic regression on the frozen backbone's pooled features, "
                    f"standardised, classes weighted; {probe['how']}) was fitted on each arm's "
                    "training images as the baseline a network must beat.")
    uncertainty = next(iter(results.get("uncertainty", {}).values()), None)
    if uncertainty:
        text.append(
            f"95% confidence intervals come from a cluster bootstrap ({uncertainty['n_boot']} "
            f"replicates) over the {uncertainty['groups']} test units, each replicate also "
            "redrawing the training seeds; differences between arms are paired (the same units "
            "and seeds in both arms) with two-sided bootstrap p-values. "
            + task_of(results).REGRESSION_RULE)
    return " ".join(text)


def _evaluation_sentence(results: dict, count: Callable[[str, str], int]) -> str:
    design, ev = results.get("test_groups", {}), results.get("evaluation", {"kind": "fixed split"})
    pooled = design.get("pooled", "test")
    why = f" ({ev['chosen']})" if ev.get("chosen") else ""
    if ev["kind"] != "grouped cross-validation":
        return (f"The split was fixed (train/valid/test){why}; the test split held "
                f"{count('test', 'images')} images from {count('test', 'groups')} independent "
                f"units ({design.get('unit', '?')}) and was used for nothing but this evaluation.")
    unit = ("patient/lesion/video" if ev.get("grouped") else
            "image, because the data set names no patients or lesions (frame-level folds: frames "
            "of one polyp may sit in different folds, so the figures may be optimistic)")
    # runs stored before inner validation kept the next fold for early stopping
    validation = ev.get("validation", "networks and the linear probe: early stopping on the "
                                      "next fold, trained on the remaining folds")
    text = (f"Evaluation was {ev['folds']}-fold cross-validation{why}, folds stratified by class "
            f"and grouped by {unit} (fold seed {ev['seed']}); each fold's models learned from "
            f"its training part (everything but its test part; {validation}) and were tested "
            "on their own fold, and metrics come from the pooled out-of-fold predictions of "
            f"{count(pooled, 'images')} images from {count(pooled, 'groups')} independent units.")
    if ev.get("groups_learned"):
        learned, probe = ev["groups_learned"], ev.get("groups_learned_probe", ev["groups_learned"])
        text += (f" Networks learned from {min(learned)}-{max(learned)} groups per fold"
                 + (f", the linear probe from {min(probe)}-{max(probe)}" if probe != learned
                    else "") + ".")
    if ev.get("train_only_groups"):
        text += (f" {ev['train_only_groups']} groups ({ev['train_only_images']} images) that a "
                 "supplying generator had learned from trained in every fold and were never "
                 "tested.")
    return text


def write_report(folder: Path, run_id: str, config: dict, results: dict) -> Path:
    """``report.html`` in the run's folder: the question, the verdict, the forest plot and any
    regression on the first screen; the charts, what entered training and the full table below;
    the methods and the design folded under headings that open."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run_id)}"
             f"</title><style>{STYLE}</style></head><body>"]
    parts += answer_parts(results, config)
    parts.append(f"<p class='sub'>Retraining run {html.escape(run_id)} · "
                 f"{html.escape(config.get('name') or '')} · "
                 f"{html.escape(evaluation_line(results))} · written "
                 f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by Polyp Studio</p>")
    parts += chart_parts(results)
    parts += _entered_training(results)
    header, rows = metric_table(results)
    cv = results.get("evaluation", {}).get("kind") == "grouped cross-validation"
    parts += [f"<h2>All figures on the {'pooled out-of-fold predictions' if cv else 'test split'}"
              "</h2>", table(header, rows)]
    parts += ["<details><summary>Methods</summary>",
              f"<p>{html.escape(methods_paragraph(config, results))}</p></details>"]
    design = results.get("test_groups")
    if design:
        classes = results["classes"]
        warnings = design.get("warnings", [])
        parts += [f"<details><summary>Design: groups / images per class"
                  f"{f' ({len(warnings)} notes)' if warnings else ''}</summary>",
                  table(["part", *classes], [[split, *(f"{v['groups']} / {v['images']}"
                                                         for v in table.values())]
                                               for split, table in design["table"].items()])]
        parts += [f"<p class='warn'>{html.escape(line.replace('`', ''))}</p>"
                  for line in warnings]
        parts.append("</details>")
    parts += task_of(results).report_parts(results)
    return _write(folder, parts)


def answer_parts(results: dict, config: dict | None = None) -> list[str]:
    """The first screen (the report's, and the Retrain tab's): the question, the verdict in
    one sentence, the forest plot of every paired difference, and any regression flag."""
    parts = [f"<h1>{html.escape(question(results, config))}</h1>",
             f"<p class='verdict' id='verdict'>{html.escape(verdict(results))}</p>"]
    plot = forest_svg(results)
    if plot:
        parts.append(f"<figure>{plot}</figure>")
    parts += [f"<p class='warn'>Regression: {html.escape(flag)}</p>"
              for flag in regression_flags(results)]
    return parts


def chart_parts(results: dict) -> list[str]:
    """Per-class results with intervals (each arm beside the baseline) and, for a run with
    shares of the real data, the learning curve with its bands."""
    parts = []
    plot = class_chart(results)
    if plot:
        parts += ["<h2>Per class, every arm</h2>", f"<figure>{plot}</figure>"]
    plot = learning_curve(results)
    if plot:
        parts += ["<h2>Learning curve</h2>", f"<figure>{plot}</figure>"]
    return parts


def _entered_training(results: dict) -> list[str]:
    """What the gate and the experts kept, the images each fold added, and their makers."""
    parts = []
    counts = results.get("selection", {}).get("counts")
    if counts:
        dropped = counts.get("dropped", {})
        parts += ["<h2>What entered training</h2>",
                  f"<p>The selection policy read {counts.get('ratings_read', 0)} ratings and "
                  f"kept {sum(counts.get('selected', {}).values())} of "
                  f"{counts.get('candidates', 0)} candidate images"
                  + (" (dropped: " + ", ".join(f"{why.replace('_', ' ')} {n}"
                                               for why, n in dropped.items()) + ")"
                     if dropped else "") + ".</p>"]
    gates = results.get("gate")
    if gates:
        crossed = "cross_fitted" in gates[0]
        how = ("cross-fitted U-Nets on that fold's real training part: each image was scored by "
               "one that never learnt from a frame the image was made of" if crossed else
               "a U-Net trained on that fold's real training part only")
        parts += ["<h3>Segmentation gate</h3>", f"<p>Each fold's gate ({how}) kept the synthetic images whose predicted mask "
                  f"met their own at IoU &ge; {gates[0]['threshold']:g}: "
                  f"{sum(g['kept'] for g in gates)} of {sum(g['scored'] for g in gates)} over "
                  "the folds.</p>",
                  table(["fold", "gates: real images each learned from", "scored", "kept"],
                        [[g["fold"], ", ".join(str(c["learned_from"]) for c in
                                               g["cross_fitted"].values()) if crossed
                          else len(g["trained_on"]), g["scored"], g["kept"]] for g in gates])]
    per_fold = results.get("selection", {}).get("per_fold")
    if per_fold:
        classes = results["classes"]
        parts += ["<h3>Synthetic images added in each fold</h3>",
                  table(["fold", *classes, "eligible in the pool"],
                        [[f"fold {k + 1}", *(c["selected"].get(cls, 0) for cls in classes),
                          sum(c["eligible"].values())] for k, c in enumerate(per_fold)])]
    made = results.get("selection", {}).get("generators")
    if made:
        parts += ["<h3>Where the synthetic images came from</h3>",
                  table(["generator", "images (any fold)", "made", "trained on", "version",
                         "source", "licence"],
                        [[g["generator"], g["images"], g["made"], g.get("trained_on") or "",
                          g.get("version") or "", g.get("source") or "", g.get("licence") or ""]
                         for g in made])]
    return parts


def _write(folder: Path, parts: list[str]) -> Path:
    parts.append("</body></html>")
    path = Path(folder) / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
