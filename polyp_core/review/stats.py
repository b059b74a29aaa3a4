"""Statistics of a reader study, as functions over rating records.

A record is a dict with at least ``reviewer``, ``image``, ``truth`` (``real`` or
``synthetic``), ``source``, ``label``, ``verdict``, ``confidence`` (1-5), ``quality`` and
``histology``; records without a verdict (unrated assignments) are ignored.

Binary verdicts (derived from the five-point scale: 1-2 real, 4-5 synthetic, 3 unsure) give
accuracy, precision and recall with *real* as the positive class (and with *synthetic* as
positive), with Wilson 95% intervals, over the decisive answers (``unsure`` ones are counted
apart). Chance is judged right for unbalanced studies: balanced accuracy (chance 0.5 whatever
the mix) and Fisher's exact test of the verdict x truth table, never accuracy against 50%
(on a study with two synthetic images per real one, always answering "synthetic" scores 67%).
The ROC and MRMC analyses of the scale itself are in ``polyp_core.review.reader``.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from polyp_core.files import write_csv
from polyp_core.review import reader
from polyp_core.review.proportions import wilson  # noqa: F401  (stats.wilson: part of this API)
from polyp_core.vocabulary import HISTOLOGY_GUESSES, QUALITIES, QUALITY_RANK

POOLED = "pooled"


def rated(records: Iterable[dict]) -> list[dict]:
    return [r for r in records if r.get("verdict")]


def _ratio(k: int, n: int) -> dict:
    low, high = wilson(k, n)
    return {"value": k / n if n else math.nan, "low": low, "high": high, "k": k, "n": n}


def _balanced(recall: dict, specificity: dict, z: float = 1.959963984540054) -> dict:
    """Balanced accuracy (mean of the two recalls) with a normal-approximation 95% CI."""
    if not recall["n"] or not specificity["n"]:
        return {"value": math.nan, "low": math.nan, "high": math.nan}
    a, b = recall["value"], specificity["value"]
    value = (a + b) / 2
    half = z * math.sqrt(a * (1 - a) / recall["n"] + b * (1 - b) / specificity["n"]) / 2
    return {"value": value, "low": max(0.0, value - half), "high": min(1.0, value + half)}


def verdict_metrics(records: Sequence[dict], positive: str = "real") -> dict:
    """Confusion of the decisive verdicts against truth and the metrics, ``positive`` as
    positive; ``p_discrimination``: Fisher's exact test (one-sided) that verdicts agree with
    the truth more than chance would make them."""
    from scipy.stats import fisher_exact

    if positive not in ("real", "synthetic"):
        raise ValueError("positive must be 'real' or 'synthetic'")
    unsure = sum(r["verdict"] == "unsure" for r in records)
    records = [r for r in records if r["verdict"] in ("real", "synthetic")]
    tp = sum(r["truth"] == positive and r["verdict"] == positive for r in records)
    fn = sum(r["truth"] == positive and r["verdict"] != positive for r in records)
    fp = sum(r["truth"] != positive and r["verdict"] == positive for r in records)
    tn = sum(r["truth"] != positive and r["verdict"] != positive for r in records)
    n = tp + fn + fp + tn
    recall, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    table = [[tp, fn], [fp, tn]]
    return {
        "positive": positive, "n": n, "n_unsure": unsure, "tp": tp, "fn": fn, "fp": fp, "tn": tn,
        "accuracy": _ratio(tp + tn, n), "precision": _ratio(tp, tp + fp),
        "recall": recall, "specificity": specificity,
        "balanced_accuracy": _balanced(recall, specificity),
        # H1: verdicts go with the truth (odds ratio > 1); experts "cannot tell" when p is large
        "p_discrimination": fisher_exact(table, alternative="greater").pvalue if n else math.nan,
        "p_fisher_two_sided": fisher_exact(table).pvalue if n else math.nan,
    }


def verdicts_by_reviewer(records: Iterable[dict], positive: str = "real") -> dict[str, dict]:
    """:func:`verdict_metrics` per reviewer and pooled over all reviewers."""
    done = rated(records)
    by: dict[str, list[dict]] = defaultdict(list)
    for r in done:
        by[r["reviewer"]].append(r)
    out = {name: verdict_metrics(rows, positive) for name, rows in sorted(by.items())}
    out[POOLED] = verdict_metrics(done, positive)
    return out


def quality_distribution(records: Iterable[dict], by: Sequence[str] = ("source",)) -> list[dict]:
    """Counts and shares of good / moderate / poor per group (``source``, ``label``, ...)."""
    groups: dict[tuple, Counter] = defaultdict(Counter)
    for r in rated(records):
        groups[tuple(r[k] for k in by)][r["quality"]] += 1
    rows = []
    for key, counts in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        n = sum(counts.values())
        row = dict(zip(by, key)) | {"n": n}
        for q in QUALITIES:
            row[q] = counts[q]
            row[f"{q}_share"] = counts[q] / n
        rows.append(row)
    return rows


def histology_confusion(records: Iterable[dict]) -> dict[str, dict]:
    """Per source: counts of (true class, guessed histology), and the share guessed right."""
    table: dict[str, Counter] = defaultdict(Counter)
    for r in rated(records):
        if r.get("histology"):
            table[r["source"]][(r["label"], r["histology"])] += 1
    out = {}
    for source, counts in sorted(table.items()):
        labels = sorted({t for t, _ in counts})
        matrix = {t: {g: counts[(t, g)] for g in HISTOLOGY_GUESSES} for t in labels}
        n = sum(counts.values())
        right = sum(counts[(t, t)] for t in labels)
        out[source] = {"matrix": matrix, "n": n, "agreement": _ratio(right, n)}
    return out


def _ratings_matrix(records: Sequence[dict], field: str) -> tuple[list[str], list[str], dict]:
    cells = {(r["reviewer"], r["image"]): r[field] for r in records}
    reviewers = sorted({r for r, _ in cells})
    images = sorted({i for _, i in cells})
    return reviewers, images, cells


def cohen_pairs(records: Iterable[dict], field: str = "verdict") -> list[dict]:
    """Cohen's kappa for every pair of reviewers, over the images both rated."""
    from sklearn.metrics import cohen_kappa_score

    done = rated(records)
    reviewers, images, cells = _ratings_matrix(done, field)
    out = []
    for a, b in itertools.combinations(reviewers, 2):
        common = [i for i in images if (a, i) in cells and (b, i) in cells]
        if len(common) < 2:
            continue
        x = [cells[(a, i)] for i in common]
        y = [cells[(b, i)] for i in common]
        if len(set(x) | set(y)) < 2:
            kappa = math.nan  # both gave one answer throughout: kappa is undefined
        else:
            kappa = float(cohen_kappa_score(x, y))
        out.append({"a": a, "b": b, "n": len(common), "kappa": kappa,
                    "raw_agreement": float(np.mean([u == v for u, v in zip(x, y)]))})
    return out


def fleiss(records: Iterable[dict], field: str = "verdict") -> dict:
    """Fleiss' kappa over the images rated by the most common number (>= 3) of reviewers."""
    from statsmodels.stats.inter_rater import fleiss_kappa

    done = rated(records)
    per_image: dict[str, list] = defaultdict(list)
    for r in done:
        per_image[r["image"]].append(r[field])
    counts = Counter(len(v) for v in per_image.values())
    if not counts:
        return {"kappa": math.nan, "n_images": 0, "raters": 0}
    raters = max(counts, key=lambda k: (counts[k], k))
    if raters < 3:
        return {"kappa": math.nan, "n_images": 0, "raters": raters,
                "note": "Fleiss' kappa needs images rated by three or more reviewers"}
    categories = sorted({v for vals in per_image.values() for v in vals})
    table = np.array([[vals.count(c) for c in categories]
                      for vals in per_image.values() if len(vals) == raters])
    kappa = float(fleiss_kappa(table)) if len(categories) > 1 else math.nan
    return {"kappa": kappa, "n_images": int(len(table)), "raters": raters}


def krippendorff_quality(records: Iterable[dict], field: str = "quality") -> dict:
    """Krippendorff's alpha of an ordinal quality scale (poor < moderate < good): the image's
    (``quality``) or the mask's (``mask_quality``)."""
    import krippendorff

    done = [r for r in rated(records) if r.get(field)]
    reviewers, images, cells = _ratings_matrix(done, field)
    data = np.full((len(reviewers), len(images)), np.nan)
    for (reviewer, image), value in cells.items():
        data[reviewers.index(reviewer), images.index(image)] = QUALITY_RANK[value]
    pairable = int((np.sum(~np.isnan(data), axis=0) >= 2).sum()) if len(images) else 0
    if pairable == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return {"alpha": math.nan, "n_images": pairable}
    alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                               value_domain=[0, 1, 2])
    return {"alpha": float(alpha), "n_images": pairable}


def clustered_share(hits: Sequence[bool], clusters: Sequence[str], n_boot: int = 2000,
                    seed: int = 0) -> dict:
    """A share with its 95% percentile interval from a bootstrap over clusters (images: one
    image rated by two reviewers is one case)."""
    hits_a, clusters_a = np.asarray(hits, bool), np.asarray(clusters)
    if not len(hits_a):
        return {"value": math.nan, "low": math.nan, "high": math.nan, "n": 0, "cases": 0}
    ids, inverse = np.unique(clusters_a, return_inverse=True)
    per_case = np.bincount(inverse, weights=hits_a, minlength=len(ids))
    size = np.bincount(inverse, minlength=len(ids))
    draws = np.random.default_rng(seed).integers(0, len(ids), (n_boot, len(ids)))
    shares = per_case[draws].sum(1) / size[draws].sum(1)
    low, high = np.percentile(shares, [2.5, 97.5])
    return {"value": float(hits_a.mean()), "low": float(low), "high": float(high),
            "n": int(len(hits_a)), "cases": int(len(ids))}


def mask_quality(records: Sequence[dict]) -> dict:
    """Mask quality in a study that showed masks: per source, per source and class, the share
    rated good and poor (95% intervals over images), agreement on it (weighted kappa per pair of
    reviewers, Gwet's AC1, Krippendorff's ordinal alpha), and its cross-table with image
    quality. Empty when the study asked nothing about masks."""
    from sklearn.metrics import cohen_kappa_score

    done = [r for r in rated(records) if r.get("mask_quality")]
    if not done:
        return {}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in done:
        groups[(r["source"], "all")].append(r)
        groups[(r["source"], r.get("label") or "?")].append(r)
    rows = []
    for (source, label), mine in sorted(groups.items()):
        row = {"source": source, "class": label, "ratings": len(mine),
               **{q: sum(r["mask_quality"] == q for r in mine) for q in QUALITIES}}
        for q in ("good", "poor"):
            share = clustered_share([r["mask_quality"] == q for r in mine],
                                    [r["image"] for r in mine])
            row |= {f"{q}_share": share["value"], f"{q}_low": share["low"],
                    f"{q}_high": share["high"], "images": share["cases"]}
        rows.append(row)
    reviewers, images, cells = _ratings_matrix(done, "mask_quality")
    pairs = []
    for a, b in itertools.combinations(reviewers, 2):
        common = [i for i in images if (a, i) in cells and (b, i) in cells]
        if len(common) < 2:
            continue
        x = [QUALITY_RANK[cells[(a, i)]] for i in common]
        y = [QUALITY_RANK[cells[(b, i)]] for i in common]
        kappa = float(cohen_kappa_score(x, y, weights="linear", labels=[0, 1, 2])) \
            if len(set(x) | set(y)) > 1 else math.nan
        pairs.append({"a": a, "b": b, "n": len(common), "weighted_kappa": kappa})
    cross = Counter((r["quality"], r["mask_quality"]) for r in done)
    return {"by_source": rows, "weighted_kappa": pairs,
            "ac1": reader.ac1_of(done, "mask_quality", QUALITIES),
            "krippendorff": krippendorff_quality(done, "mask_quality"),
            "image_vs_mask": {image_q: {mask_q: cross[(image_q, mask_q)] for mask_q in QUALITIES}
                              for image_q in QUALITIES},
            "n": len(done)}


def study_statistics(records: Sequence[dict]) -> dict:
    """Everything above, and the reader-study analyses of ``polyp_core.review.reader``."""

    everything = rated(records)
    done = reader.main_records(everything)  # repeats and calibration items are scored apart
    return {
        "consistency": reader.consistency(everything),
        "n_repeat_or_calibration": len(everything) - len(done),
        "reader_roc": reader.reader_rocs(done),
        "mrmc": reader.reader_study(done),
        "pace": reader.pace(everything),
        "per_source": reader.per_source(done),
        "ac1_verdict": reader.ac1_of(done, "verdict", ("real", "synthetic", "unsure")),
        "n_assignments": len(records), "n_rated": len(everything),
        "verdicts_real_positive": verdicts_by_reviewer(done, "real"),
        "verdicts_synthetic_positive": verdicts_by_reviewer(done, "synthetic"),
        "quality_by_source": quality_distribution(done, ("source",)),
        "quality_by_source_and_class": quality_distribution(done, ("source", "label")),
        "histology_by_source": histology_confusion(done),
        "cohen_verdict": cohen_pairs(done, "verdict"),
        "fleiss_verdict": fleiss(done, "verdict"),
        "krippendorff_quality": krippendorff_quality(done),
        "mask_quality": mask_quality(done),
    }


def _write(path: Path, rows: list[dict]) -> None:  # pragma: no mutate block
    write_csv(path, rows)  # names a reviewer or admin typed cannot become formulas


def export_csv(records: Sequence[dict], folder: Path | str) -> list[Path]:  # pragma: no mutate block
    """Write ratings and every statistic as CSV files into ``folder``. Returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stats = study_statistics(records)
    verdict_rows = []
    for positive in ("real", "synthetic"):
        for reviewer, m in stats[f"verdicts_{positive}_positive"].items():
            row = {"positive": positive, "reviewer": reviewer, "n": m["n"], "tp": m["tp"],
                   "fn": m["fn"], "fp": m["fp"], "tn": m["tn"]}
            for metric in ("accuracy", "precision", "recall", "specificity"):
                row |= {metric: m[metric]["value"], f"{metric}_low": m[metric]["low"],
                        f"{metric}_high": m[metric]["high"]}
            row |= {"balanced_accuracy": m["balanced_accuracy"]["value"],
                    "balanced_accuracy_low": m["balanced_accuracy"]["low"],
                    "balanced_accuracy_high": m["balanced_accuracy"]["high"],
                    "n_unsure": m["n_unsure"], "p_discrimination": m["p_discrimination"],
                    "p_fisher_two_sided": m["p_fisher_two_sided"]}
            verdict_rows.append(row)
    histology_rows = [{"source": s, "true_class": t, "guess": g, "count": c}
                      for s, h in stats["histology_by_source"].items()
                      for t, guesses in h["matrix"].items() for g, c in guesses.items()]
    agreement_rows = [{"statistic": "cohen_kappa_verdict", "a": p["a"], "b": p["b"],
                       "n": p["n"], "value": p["kappa"]} for p in stats["cohen_verdict"]]
    agreement_rows.append({"statistic": "fleiss_kappa_verdict",
                           "n": stats["fleiss_verdict"]["n_images"],
                           "value": stats["fleiss_verdict"]["kappa"]})
    agreement_rows.append({"statistic": "krippendorff_alpha_quality_ordinal",
                           "n": stats["krippendorff_quality"]["n_images"],
                           "value": stats["krippendorff_quality"]["alpha"]})
    agreement_rows.append({"statistic": "gwet_ac1_verdict", "n": stats["ac1_verdict"]["n_paired"],
                           "value": stats["ac1_verdict"]["ac1"]})
    auc_rows = [{"reviewer": who, "auc": m["auc"], "auc_low": m["low"], "auc_high": m["high"],
                 "n_real": m["n_positive"], "n_synthetic": m["n_negative"]}
                for who, m in stats["reader_roc"].items()]
    pace_rows = [{"reviewer": who, **{k: v for k, v in m.items() if k != "histogram"}}
                 for who, m in stats["pace"].items()]
    consistency_rows = [{"reviewer": who, **m} for who, m in stats["consistency"].items()]
    mask = stats["mask_quality"]
    if mask:
        agreement_rows += [{"statistic": "weighted_kappa_mask_quality_linear", "a": p["a"],
                            "b": p["b"], "n": p["n"], "value": p["weighted_kappa"]}
                           for p in mask["weighted_kappa"]]
        agreement_rows.append({"statistic": "gwet_ac1_mask_quality", "n": mask["ac1"]["n_paired"],
                               "value": mask["ac1"]["ac1"]})
        agreement_rows.append({"statistic": "krippendorff_alpha_mask_quality_ordinal",
                               "n": mask["krippendorff"]["n_images"],
                               "value": mask["krippendorff"]["alpha"]})
    outputs = {"ratings.csv": list(records), "verdicts.csv": verdict_rows,
               "reader_auc.csv": auc_rows, "pace.csv": pace_rows,
               "consistency.csv": consistency_rows,
               "per_source.csv": stats["per_source"],
               "quality_by_source.csv": stats["quality_by_source"],
               "quality_by_source_and_class.csv": stats["quality_by_source_and_class"],
               "histology.csv": histology_rows, "agreement.csv": agreement_rows}
    if mask:
        outputs["mask_quality_by_source.csv"] = mask["by_source"]
        outputs["image_vs_mask_quality.csv"] = [
            {"image_quality": image_q, **counts} for image_q, counts in mask["image_vs_mask"].items()]
    paths = []
    for name, rows in outputs.items():
        _write(folder / name, rows)
        paths.append(folder / name)
    # the ratings as MRMC data, for a statistician to check us with iMRMC or RJafroc
    from polyp_core.review.mrmc import imrmc_text

    data, _ = reader.mrmc_data(reader.main_records(rated(records)))
    if data.scores:
        name = records[0].get("study", "study") if records else "study"
        (folder / "study.imrmc").write_text(imrmc_text(data, f"{name}: realness 1-5, real positive"))
        paths.append(folder / "study.imrmc")
    lines = stats["mrmc"]["pooled"].get("lines") or [stats["mrmc"]["pooled"].get("reason", "")]
    (folder / "mrmc.txt").write_text("\n".join(lines) + "\n")
    paths.append(folder / "mrmc.txt")
    return paths
