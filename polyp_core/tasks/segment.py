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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from polyp_core.data.browse import overlay_mask
from polyp_core.data.cache import PixelCache
from polyp_core.data.tensors import ImageRef
from polyp_core.executors import Executor, LocalExecutor
from polyp_core.html_table import table
from polyp_core.segment.metrics import SCORES, mask_scores, summarise_scores
from polyp_core.segment.train import (FullSizeTruth, MaskTensors, full_size_scores, load_masked,
                                      predict_logits, train_segmenter)
from polyp_core.stats.seeds import paired_difference, spread
from polyp_core.stats.uncertainty import cluster_bootstrap_scores, paired_cluster_bootstrap_scores
from polyp_core.tasks import (ALL_ARMS, AUGMENTED, BASELINE, COMPARED, EXPERT, GATED, PAIRS,
                              SYNTHETIC, Plan, TaskJob, real_counterpart, training_units)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from polyp_core.backbones import WeightsRegistry
    from polyp_core.data.manifest import Manifest
    from polyp_core.progress import CancelToken, Progress

ARMS = ALL_ARMS
NEEDS_MASKS = True
RESTS_ON = "its Dice"
DETECTABLE_CHANGE = False
#: a U-Net's decoder trains from scratch: at the classifier's 3e-4 it under-fits (NeoPolyp,
#: 128 px, 12 epochs, as measured when this default was chosen: Dice 0.733 against 0.811 at
#: 1e-3), and a plain segmentation-models-pytorch loop trains at 1e-3, batch 16;
#: ``bench/bench_segment.py`` compares the two (docs/benchmarks.md).
#: The schedule is the shared one (one warm-up epoch, then cosine to zero: a one-cycle shape).
TRAIN_DEFAULTS = {"lr": 1e-3, "batch_size": 16}
CONFUSION = False
#: the verdict's figure (at each mask's own size; runs stored before it: the working size)
HEADLINE = ("Dice", ("full", "dice"))
CLASS_SCORE = ("Dice", "dice")
REGRESSION_SCORES = ("dice",)
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


@dataclass
class Elsewhere:
    """Another real source every model is tested on (``against``): its images and masks at
    the run's size, the refs (for scores at each mask's own size) and each image's group."""

    name: str
    data: MaskTensors
    groups: list[str]


def _against_sets(config: Any, pixels: PixelCache,
                  workspace_manifest: Callable[[str], Manifest]) -> list[Elsewhere]:
    """Each other source's images and masks at the run's size, and their groups."""
    out = []
    for name in config.against:
        items = list(workspace_manifest(name).items)
        refs = [ImageRef(i.sha256, i.image, i.label, mask=i.mask) for i in items]
        out.append(Elsewhere(name, load_masked(refs, config.train.image_size, pixels),
                             [i.group or i.id for i in items]))
    return out


def _concat_scores(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class Shared:
    """What every training of a run reads (sent once to an executor's workers): the request,
    the plan, the images and masks, the other sources, the weights registry."""

    config: Any
    plan: Plan
    real: MaskTensors
    synthetic: MaskTensors | None
    position: dict[str, int]
    against: list[Elsewhere]
    registry: WeightsRegistry | None


def train_unit(shared: Shared, unit: tuple, progress: Progress, cancel: CancelToken | None,
               device: torch.device | None) -> dict:
    """One (fold, arm, seed): train a U-Net on the arm's training set, and return its logits
    on the fold's test part and on every other source (the caller scores them) and the
    fold's training record."""
    f, name, seed, label = unit
    config, plan, real, synthetic = shared.config, shared.plan, shared.real, shared.synthetic
    fold = plan.folds[f]
    arm, share = arm_specs(config)[name]
    real_part = fold.train if share == 1.0 else _share_of_groups(
        fold.train, plan, share, config.cv_seed * 1000 + f)
    parts = [] if arm == SYNTHETIC else [real.subset(real_part)]
    if arm in (AUGMENTED, SYNTHETIC, GATED, EXPERT) and synthetic is not None:
        parts.append(synthetic.subset([shared.position[r.sha256]
                                       for r in plan.arm_selection(f, arm).images]))
    train = MaskTensors.concat(parts)
    trained = train_segmenter(train, real.subset(fold.valid), config.train, seed, device,
                              shared.registry, progress, cancel, label)
    used = next(trained.model.parameters()).device
    return {"logits": predict_logits(trained.model, real.subset(fold.test), used),
            "against": [predict_logits(trained.model, other.data, used)
                        for other in shared.against],
            "info": {"fold": fold.name, "best_epoch": trained.best_epoch,
                     "valid_dice": trained.best_valid_dice if fold.valid else None,
                     "history": trained.history, "n_train": len(train)}}


def train_and_predict(config: Any, plan: Plan, workspace_pixels: PixelCache,
                      progress: Progress, cancel: CancelToken | None,
                      device: torch.device | None, registry: WeightsRegistry | None,
                      against: list[Elsewhere] | None = None,
                      executor: Executor | None = None
                      ) -> tuple[dict, dict, MaskTensors, dict, dict]:
    """Train every (fold, arm, seed) on ``executor`` (:func:`train_unit`; here, one after
    another, when None) and score its fold's test masks (and every ``against`` source's) here,
    as each training returns. Returns the per-image scores of each (arm, seed) in pooled test
    order, at the working size and (key ``full``) at each mask's own size; the per-fold
    training records; the pooled test images with their masks; the predicted masks; and the
    scores on each other source, ``{(source, arm, seed): [per fold's model: scores (with
    ``full``)]}``."""
    folds, cv = plan.folds, plan.evaluation["kind"] == "grouped cross-validation"
    real, synthetic, position = _train_sets(plan, config.train.image_size, workspace_pixels)
    tested = [i for fold in folds for i in fold.test]
    test_all = real.subset(tested)
    offsets = np.cumsum([0] + [len(fold.test) for fold in folds])
    names = arm_names(config)
    units, labels = training_units([fold.name for fold in folds], cv, names, config.seeds)
    truth = FullSizeTruth()
    others = against or []

    def scored(unit: tuple, outcome: dict) -> dict:
        """A training's logits, scored here (the full-size masks are read in this process)."""
        f = unit[0]
        logits = outcome["logits"]
        return {"predicted": (logits > 0).numpy(), "info": outcome["info"],
                "full": full_size_scores(logits, [real.refs[i] for i in folds[f].test], truth),
                "against": [mask_scores((o > 0).numpy(), other.data.masks.numpy())
                            | {"full": full_size_scores(o, other.data.refs, truth)}
                            for o, other in zip(outcome["against"], others)]}

    shared = Shared(config, plan, real, synthetic, position, others, registry)
    outcomes = (executor or LocalExecutor()).map(
        train_unit, shared, units, labels, progress, cancel, device, scored)
    predicted = {(name, seed): np.zeros(tuple(test_all.masks.shape), dtype=bool)
                 for name in names for seed in config.seeds}
    full: dict = {(name, seed): [] for name in names for seed in config.seeds}
    info: dict = {(name, seed): [] for name in names for seed in config.seeds}
    elsewhere: dict = {}
    for (f, name, seed, _), outcome in zip(units, outcomes):
        predicted[name, seed][offsets[f]:offsets[f + 1]] = outcome["predicted"]
        full[name, seed].append(outcome["full"])
        info[name, seed].append(outcome["info"])
        for other, scores in zip(others, outcome["against"]):
            elsewhere.setdefault((other.name, name, seed), []).append(scores)
    truth_small = test_all.masks.numpy()
    scores = {key: mask_scores(mask, truth_small) | {"full": _concat_scores(full[key])}
              for key, mask in predicted.items()}
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


ABOUT = {"n_boot": 2000, "method": "cluster bootstrap over test groups, with seeds"}


def _at(scores: dict, full: bool) -> dict:
    """An image set's scores at the working size, or (``full``) at each mask's own size."""
    return scores["full"] if full else scores


def _intervals(values: dict[str, np.ndarray], groups: list[str],
               of_class: dict[str, np.ndarray] | None = None) -> dict:
    """Each score's cluster-bootstrap interval over ``groups`` and the seeds (``values``: one
    row of per-image scores per seed), and Dice per class where ``of_class`` marks each
    class's images."""
    out = {m: cluster_bootstrap_scores(values[m], groups) for m in SCORES}
    if of_class:
        out["per_class"] = {c: {"dice": cluster_bootstrap_scores(
            np.where(mine, values["dice"], np.nan), groups)} for c, mine in of_class.items()}
    return out


def _paired(a: dict[str, np.ndarray], b: dict[str, np.ndarray], groups: list[str],
            of_class: dict[str, np.ndarray] | None = None) -> dict:
    """``a - b`` of each score on the same images, with its paired interval and p (and Dice
    per class where ``of_class`` is given)."""
    out = {m: paired_cluster_bootstrap_scores(a[m], b[m], groups) for m in SCORES}
    if of_class:
        out["per_class"] = {c: {"dice": paired_cluster_bootstrap_scores(
            np.where(mine, a["dice"], np.nan), np.where(mine, b["dice"], np.nan), groups)}
            for c, mine in of_class.items()}
    return out


def segmentation_results(config: Any, plan: Plan, scores: dict,
                         info: dict) -> dict:
    """Per arm and seed the mean scores (with the per-image scores kept for the bootstrap);
    over seeds mean ± std [t interval]; over test groups and seeds the cluster-bootstrap 95%
    intervals, per class where the data set has classes; and the paired deltas with their
    regression warnings. Each at the working size and, under ``full``, at each mask's own
    size (the predicted logits upsampled to it), as papers report."""
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
            row["full"] = summarise_scores(s["full"]) | {
                "scores": {m: s["full"][m].tolist() for m in SCORES}}
            if cv:
                row["folds"] = info[arm, seed]
            else:
                row |= {k: v for k, v in info[arm, seed][0].items() if k != "fold"}
            rows.append(row)
        summary = {m: spread([r[m] for r in rows], bounds=(0.0, 1.0)) for m in SCORES}
        summary["full"] = {m: spread([r["full"][m] for r in rows], bounds=(0.0, 1.0))
                           for m in SCORES}
        arms[arm] = {"per_seed": rows, "summary": summary}
    per_image = {arm: {full: {m: np.array([_at(scores[arm, s], full)[m] for s in config.seeds])
                              for m in SCORES} for full in (False, True)} for arm in names}
    classes = [c for c in plan.classes if c in set(labels)]  # the scheme's order
    of_class = {c: np.array(labels) == c for c in classes} if len(classes) > 1 else None
    about = {"groups": len(set(map(str, groups))), "seeds": len(config.seeds)} | ABOUT
    uncertainty = {arm: _intervals(per_image[arm][False], groups, of_class) | about
                   | {"full": _intervals(per_image[arm][True], groups)} for arm in names}
    results = {"task": "segmentation", "classes": classes, "scheme": plan.scheme,
               "evaluation": plan.evaluation, "arms": arms, "uncertainty": uncertainty,
               "test_groups": plan.design}
    for key, arm, other in PAIRS:
        if {arm, other} <= set(config.arms):
            mine, theirs = arms[arm]["per_seed"], arms[other]["per_seed"]
            results[key] = {m: paired_difference([r[m] for r in mine], [r[m] for r in theirs])
                            for m in SCORES}
            results[key]["full"] = {m: paired_difference(
                [r["full"][m] for r in mine], [r["full"][m] for r in theirs]) for m in SCORES}
            delta = _paired(per_image[arm][False], per_image[other][False], groups,
                            of_class if key == "delta" else None)  # the gate's: overall only
            full = _paired(per_image[arm][True], per_image[other][True], groups)
            results[f"{key}_cluster"] = delta | about | {"full": full}
    if "delta_cluster" in results:
        results["warnings"] = _regressions(results["delta_cluster"], classes)
    results["versus_real"] = {}
    for arm in names:  # every arm against its real-data arm: the report's forest plot
        other = real_counterpart(arm, names)
        if other is None:
            continue
        results["versus_real"][arm] = {"against": other} | (
            results["delta_cluster"] if (arm, other) == (AUGMENTED, BASELINE) else
            _paired(per_image[arm][False], per_image[other][False], groups, of_class) | about
            | {"full": _paired(per_image[arm][True], per_image[other][True], groups)})
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


def against_results(config: Any, elsewhere: dict, sources: list[Elsewhere]) -> list[dict]:
    """Every arm's models on each other source: per image the mean over the folds' models,
    then the cluster bootstrap over that source's groups and the seeds, at the working size
    and (``full``) at each mask's own size; and the paired differences between the arms
    (augmented − baseline, ...) on the same images, so a transfer gain can be read."""
    out = []
    names = arm_names(config)
    for source in sources:
        groups = source.groups

        def per_image(arm: str, full: bool, name: str = source.name) -> dict[str, np.ndarray]:
            return {m: np.array([np.nanmean([_at(s, full)[m] for s in elsewhere[name, arm, seed]],
                                            axis=0) for seed in config.seeds]) for m in SCORES}

        values = {(arm, full): per_image(arm, full) for arm in names for full in (False, True)}
        arms = {arm: _intervals(values[arm, False], groups)
                | {"full": _intervals(values[arm, True], groups)} for arm in names}
        deltas = {key: _paired(values[arm, False], values[other, False], groups)
                  | {"full": _paired(values[arm, True], values[other, True], groups)}
                  for key, arm, other in PAIRS if {arm, other} <= set(config.arms)}
        out.append({"dataset": source.name, "images": len(groups), "groups": len(set(groups)),
                    "arms": arms, "deltas": deltas})
    return out


def against_sources(results: dict) -> list[dict]:
    """A run's other sources: a list (runs stored before several sources held one dict,
    without paired differences)."""
    other = results.get("against")
    if not other:
        return []
    return [other] if isinstance(other, dict) else list(other)


def check_request(config: Any, load_manifest: Callable[[str], Manifest]) -> None:
    """Segmentation stops early on an inner validation split (no refit, no probe); a second
    source (``against``) needs a mask on every image."""
    if config.refit or config.linear_probe:
        raise ValueError("`refit` and `linear_probe` are for classification; segmentation "
                         "stops early on an inner validation split (`inner_valid`) or "
                         "trains fixed epochs (`inner_valid` 0)")
    if isinstance(config.against, str):
        raise ValueError(f"`against`: give the data sets as a tuple of names (got the text "
                         f"{config.against!r})")
    if config.against:
        mine = load_manifest(config.dataset).items
        files = {i.sha256: i.id for i in mine} | {i.pixels: i.id for i in mine if i.pixels}
    for name in config.against:
        if name == config.dataset:
            raise ValueError(f"`against`: {name!r} is the data set the run trains on; name "
                             "another source")
        if list(config.against).count(name) > 1:
            raise ValueError(f"`against`: {name!r} is named twice")
        other = load_manifest(name).items
        missing = [i.id for i in other if not i.mask]
        if missing:
            raise ValueError(f"`against`: data set {name!r} has {len(missing)} "
                             f"images without a mask (e.g. {', '.join(missing[:3])})")
        shared = [f"{name}:{i.id} = {config.dataset}:{files.get(i.sha256) or files[i.pixels]}"
                  for i in other if i.sha256 in files or (i.pixels and i.pixels in files)]
        if shared:
            raise ValueError(f"`against`: data set {name!r} shares {len(shared)} frames with "
                             f"{config.dataset!r} ({', '.join(shared[:5])}"
                             f"{', ...' if len(shared) > 5 else ''}); a frame the models may "
                             "have trained on would flatter the other source's scores")


def run(job: TaskJob) -> dict:
    """Train and score every arm; the run's results (overlays and the second source
    included)."""
    config, plan, pixels = job.config, job.plan, job.pixels
    against = _against_sets(config, pixels, job.load_manifest)
    scores, info, test_all, predicted, elsewhere = train_and_predict(
        config, plan, pixels, job.progress, job.cancel, job.device, job.registry, against,
        job.executor)
    results = segmentation_results(config, plan, scores, info)
    first = config.seeds[0]
    results["overlays"] = overlays(scores, test_all,
                                   {arm: predicted[arm, first] for arm in config.arms},
                                   config.arms, first)
    if against:
        results["against"] = against_results(config, elsewhere, against)
    return results


def metric_rows(results: dict) -> list[tuple[str, tuple]]:
    """The metric table's rows: per test image with a polyp, then averaged; per class Dice
    where the data set has classes."""
    names = [("Dice", "dice"), ("IoU", "iou"), ("pixel precision", "precision"),
             ("pixel recall", "recall")]
    first = next(iter(results["arms"].values()))["summary"]
    if "full" not in first:  # runs stored before scores at the mask's own size
        rows = [(label, (m,)) for label, m in names]
    else:
        rows = [(f"{label} (mask's own size)", ("full", m)) for label, m in names]
        rows += [(f"{label} (working size)", (m,)) for label, m in names]
    return rows + [(f"{c} Dice", ("per_class", c, "dice")) for c in results["classes"]
                   if len(results["classes"]) > 1]


def differences(a: dict, b: dict) -> dict:
    """Mean of ``b`` minus mean of ``a`` for Dice, IoU, precision and recall (and under
    ``full`` at each mask's own size, where both runs have it)."""
    out = {m: b[m]["mean"] - a[m]["mean"] for m in SCORES}
    if "full" in a and "full" in b:
        out["full"] = {m: b["full"][m]["mean"] - a["full"][m]["mean"] for m in SCORES}
    return out


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
        "with a polyp and averaged, at each mask's own size (the predicted logits upsampled "
        "bilinearly to it, then thresholded at 0; the rows marked \"mask's own size\", as "
        "papers report) and at the working size (the rows marked \"working size\"); test "
        "images without a polyp are counted apart (how many got a predicted polyp).")


def _view(scores: dict, view: tuple) -> dict:
    return scores[view[0]] if view else scores


def _interval(s: dict, signed: bool = False) -> str:
    f = "+.3f" if signed else ".3f"
    text = f"{s['estimate']:{f}} [{s['low']:{f}}, {s['high']:{f}}]"
    return text + (f" p={s['p']:.3g}" if signed and "p" in s else "")


def report_parts(results: dict) -> list[str]:
    """The second source's figures, empty test images per arm, and overlays of each arm's best
    and worst test images."""
    parts = []
    for other in against_sources(results):
        own_size = "full" in next(iter(other["arms"].values()))
        parts += [f"<h2>Tested on {html.escape(other['dataset'])} too ({other['images']} images, "
                  f"{other['groups']} groups; every fold's model, averaged per image; 95% CI over "
                  "its groups and the seeds" + ("; at each mask's own size, and at the working "
                                                "size below" if own_size else "") + ")</h2>"]
        views = [("full",), ()] if own_size else [()]
        for view in views:
            rows = [[arm + (" (working size)" if own_size and not view else ""),
                     *(_interval(_view(s, view)[m]) for m in SCORES)]
                    for arm, s in other["arms"].items()]
            rows += [[f"{COMPARED[key]} (paired)" + (" (working size)" if not view else ""),
                      *(_interval(_view(d, view)[m], signed=True) for m in SCORES)]
                     for key, d in other.get("deltas", {}).items()]
            parts.append(table(["arm", *SCORES], rows))
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
