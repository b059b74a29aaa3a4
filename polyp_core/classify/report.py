"""A run's report: one self-contained HTML file (no script, no external resource) for a paper's
supplement: the design table, a methods paragraph written from the stored config, the results
with their intervals, the confusion matrices and the warnings."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.classify.figures import metric_table

if TYPE_CHECKING:
    from collections.abc import Callable

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;
font-size:13px;text-align:left}th{background:#eee}.warn{color:#a00}p{line-height:1.5}"""


def _table(header: list, rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def methods_paragraph(config: dict, results: dict) -> str:
    """What was done, in words, from the stored config and results."""
    train, policy = config["train"], config["policy"]
    cv = results.get("evaluation", {}).get("kind") == "grouped cross-validation"
    design = results.get("test_groups", {})
    table = design.get("table", {})
    def count(split: str, key: str) -> int:
        return sum(v[key] for v in table.get(split, {}).values())
    seeds = ", ".join(str(s) for s in config["seeds"])
    segmentation = results.get("task") == "segmentation"
    text = [
        f"U-Nets (segmentation-models-pytorch; encoder {train['backbone']} with ImageNet "
        f"weights, {train['image_size']} px, "
        f"{'encoder frozen, decoder trained' if train['freeze_backbone'] else 'fine-tuned'}; "
        f"Dice + binary cross-entropy loss; AdamW, learning rate {train['lr']:g}, at most "
        f"{train['epochs']} epochs with early stopping on validation Dice after "
        f"{train['patience']} epochs without improvement; flips and quarter turns on image and "
        f"mask {'on' if train['augment'] else 'off'}) were trained on the training "
        f"{'part of every fold' if cv else 'split'} of data set {config['dataset']} with seeds "
        f"{seeds}; every arm used the same {'folds' if cv else 'split'}, seeds and input "
        "normalisation. Dice, IoU and pixel precision and recall are computed per test image "
        "with a polyp and averaged; test images without a polyp are counted apart (how many "
        "got a predicted polyp)." if segmentation else
        f"Classifiers ({train['backbone']}, ImageNet weights, {train['image_size']} px, "
        f"{'backbone frozen, head trained' if train['freeze_backbone'] else 'fine-tuned'}; "
        f"AdamW, learning rate {train['lr']:g}, at most {train['epochs']} epochs with early "
        f"stopping on validation macro-F1 after {train['patience']} epochs without improvement; "
        f"class imbalance: {train['imbalance']}; augmentation "
        f"{'on' if train['augment'] else 'off'}) were trained on the training "
        f"{'part of every fold' if cv else 'split'} of data set "
        f"{config['dataset']} (label scheme {results['scheme']}) with seeds {seeds}; every arm "
        f"used the same {'folds' if cv else 'split'}, seeds and input normalisation.",
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
            + ("Dice is reported as a regression only when its difference's interval excludes "
               "zero." if segmentation else "A class is reported as a regression only when its "
               "difference's interval excludes zero."))
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
    """``report.html`` in the run's folder."""
    header, rows = metric_table(results)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run_id)}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>Retraining run {html.escape(run_id)}</h1>",
             f"<p>{html.escape(config.get('name') or '')} · written "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by Polyp Studio</p>",
             "<h2>Methods</h2>", f"<p>{html.escape(methods_paragraph(config, results))}</p>"]
    design = results.get("test_groups")
    if design:
        classes = results["classes"]
        parts += ["<h2>Design: groups / images per class</h2>",
                  _table(["part", *classes], [[split, *(f"{v['groups']} / {v['images']}"
                                                         for v in table.values())]
                                               for split, table in design["table"].items()])]
        parts += [f"<p class='warn'>{html.escape(line.replace('`', ''))}</p>"
                  for line in design.get("warnings", [])]
    gates = results.get("gate")
    if gates:
        parts += ["<h2>Segmentation gate</h2>",
                  f"<p>Each fold's gate (a U-Net trained on that fold's real training part only) "
                  f"kept the synthetic images whose predicted mask met their own at IoU &ge; "
                  f"{gates[0]['threshold']:g}.</p>",
                  _table(["fold", "gate learned from (real images)", "scored", "kept"],
                         [[g["fold"], len(g["trained_on"]), g["scored"], g["kept"]]
                          for g in gates])]
    per_fold = results.get("selection", {}).get("per_fold")
    if per_fold:
        classes = results["classes"]
        parts += ["<h2>Synthetic images added in each fold</h2>",
                  _table(["fold", *classes, "eligible in the pool"],
                         [[f"fold {k + 1}", *(c["selected"].get(cls, 0) for cls in classes),
                           sum(c["eligible"].values())] for k, c in enumerate(per_fold)])]
    made = results.get("selection", {}).get("generators")
    if made:
        parts += ["<h2>Where the synthetic images came from</h2>",
                  _table(["generator", "images (any fold)", "made", "trained on", "version",
                          "source", "licence"],
                         [[g["generator"], g["images"], g["made"], g.get("trained_on") or "",
                           g.get("version") or "", g.get("source") or "", g.get("licence") or ""]
                          for g in made])]
    cv = results.get("evaluation", {}).get("kind") == "grouped cross-validation"
    parts += [f"<h2>Results on the {'pooled out-of-fold predictions' if cv else 'test split'}"
              "</h2>", _table(header, rows)]
    for warning in results.get("warnings", []):
        parts.append(f"<p class='warn'>Regression: {html.escape(warning['text'])}</p>")
    if results.get("task") == "segmentation":
        parts += _segmentation_parts(results)
        return _write(folder, parts)
    parts.append("<h2>Confusion matrices (rows: truth; summed over seeds)</h2>")
    for arm, data in results["arms"].items():
        matrix = data["summary"]["confusion_sum"]
        parts += [f"<h3>{html.escape(arm)}</h3>",
                  _table(["truth \\ predicted", *results["classes"]],
                         [[c, *row] for c, row in zip(results["classes"], matrix)])]
    return _write(folder, parts)


def _write(folder: Path, parts: list[str]) -> Path:
    parts.append("</body></html>")
    path = Path(folder) / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _segmentation_parts(results: dict) -> list[str]:
    """The second source's figures, empty test images per arm, and overlays of each arm's best
    and worst test images."""
    parts = []
    if "against" in results:
        other = results["against"]
        parts += [f"<h2>Tested on {html.escape(other['dataset'])} too ({other['images']} images, "
                  f"{other['groups']} groups; every fold's model, averaged per image; 95% CI over "
                  "its groups and the seeds)</h2>",
                  _table(["arm", *(m for m in ("dice", "iou", "precision", "recall"))],
                         [[arm, *(f"{s[m]['estimate']:.3f} [{s[m]['low']:.3f}, {s[m]['high']:.3f}]"
                                  for m in ("dice", "iou", "precision", "recall"))]
                          for arm, s in other["arms"].items()])]
    parts += ["<h2>Test images without a polyp</h2>",
             _table(["arm", "seed", "images with a polyp", "images without", "of these, with a "
                     "predicted polyp"],
                    [[arm, r["seed"], r["images_with_polyp"], r["empty_images"],
                      r["empty_false_positives"]]
                     for arm, data in results["arms"].items() for r in data["per_seed"]])]
    for arm, shown in results.get("overlays", {}).items():
        parts.append(f"<h2>{html.escape(arm)}: best and worst test images (first seed; truth "
                     "green, prediction magenta)</h2>")
        for which in ("best", "worst"):
            parts.append(f"<p>{which}: " + " ".join(
                f"<img src='{o['uri']}' title='{html.escape(o['image'])} Dice {o['dice']:.3f}' "
                f"alt='{which} {html.escape(o['image'])}'>" for o in shown[which]) + "</p>")
    return parts
