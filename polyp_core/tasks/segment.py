"""The segmentation task: a U-Net (segmentation-models-pytorch, the bundled EfficientNet-Lite0
encoder) per fold, arm and seed on the data set's masks, scored per test image (Dice, IoU,
pixel precision and recall) and summarised with the cluster bootstrap over test groups and
seeds; also a learning curve over shares of the real training groups, the selected synthetic
images alone, and a second real source (``polyp_core.tasks``' protocol)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from polyp_core.data.browse import overlay_mask
from polyp_core.data.cache import PixelCache
from polyp_core.data.tensors import ImageRef
from polyp_core.html_table import table
from polyp_core.segment.metrics import SCORES, mask_scores, summarise_scores
from polyp_core.segment.train import MaskTensors, load_masked, predict_masks, train_segmenter
from polyp_core.stats.seeds import paired_difference, spread
from polyp_core.stats.uncertainty import cluster_bootstrap_scores, paired_cluster_bootstrap_scores
from polyp_core.tasks import ALL_ARMS, AUGMENTED, EXPERT, GATED, SYNTHETIC, Plan, TaskJob

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from polyp_core.backbones import WeightsRegistry
    from polyp_core.data.manifest import Manifest
    from polyp_core.progress import CancelToken, Progress

ARMS = ALL_ARMS
NEEDS_MASKS = True
RESTS_ON = "its Dice"
DETECTABLE_CHANGE = False
CONFUSION = False
LINEAR_PROBE = False
REGRESSION_RULE = ("Dice is reported as a regression only when its difference's interval "
                   "excludes zero.")

#: overlays in the report: this many best and worst test images per arm
OVERLAYS = 3


def _train_sets(plan: Plan, size: int, pixels: PixelCache
                ) -> tuple[MaskTensors, MaskTensors | None, dict[str, int]]:
    """The real images and masks, the synthetic ones any fold adds, and where each synthetic
    image sits."""
    real = load_masked(plan.real, size, pixels)
    refs = plan.synthetic_refs
    synthetic = load_masked(refs, size, pixels) if refs else None
    return real, synthetic, {r.sha256: i for i, r in enumerate(refs)}


def arm_specs(config: Any) -> dict[str, tuple[str, float]]:
    """Every arm the run trains, by name: each arm of ``config.arms`` on the whole training
    part, and the real-data arms again on each share of ``real_fractions`` (``baseline 25%``)
    -> (arm, share of the real training groups)."""
    specs = {arm: (arm, 1.0) for arm in config.arms}
    for share in config.real_fractions:
        specs |= {f"{arm} {share:.0%}": (arm, share) for arm in config.arms if arm != SYNTHETIC}
    return specs


def arm_names(config: Any) -> list[str]:
    return list(arm_specs(config))


def _share_of_groups(fold_train: tuple[int, ...], plan: Plan, share: float,
                     seed: int) -> list[int]:
    """The training images of a seeded ``share`` of the fold's training groups, drawn per
    class (at least one group of each), the same for every arm and seed."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for i in fold_train:
        groups = by_class.setdefault(plan.real[i].label, [])
        if plan.group_of[i] not in groups:
            groups.append(plan.group_of[i])
    kept = set()
    for groups in by_class.values():
        order = rng.permutation(len(groups))
        kept |= {groups[k] for k in order[:max(1, int(np.ceil(share * len(groups))))]}
    return [i for i in fold_train if plan.group_of[i] in kept]


def _against_set(config: Any, pixels: PixelCache,
                 workspace_manifest: Callable[[str], Manifest]) -> tuple[MaskTensors, list[str]]:
    """The second source's images and masks at the run's size, and their groups."""
    manifest = workspace_manifest(config.against)
    items = list(manifest.items)
    refs = [ImageRef(i.sha256, i.image, i.label, mask=i.mask) for i in items]
    return load_masked(refs, config.train.image_size, pixels), [i.group or i.id for i in items]


def train_and_predict(config: Any, plan: Plan, workspace_pixels: PixelCache,
                      progress: Progress, cancel: CancelToken | None,
                      device: torch.device | None, registry: WeightsRegistry | None,
                      against: MaskTensors | None = None
                      ) -> tuple[dict, dict, MaskTensors, dict, dict]:
    """Train every (fold, arm, seed) and predict its fold's test masks (and, with ``against``,
    the second source's). Returns the per-image scores of each (arm, seed) in pooled test
    order, the per-fold training records, the pooled test images with their masks, the
    predicted masks, and the scores on the second source."""
    folds, cv = plan.folds, plan.evaluation["kind"] == "grouped cross-validation"
    real, synthetic, position = _train_sets(plan, config.train.image_size, workspace_pixels)
    tested = [i for fold in folds for i in fold.test]
    test_all = real.subset(tested)
    offsets = np.cumsum([0] + [len(fold.test) for fold in folds])
    specs = arm_specs(config)
    names = list(specs)
    units = [(f, name, seed) for f in range(len(folds)) for seed in config.seeds
             for name in names]
    predicted = {(name, seed): np.zeros(tuple(test_all.masks.shape), dtype=bool)
                 for name in names for seed in config.seeds}
    elsewhere: dict = {}
    info: dict = {(name, seed): [] for name in names for seed in config.seeds}
    for u, (f, name, seed) in enumerate(units):
        def unit_progress(done: int, total: int, message: str, u: int = u) -> None:
            progress(u * 1000 + int(1000 * done / max(total, 1)), len(units) * 1000, message)

        fold = folds[f]
        arm, share = specs[name]
        real_part = fold.train if share == 1.0 else _share_of_groups(
            fold.train, plan, share, config.cv_seed * 1000 + f)
        parts = [] if arm == SYNTHETIC else [real.subset(real_part)]
        if arm in (AUGMENTED, SYNTHETIC, GATED, EXPERT) and synthetic is not None:
            parts.append(synthetic.subset([position[r.sha256]
                                           for r in plan.arm_selection(f, arm).images]))
        train = MaskTensors.concat(parts)
        label = f"{fold.name + ' · ' if cv else ''}{name} seed {seed} ({u + 1}/{len(units)}) · "
        trained = train_segmenter(train, real.subset(fold.valid), config.train, seed, device,
                                  registry, unit_progress, cancel, label)
        used = next(trained.model.parameters()).device
        predicted[name, seed][offsets[f]:offsets[f + 1]] = predict_masks(
            trained.model, real.subset(fold.test), used)
        if against is not None:  # every fold's model on the whole second source
            elsewhere.setdefault((name, seed), []).append(mask_scores(
                predict_masks(trained.model, against, used), against.masks.numpy()))
        info[name, seed].append({"fold": fold.name, "best_epoch": trained.best_epoch,
                                 "valid_dice": trained.best_valid_dice if fold.valid else None,
                                 "history": trained.history, "n_train": len(train)})
        trained.model.to("cpu")
    truth = test_all.masks.numpy()
    scores = {key: mask_scores(mask, truth) for key, mask in predicted.items()}
    return scores, info, test_all, predicted, elsewhere


def _overlay_uri(rgb: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> str:
    """A PNG data URI: the truth outlined green, the prediction magenta."""
    shown = overlay_mask(overlay_mask(rgb, truth, (64, 255, 96)), predicted, (255, 64, 255))
    buffer = io.BytesIO()
    Image.fromarray(shown).resize((160, 160), Image.Resampling.NEAREST).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def overlays(scores: dict, test_all: MaskTensors, predicted_of: dict[str, np.ndarray],
             arms: tuple[str, ...], seed: int) -> dict:
    """The best and worst test images (by Dice, first seed) of every arm, as overlays."""
    out = {}
    pixels = test_all.pixels.permute(0, 2, 3, 1).numpy()
    truth = test_all.masks.numpy()
    for arm in arms:
        dice = scores[arm, seed]["dice"]
        ranked = [int(i) for i in np.argsort(np.where(np.isfinite(dice), dice, np.inf))
                  if np.isfinite(dice[i])]
        pick = {"worst": ranked[:OVERLAYS], "best": ranked[::-1][:OVERLAYS]}
        out[arm] = {which: [{"image": test_all.refs[i].sha256[:12], "dice": float(dice[i]),
                             "uri": _overlay_uri(pixels[i], truth[i], predicted_of[arm][i])}
                            for i in idx] for which, idx in pick.items()}
    return out


def segmentation_results(config: Any, plan: Plan, scores: dict,
                         info: dict) -> dict:
    """Per arm and seed the mean scores (with the per-image scores kept for the bootstrap);
    over seeds mean ± std [t interval]; over test groups and seeds the cluster-bootstrap 95%
    intervals, per class where the data set has classes; and the paired deltas with their
    regression warnings."""
    cv = plan.evaluation["kind"] == "grouped cross-validation"
    groups = plan.design["of_image"]
    tested = [i for fold in plan.folds for i in fold.test]
    labels = [plan.real[i].label for i in tested]
    arms: dict = {}
    names = arm_names(config)
    for arm in names:
        rows = []
        for seed in config.seeds:
            s = scores[arm, seed]
            row = summarise_scores(s) | {"seed": seed,
                                         "scores": {m: s[m].tolist() for m in SCORES}}
            if cv:
                row["folds"] = info[arm, seed]
            else:
                row |= {k: v for k, v in info[arm, seed][0].items() if k != "fold"}
            rows.append(row)
        arms[arm] = {"per_seed": rows, "summary": {
            m: spread([r[m] for r in rows], bounds=(0.0, 1.0)) for m in SCORES}}
    per_image = {arm: {m: np.array([scores[arm, s][m] for s in config.seeds]) for m in SCORES}
                 for arm in names}
    classes = [c for c in plan.classes if c in set(labels)]  # the scheme's order

    def of_class(values: np.ndarray, cls: str) -> np.ndarray:
        return np.where(np.array(labels) == cls, values, np.nan)

    uncertainty = {}
    about = {"groups": len(set(map(str, groups))), "seeds": len(config.seeds), "n_boot": 2000,
             "method": "cluster bootstrap over test groups, with seeds"}
    for arm in names:
        uncertainty[arm] = {m: cluster_bootstrap_scores(per_image[arm][m], groups)
                            for m in SCORES} | about
        if len(classes) > 1:
            uncertainty[arm]["per_class"] = {c: {"dice": cluster_bootstrap_scores(
                of_class(per_image[arm]["dice"], c), groups)} for c in classes}
    results = {"task": "segmentation", "classes": classes, "scheme": plan.scheme,
               "evaluation": plan.evaluation, "arms": arms, "uncertainty": uncertainty,
               "test_groups": plan.design}
    if {"baseline", "augmented"} <= set(config.arms):
        a, b = per_image["augmented"], per_image["baseline"]
        results["delta"] = {m: paired_difference([r[m] for r in arms["augmented"]["per_seed"]],
                                                 [r[m] for r in arms["baseline"]["per_seed"]])
                            for m in SCORES}
        results["delta_cluster"] = {m: paired_cluster_bootstrap_scores(a[m], b[m], groups)
                                    for m in SCORES} | about
        if len(classes) > 1:
            results["delta_cluster"]["per_class"] = {c: {"dice": paired_cluster_bootstrap_scores(
                of_class(a["dice"], c), of_class(b["dice"], c), groups)} for c in classes}
        results["warnings"] = _regressions(results["delta_cluster"], classes)
    for arm, key in (("gated", "delta_gate"), ("expert", "delta_expert")):
        if {arm, "augmented"} <= set(config.arms):  # the gate paper's comparisons
            g, a = per_image[arm], per_image["augmented"]
            results[key] = {m: paired_difference(
                [r[m] for r in arms[arm]["per_seed"]], [r[m] for r in arms["augmented"]["per_seed"]])
                for m in SCORES}
            results[f"{key}_cluster"] = {m: paired_cluster_bootstrap_scores(g[m], a[m], groups)
                                         for m in SCORES} | about
    return results


def _regressions(delta: dict, classes: list[str]) -> list[dict]:
    """A warning where Dice fell (overall or in a class); beyond noise when the whole paired
    interval is below 0."""
    found = [("all test images", delta["dice"])]
    found += [(c, delta["per_class"][c]["dice"]) for c in classes if "per_class" in delta]
    return [{"class": where, "metric": "dice", "delta": d["estimate"], "ci": [d["low"], d["high"]],
             "beyond_noise": d["high"] < 0,
             "text": f"Dice on {where} fell by {-d['estimate']:.3f} (95% CI {d['low']:+.3f} to "
                     f"{d['high']:+.3f}, p={d['p']:.3g})"}
            for where, d in found if d["estimate"] < 0]


def against_results(config: Any, elsewhere: dict, groups: list[str]) -> dict:
    """Every arm's models on the second source: per image the mean over the folds' models,
    then the cluster bootstrap over that source's groups and the seeds."""
    out = {"dataset": config.against, "images": len(groups),
           "groups": len(set(groups)), "arms": {}}
    for arm in arm_names(config):
        per_seed = {m: np.array([np.nanmean([s[m] for s in elsewhere[arm, seed]], axis=0)
                                 for seed in config.seeds]) for m in SCORES}
        out["arms"][arm] = {m: cluster_bootstrap_scores(per_seed[m], groups) for m in SCORES}
    return out


def check_request(config: Any, load_manifest: Callable[[str], Manifest]) -> None:
    """Segmentation stops early on an inner validation split (no refit, no probe); a second
    source (``against``) needs a mask on every image."""
    if config.refit or config.linear_probe:
        raise ValueError("`refit` and `linear_probe` are for classification; segmentation "
                         "stops early on an inner validation split (`inner_valid`) or "
                         "trains fixed epochs (`inner_valid` 0)")
    if config.against:
        other = load_manifest(config.against).items
        missing = [i.id for i in other if not i.mask]
        if missing:
            raise ValueError(f"`against`: data set {config.against!r} has {len(missing)} "
                             f"images without a mask (e.g. {', '.join(missing[:3])})")


def run(job: TaskJob) -> dict:
    """Train and score every arm; the run's results (overlays and the second source
    included)."""
    config, plan, pixels = job.config, job.plan, job.pixels
    against, against_groups = (None, [])
    if config.against:
        against, against_groups = _against_set(config, pixels, job.load_manifest)
    scores, info, test_all, predicted, elsewhere = train_and_predict(
        config, plan, pixels, job.progress, job.cancel, job.device, job.registry, against)
    results = segmentation_results(config, plan, scores, info)
    first = config.seeds[0]
    results["overlays"] = overlays(scores, test_all,
                                   {arm: predicted[arm, first] for arm in config.arms},
                                   config.arms, first)
    if against is not None:
        results["against"] = against_results(config, elsewhere, against_groups)
    return results


def metric_rows(results: dict) -> list[tuple[str, tuple]]:
    """The metric table's rows: per test image with a polyp, then averaged; per class Dice
    where the data set has classes."""
    names = [("Dice", ("dice",)), ("IoU", ("iou",)), ("pixel precision", ("precision",)),
             ("pixel recall", ("recall",))]
    return names + [(f"{c} Dice", ("per_class", c, "dice")) for c in results["classes"]
                    if len(results["classes"]) > 1]


def differences(a: dict, b: dict) -> dict:
    """Mean of ``b`` minus mean of ``a`` for Dice, IoU, precision and recall."""
    return {m: b[m]["mean"] - a[m]["mean"] for m in SCORES}


def methods(config: dict, results: dict, cv: bool) -> str:
    train, seeds = config["train"], ", ".join(str(s) for s in config["seeds"])
    return (
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
        "got a predicted polyp).")


def report_parts(results: dict) -> list[str]:
    """The second source's figures, empty test images per arm, and overlays of each arm's best
    and worst test images."""
    parts = []
    if "against" in results:
        other = results["against"]
        parts += [f"<h2>Tested on {html.escape(other['dataset'])} too ({other['images']} images, "
                  f"{other['groups']} groups; every fold's model, averaged per image; 95% CI over "
                  "its groups and the seeds)</h2>",
                  table(["arm", *SCORES],
                         [[arm, *(f"{s[m]['estimate']:.3f} [{s[m]['low']:.3f}, {s[m]['high']:.3f}]"
                                  for m in SCORES)]
                          for arm, s in other["arms"].items()])]
    parts += ["<h2>Test images without a polyp</h2>",
             table(["arm", "seed", "images with a polyp", "images without", "of these, with a "
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


def delta_figure(results: dict) -> go.Figure:
    """Change in Dice (augmented − baseline), overall and per class, with the paired 95%
    interval over test groups and seeds."""
    import plotly.graph_objects as go

    delta = results["delta_cluster"]
    names = ["all", *delta.get("per_class", {})]
    d = [delta["dice"], *(delta["per_class"][c]["dice"] for c in names[1:])]
    means = [x["estimate"] for x in d]
    figure = go.Figure(go.Bar(
        x=names, y=means, marker_color=["#d62728" if m < 0 else "#2ca02c" for m in means],
        error_y=dict(type="data", symmetric=False, array=[x["high"] - x["estimate"] for x in d],
                     arrayminus=[x["estimate"] - x["low"] for x in d])))
    figure.update_layout(title="Change in Dice, augmented − baseline (95% CI over patients/"
                               "lesions and seeds)", yaxis_title="Δ Dice", height=360,
                         margin=dict(l=40, r=20, t=50, b=40))
    return figure
