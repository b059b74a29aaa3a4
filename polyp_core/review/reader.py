"""A reader study judged the way imaging research judges readers.

Every rating is a point of a five-point scale (1 definitely real ... 5 definitely synthetic);
*realness* (5 for "definitely real" down to 1) is the score an ROC analysis ranks images by,
with real images as the positive class:

- per reader: the empirical ROC curve and AUC with DeLong's 95% CI;
- readers together: the Obuchowski-Rockette random-reader random-case analysis of the
  reader-averaged AUC against 0.5 ("experts cannot tell" is a CI that contains 0.5), and two
  generators compared as two modalities sharing the real images (``polyp_core.review.mrmc``);
- per source (generator, checkpoint) and class: how often its images were called synthetic,
  the AUC of real against its images, its quality ratings;
- pace: server-side seconds from serving an image to its rating, per reader;
- agreement: Gwet's AC1 (robust to the prevalence that makes kappa paradoxical).

A record is what ``desk.rating_records`` returns; unrated assignments are ignored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.review.mrmc import MRMCData, delong_auc, or_analysis
from polyp_core.review.proportions import wilson
from polyp_core.vocabulary import QUALITIES

if TYPE_CHECKING:
    from collections.abc import Callable

    import plotly.graph_objects as go

#: below this median number of seconds per image, a reader is flagged as too fast to have
#: looked (a rating key pressed at once)
FAST_SECONDS = 1.0
CONFIDENCE_OF_VERDICT = {"real": 1, "synthetic": 5}


def realness(record: dict) -> int:
    """5 (definitely real) ... 1 (definitely synthetic); the verdict's end without a confidence."""
    confidence = record.get("confidence") or CONFIDENCE_OF_VERDICT.get(record.get("verdict"), 3)
    return 6 - int(confidence)


def answered(records: Iterable[dict]) -> list[dict]:
    return [r for r in records if r.get("verdict")]


def roc_points(scores: Sequence[float], truth: Sequence[int]) -> list[tuple[float, float]]:
    """The empirical ROC curve: (false positive rate, true positive rate) at every threshold."""
    scores, truth = np.asarray(scores, float), np.asarray(truth)
    n1, n0 = int(truth.sum()), int((1 - truth).sum())
    points = [(0.0, 0.0)]
    for threshold in sorted(set(scores.tolist()), reverse=True):
        called = scores >= threshold
        points.append((float((called & (truth == 0)).sum() / n0) if n0 else math.nan,
                       float((called & (truth == 1)).sum() / n1) if n1 else math.nan))
    return points


def reader_rocs(records: Sequence[dict]) -> dict[str, dict]:
    """Per reader: AUC of realness for real (positive) against synthetic images, DeLong CI, ROC."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in answered(records):
        by[r["reviewer"]].append(r)
    out = {}
    for reader, rows in sorted(by.items()):
        scores = [realness(r) for r in rows]
        truth = [int(r["truth"] == "real") for r in rows]
        one = delong_auc(scores, truth)
        one["roc"] = roc_points(scores, truth) if 0 < sum(truth) < len(truth) else []
        out[reader] = one
    return out


def mrmc_data(records: Sequence[dict],
              modality_of: Callable[[dict], str] | None = None) -> tuple[MRMCData, dict]:
    """The study as MRMC data: readers are reviewers, cases are images (real: positive), the
    score is realness. ``modality_of(record)`` names each record's modalities (default: one,
    ``all``). Only images every reader rated are kept (the analysis needs a factorial design
    within a modality); the second value counts what was kept and dropped."""
    rows = answered(records)
    readers = sorted({r["reviewer"] for r in rows})
    modality_of = modality_of or (lambda _r: ["all"])
    by_image: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    truth: dict[str, int] = {}
    for r in rows:
        truth[r["image"]] = int(r["truth"] == "real")
        for modality in modality_of(r):
            by_image[(modality, r["image"])][r["reviewer"]] = float(realness(r))
    data = MRMCData(truth={})
    kept = dropped = 0
    for (modality, image), scores in sorted(by_image.items()):
        if len(scores) < len(readers):
            dropped += 1
            continue
        kept += 1
        data.truth[image] = truth[image]
        for reader, score in scores.items():
            data.scores.setdefault(modality, {}).setdefault(reader, {})[image] = score
    return data, {"readers": len(readers), "cases_kept": kept, "cases_dropped": dropped}


def _or_or_reason(data: MRMCData, counts: dict) -> dict:
    if counts["readers"] < 2:
        return {"available": False, "reason": "needs at least two readers", **counts}
    for modality, readers in data.scores.items():
        cases = next(iter(readers.values()))
        labels = [data.truth[c] for c in cases]
        if sum(labels) < 2 or len(labels) - sum(labels) < 2:
            return {"available": False, "reason": f"modality {modality}: needs at least two real "
                                                  "and two synthetic images rated by every "
                                                  "reader (overlap = number of reviewers)",
                    **counts}
    if not data.scores:
        return {"available": False, "reason": "no image was rated by every reader (create the "
                                              "study with overlap = number of reviewers)", **counts}
    result = or_analysis(data)
    return {"available": True, **counts, **result.to_json(), "lines": result.lines()}


def reader_study(records: Sequence[dict]) -> dict:
    """The OR analysis of all images, and of generators compared (two or more sources)."""
    data, counts = mrmc_data(records)
    out = {"pooled": _or_or_reason(data, counts)}
    sources = sorted({r["source"] for r in answered(records) if r["truth"] != "real"})
    if len(sources) >= 2:
        # each generator a modality: the real images in every one, its own images in its own
        by_source, counts = mrmc_data(records, lambda r: sources if r["truth"] == "real"
                                      else [r["source"]])
        out["generators"] = _or_or_reason(by_source, counts)
    return out


def pace(records: Sequence[dict], fast: float = FAST_SECONDS) -> dict[str, dict]:
    """Per reader: seconds from serving to rating (measured by the server): median, quartiles,
    and ``too_fast`` when the median is under ``fast`` seconds."""
    by: dict[str, list[float]] = defaultdict(list)
    for r in answered(records):
        if r.get("seconds") is not None:
            by[r["reviewer"]].append(float(r["seconds"]))
    out = {}
    for reader, seconds in sorted(by.items()):
        q1, median, q3 = np.percentile(seconds, [25, 50, 75])
        out[reader] = {"n": len(seconds), "median": float(median), "q1": float(q1),
                       "q3": float(q3), "max": float(max(seconds)), "too_fast": bool(median < fast),
                       "histogram": np.histogram(seconds, bins=[0, 1, 2, 5, 10, 30, 60, 3600])[0]
                       .tolist()}
    return out


def per_source(records: Sequence[dict]) -> list[dict]:
    """Per synthetic source and per (source, class): how often its images were called synthetic
    (Wilson CI), the pooled AUC of real images against its images, its quality ratings."""

    rows = answered(records)
    real = [r for r in rows if r["truth"] == "real"]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["truth"] != "real":
            groups[(r["source"], "all")].append(r)
            groups[(r["source"], r.get("label") or "?")].append(r)
    out = []
    for (source, label), mine in sorted(groups.items()):
        versus = real if label == "all" else [r for r in real if r.get("label") == label]
        called = sum(r["verdict"] == "synthetic" for r in mine)
        decided = sum(r["verdict"] in ("real", "synthetic") for r in mine)
        low, high = wilson(called, decided)
        row = {"source": source, "class": label, "ratings": len(mine),
               "called_synthetic": called / decided if decided else math.nan,
               "called_synthetic_low": low, "called_synthetic_high": high,
               "unsure": len(mine) - decided}
        if versus:
            scores = [realness(r) for r in versus + mine]
            truth = [1] * len(versus) + [0] * len(mine)
            one = delong_auc(scores, truth)
            row |= {"auc_vs_real": one["auc"], "auc_low": one["low"], "auc_high": one["high"]}
        for quality in QUALITIES:
            row[quality] = sum(r["quality"] == quality for r in mine)
        out.append(row)
    return out


def gwet_ac1(table: Sequence[Sequence], categories: Sequence | None = None) -> dict:
    """Gwet's AC1 for several raters with missing ratings (``None``), units by rows.

    Gwet (2008; Handbook of Inter-Rater Reliability, 2014): pa over the units rated at least
    twice; pe = sum_k pi_k (1 - pi_k) / (q - 1), pi_k averaged over every rated unit.
    """
    values = [[v for v in row if v is not None] for row in table]
    cats = list(categories) if categories is not None else sorted({v for row in values for v in row})
    q = len(cats)
    if q < 2 or not any(values):
        return {"ac1": math.nan, "pa": math.nan, "pe": math.nan,
                "n_units": sum(bool(v) for v in values), "n_paired": 0}
    paired = [row for row in values if len(row) >= 2]
    pa = float(np.mean([sum(row.count(k) * (row.count(k) - 1) for k in cats)
                        / (len(row) * (len(row) - 1)) for row in paired])) if paired else math.nan
    rated = [row for row in values if row]
    pi = [float(np.mean([row.count(k) / len(row) for row in rated])) for k in cats]
    pe = sum(p * (1 - p) for p in pi) / (q - 1)
    ac1 = (pa - pe) / (1 - pe) if paired else math.nan
    return {"ac1": ac1, "pa": pa, "pe": pe, "n_units": len(rated), "n_paired": len(paired)}


def ac1_of(records: Sequence[dict], field: str = "verdict",
           categories: Sequence | None = None) -> dict:
    """Gwet's AC1 of one rating field over the study's images (rows) and reviewers."""
    rows = answered(records)
    reviewers = sorted({r["reviewer"] for r in rows})
    cells: dict[str, dict[str, object]] = defaultdict(dict)
    for r in rows:
        cells[r["image"]][r["reviewer"]] = r[field]
    table = [[cells[image].get(who) for who in reviewers] for image in sorted(cells)]
    return gwet_ac1(table, categories)


def main_records(records: Iterable[dict]) -> list[dict]:
    """The study's own readings (not repeats, not calibration items)."""
    return [r for r in records if r.get("kind", "main") == "main"]


def consistency(records: Sequence[dict]) -> dict[str, dict]:
    """Per reader: test-retest (each repeated image's first and second answer: exact and
    within-one agreement of the 1-5 scale, the same verdict, linearly weighted kappa) and the
    calibration score (share of calibration items answered right, Wilson CI)."""
    from sklearn.metrics import cohen_kappa_score


    rows = answered(records)
    first = {(r["reviewer"], r["image"]): r for r in rows if r.get("kind", "main") == "main"}
    pairs: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    calibration: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("kind") == "repeat" and (r["reviewer"], r["image"]) in first:
            pairs[r["reviewer"]].append((first[(r["reviewer"], r["image"])], r))
        elif r.get("kind") == "calibration":
            calibration[r["reviewer"]].append(r)
    out = {}
    for reader in sorted(set(pairs) | set(calibration)):
        row: dict = {}
        if pairs[reader]:
            a = [6 - realness(x) for x, _ in pairs[reader]]
            b = [6 - realness(y) for _, y in pairs[reader]]
            kappa = (cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="linear")
                     if len(set(a) | set(b)) > 1 else math.nan)
            row |= {"repeats": len(a), "exact": float(np.mean(np.equal(a, b))),
                    "within_one": float(np.mean(np.abs(np.subtract(a, b)) <= 1)),
                    "same_verdict": float(np.mean([x["verdict"] == y["verdict"]
                                                   for x, y in pairs[reader]])),
                    "weighted_kappa": float(kappa)}
        if calibration[reader]:
            right = sum(r["verdict"] == r["truth"] for r in calibration[reader])
            low, high = wilson(right, len(calibration[reader]))
            row |= {"calibration_items": len(calibration[reader]),
                    "calibration_score": right / len(calibration[reader]),
                    "calibration_low": low, "calibration_high": high}
        out[reader] = row
    return out


def summary_lines(stats: dict) -> list[str]:
    """What the Studies tab shows, as text (the CLI's ``study stats``)."""
    out = []
    pooled = stats["verdicts_real_positive"].get("pooled")
    if pooled:
        ba = pooled["balanced_accuracy"]
        out.append(f"binary verdicts ({pooled['n']} decisive, {pooled['n_unsure']} unsure): "
                   f"balanced accuracy {ba['value']:.3f} (95% CI {ba['low']:.3f}-{ba['high']:.3f}; "
                   f"chance 0.5), accuracy {pooled['accuracy']['value']:.3f}; Fisher's exact "
                   f"p (verdicts follow the truth) {pooled['p_discrimination']:.3g}")
    out.append("per reader (real = positive; ROC of the 1-5 scale, DeLong 95% CI):")
    for who, m in stats["verdicts_real_positive"].items():
        if who == "pooled":
            continue
        roc = stats["reader_roc"].get(who, {})
        out.append(f"  {who}: AUC {roc.get('auc', math.nan):.3f} ({roc.get('low', math.nan):.3f}-"
                   f"{roc.get('high', math.nan):.3f}), balanced accuracy "
                   f"{m['balanced_accuracy']['value']:.3f}, n={m['n']}, unsure {m['n_unsure']}, "
                   f"Fisher p {m['p_discrimination']:.3g}")
    for key, title in (("pooled", "readers together"), ("generators", "generators compared")):
        block = stats["mrmc"].get(key)
        if not block:
            continue
        out.append(f"{title}: " + ("" if block["available"] else f"not available: {block['reason']}"))
        out += [f"  {line}" for line in block.get("lines", [])]
    out.append("pace (seconds from serving to rating, measured by the server):")
    for who, m in stats["pace"].items():
        flag = "  TOO FAST: median under 1 s" if m["too_fast"] else ""
        out.append(f"  {who}: median {m['median']:.1f} s (IQR {m['q1']:.1f}-{m['q3']:.1f}), "
                   f"n={m['n']}{flag}")
    out.append("per source and class (called synthetic; AUC of real against it):")
    for row in stats["per_source"]:
        auc_text = (f", AUC {row['auc_vs_real']:.3f} ({row['auc_low']:.3f}-{row['auc_high']:.3f})"
                    if "auc_vs_real" in row else "")
        out.append(f"  {row['source']} / {row['class']}: {row['called_synthetic']:.2f} "
                   f"({row['called_synthetic_low']:.2f}-{row['called_synthetic_high']:.2f}) of "
                   f"{row['ratings'] - row['unsure']}{auc_text}; quality good/moderate/poor "
                   f"{row['good']}/{row['moderate']}/{row['poor']}")
    if stats.get("consistency"):
        out.append("consistency (repeated images: first vs second answer; calibration items):")
    for who, m in stats.get("consistency", {}).items():
        parts = []
        if "repeats" in m:
            parts.append(f"test-retest on {m['repeats']}: exact {m['exact']:.2f}, within one "
                         f"{m['within_one']:.2f}, same verdict {m['same_verdict']:.2f}, weighted "
                         f"kappa {m['weighted_kappa']:.2f}")
        if "calibration_items" in m:
            parts.append(f"calibration {m['calibration_score']:.2f} ({m['calibration_low']:.2f}-"
                         f"{m['calibration_high']:.2f}) on {m['calibration_items']}")
        out.append(f"  {who}: " + "; ".join(parts))
    ac1 = stats["ac1_verdict"]
    out.append(f"agreement on the verdict: Gwet's AC1 {ac1['ac1']:.3f} (pa {ac1['pa']:.3f}, pe "
               f"{ac1['pe']:.3f}, {ac1['n_paired']} images rated twice or more); Fleiss' kappa "
               f"{stats['fleiss_verdict'].get('kappa', math.nan):.3f}; Krippendorff's alpha "
               f"(quality) {stats['krippendorff_quality'].get('alpha', math.nan):.3f}")
    out += mask_lines(stats.get("mask_quality") or {})
    return out


def mask_lines(mask: dict) -> list[str]:
    """The mask-quality part of the summary (studies that showed masks)."""
    if not mask:
        return []
    out = [f"mask quality ({mask['n']} ratings; share good and poor, 95% CI over images):"]
    for row in mask["by_source"]:
        out.append(f"  {row['source']} / {row['class']}: good {row['good_share']:.2f} "
                   f"({row['good_low']:.2f}-{row['good_high']:.2f}), poor {row['poor_share']:.2f} "
                   f"({row['poor_low']:.2f}-{row['poor_high']:.2f}), {row['ratings']} ratings of "
                   f"{row['images']} images")
    ac1, alpha = mask["ac1"], mask["krippendorff"].get("alpha", math.nan)
    kappas = ", ".join(f"{p['a']}-{p['b']} {p['weighted_kappa']:.2f} (n={p['n']})"
                       for p in mask["weighted_kappa"]) or "no pair rated the same images"
    out.append(f"agreement on the mask: Gwet's AC1 {ac1['ac1']:.3f} ({ac1['n_paired']} images "
               f"rated twice or more); Krippendorff's alpha (ordinal) {alpha:.3f}; linearly "
               f"weighted kappa per pair: {kappas}")
    out.append("image quality (rows) against mask quality (columns, good/moderate/poor): " +
               "; ".join(f"{q} {'/'.join(str(v) for v in row.values())}"
                         for q, row in mask["image_vs_mask"].items()))
    return out


def roc_figure(stats: dict) -> go.Figure:
    """Per-reader empirical ROC curves (plotly)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for who, roc in stats["reader_roc"].items():
        if roc.get("roc"):
            x, y = zip(*roc["roc"])
            figure.add_trace(go.Scatter(x=x, y=y, mode="lines+markers",
                                        name=f"{who} (AUC {roc['auc']:.2f}, 95% CI "
                                             f"{roc['low']:.2f}-{roc['high']:.2f})"))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                line=dict(dash="dot", color="grey")))
    figure.update_layout(title="Per-reader ROC (real = positive, 1-5 scale)",
                         xaxis_title="synthetic images called real", yaxis_title="real images "
                         "called real", height=380, margin=dict(l=40, r=20, t=50, b=40))
    return figure


def forest_figure(stats: dict) -> go.Figure:
    """Reader AUCs with their CIs and the OR pooled CI (plotly); the 0.5 line is chance."""
    import plotly.graph_objects as go

    names, values, lows, highs = [], [], [], []
    for who, roc in stats["reader_roc"].items():
        names.append(who), values.append(roc["auc"]), lows.append(roc["low"]), highs.append(roc["high"])
    pooled = stats["mrmc"]["pooled"]
    if pooled.get("available"):
        one = pooled["single"]["all"]
        names.append("readers together (OR)"), values.append(one["auc"])
        lows.append(one["ci"][0]), highs.append(one["ci"][1])
    figure = go.Figure(go.Scatter(
        x=values, y=names, mode="markers",
        error_x=dict(type="data", symmetric=False, array=[h - v for h, v in zip(highs, values)],
                     arrayminus=[v - lo for v, lo in zip(values, lows)])))
    figure.add_vline(x=0.5, line_dash="dot", line_color="grey")
    figure.update_layout(title="Reader AUCs (95% CI); 0.5: cannot tell", xaxis_range=[0, 1],
                         height=120 + 30 * len(names), margin=dict(l=40, r=20, t=50, b=40))
    return figure
