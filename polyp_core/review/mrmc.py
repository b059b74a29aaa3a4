"""Multi-reader multi-case (MRMC) ROC analysis: the reader-study method imaging research uses.

Each reader gives every case a score (here: the 5-point confidence that an image is real);
the figure of merit is each reader's empirical (trapezoidal, Wilcoxon) ROC AUC. The
Obuchowski-Rockette (OR) model with Hillis' denominator degrees of freedom gives a random-reader
random-case (RRRC) analysis: its confidence intervals account for both the readers and the
cases being samples. Covariances of the AUCs over cases are estimated by the jackknife, as
RJafroc's and MRMCaov's defaults do.

Reproduced in ``tests/review/test_mrmc.py`` on the Van Dyke data (5 readers, 2 modalities, 114 cases),
against the published output of MRMCaov and RJafroc: trapezoidal AUCs, F = 4.456319,
ddf = 15.25967, p = 0.05166569, and the CIs of the difference and of each modality.

References: Obuchowski & Rockette, Commun Stat Simul 1995; Hillis, Stat Med 2007; Hillis,
Obuchowski & Berbaum, Acad Radiol 2008 (single-modality CIs).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from polyp_core.errors import DatasetImportError, Problem


@dataclass
class MRMCData:
    """Scores ``scores[modality][reader][case]`` and the truth of every case (1: positive)."""

    truth: dict[str, int]
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        return list(self.scores)

    @property
    def readers(self) -> list[str]:
        return sorted({r for m in self.scores.values() for r in m}, key=_natural)

    def cases(self) -> list[str]:
        return sorted(self.truth, key=_natural)

    def check(self) -> None:
        """Within a modality every reader scored the same cases (the design may give two
        modalities different cases, e.g. two generators' images beside the same real ones).

        Raises:
            ValueError: naming a reader, modality and case that break it.
        """
        for modality, readers in self.scores.items():
            wanted = set().union(*(set(r) for r in readers.values()))
            for reader in self.readers:
                missing = wanted - set(readers.get(reader, {}))
                if missing:
                    case = sorted(missing, key=_natural)[0]
                    raise ValueError(f"reader {reader} has no score for case {case} in modality "
                                     f"{modality} ({len(missing)} missing); every reader must "
                                     "score every case of a modality")
            labels = {self.truth[c] for c in wanted}
            if labels != {0, 1}:
                raise ValueError(f"modality {modality} needs positive and negative cases")


def _natural(text: str) -> tuple[int, int, str]:
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


# --- the iMRMC input format ---------------------------------------------------------------------

def read_imrmc(path: Path | str) -> MRMCData:
    """An iMRMC input file: free header lines, ``BEGIN DATA:``, then ``reader,case,modality,
    score`` rows, truth rows having reader ``-1`` (score 0: negative, 1: positive).

    Raises:
        DatasetImportError: naming the file and row of every problem.
    """
    path = Path(path)
    problems: list[Problem] = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetImportError([Problem(str(path), f"cannot read it ({exc})")], str(path)) from None
    start = next((i for i, line in enumerate(lines) if line.strip().upper() == "BEGIN DATA:"), None)
    if start is None:
        raise DatasetImportError([Problem(str(path), "no 'BEGIN DATA:' line")], str(path))
    data = MRMCData(truth={})
    for number, line in enumerate(lines[start + 1:], start=start + 2):
        if not line.strip():
            continue
        where = f"{path} row {number}"
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            problems.append(Problem(where, f"expected reader,case,modality,score; got {line!r}"))
            continue
        reader, case, modality, score_text = parts
        try:
            score = float(score_text)
        except ValueError:
            problems.append(Problem(where, f"score {score_text!r} is not a number"))
            continue
        if not math.isfinite(score):
            problems.append(Problem(where, f"score {score_text!r} is not finite"))
        elif reader == "-1":
            if score not in (0.0, 1.0):
                problems.append(Problem(where, f"truth must be 0 or 1; got {score_text!r}"))
            elif case in data.truth and data.truth[case] != int(score):
                problems.append(Problem(where, f"case {case} has two truths"))
            else:
                data.truth[case] = int(score)
        else:
            readings = data.scores.setdefault(modality, {}).setdefault(reader, {})
            if case in readings:
                problems.append(Problem(where, f"reader {reader} scored case {case} in modality "
                                               f"{modality} twice"))
            readings[case] = score
    unknown = sorted({c for m in data.scores.values() for r in m.values() for c in r}
                     - set(data.truth), key=_natural)
    if unknown:
        problems.append(Problem(str(path), f"cases without a truth row: {', '.join(unknown[:10])}"))
    if not data.scores:
        problems.append(Problem(str(path), "no score rows"))
    if set(data.truth.values()) != {0, 1} and data.truth:
        problems.append(Problem(str(path), "the truth needs positive and negative cases"))
    if problems:
        raise DatasetImportError(problems, str(path))
    return data


def imrmc_text(data: MRMCData, title: str = "Polyp Studio reader study") -> str:
    """``data`` in the iMRMC input format (what iMRMC and RJafroc read)."""
    n1 = sum(data.truth.values())
    lines = [title.replace("\n", " "), f"N0:{len(data.truth) - n1}", f"N1:{n1}",
             f"NR:{len(data.readers)}", f"NM:{len(data.modalities)}", "BEGIN DATA:"]
    lines += [f"-1,{case},truth,{data.truth[case]}" for case in sorted(data.truth, key=_natural)]
    for modality, readers in data.scores.items():
        for reader in sorted(readers, key=_natural):
            lines += [f"{reader},{case},{modality},{score:g}"
                      for case, score in sorted(readers[reader].items(), key=lambda x: _natural(x[0]))]
    return "\n".join(lines) + "\n"


# --- ROC AUC ------------------------------------------------------------------------------------

def _kernel(negatives: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """psi(x, y) for every (negative, positive) pair: 1 if y > x, 1/2 if tied, 0 otherwise."""
    diff = positives[None, :] - negatives[:, None]
    return (diff > 0) + 0.5 * (diff == 0)


def auc(scores: Sequence[float], truth: Sequence[int]) -> float:
    """Empirical (trapezoidal) ROC AUC: the Wilcoxon-Mann-Whitney statistic."""
    scores, truth = np.asarray(scores, float), np.asarray(truth)
    return float(_kernel(scores[truth == 0], scores[truth == 1]).mean())


def delong_auc(scores: Sequence[float], truth: Sequence[int], level: float = 0.95) -> dict:
    """One reader's AUC with DeLong's variance and a (logit-free, clipped) normal 95% CI."""
    scores, truth = np.asarray(scores, float), np.asarray(truth)
    psi = _kernel(scores[truth == 0], scores[truth == 1])
    n0, n1 = psi.shape
    value = float(psi.mean())
    if n0 < 2 or n1 < 2:
        return {"auc": value, "se": float("nan"), "low": float("nan"), "high": float("nan"),
                "n_negative": n0, "n_positive": n1}
    v10, v01 = psi.mean(axis=0), psi.mean(axis=1)  # per positive, per negative
    se = math.sqrt(v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0)
    z = stats.norm.ppf(0.5 + level / 2)
    return {"auc": value, "se": se, "low": max(0.0, value - z * se),
            "high": min(1.0, value + z * se), "n_negative": n0, "n_positive": n1}


def _jackknife_aucs(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """AUC with each case left out in turn: (cases,) for one reader and modality."""
    neg, pos = np.flatnonzero(truth == 0), np.flatnonzero(truth == 1)
    psi = _kernel(scores[neg], scores[pos])
    total, n0, n1 = psi.sum(), len(neg), len(pos)
    out = np.empty(len(truth))
    out[neg] = (total - psi.sum(axis=1)) / ((n0 - 1) * n1)
    out[pos] = (total - psi.sum(axis=0)) / (n0 * (n1 - 1))
    return out


def _reader_aucs(data: MRMCData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs (modality, reader), their jackknife values (modality, reader, case) over the union
    of cases (leaving out a case a modality does not show leaves its AUC as it is), and which
    cases each modality shows (modality, case)."""
    cases = data.cases()
    index = {c: k for k, c in enumerate(cases)}
    truth = np.array([data.truth[c] for c in cases])
    aucs = np.empty((len(data.modalities), len(data.readers)))
    jack = np.empty((len(data.modalities), len(data.readers), len(cases)))
    shown = np.zeros((len(data.modalities), len(cases)), bool)
    for i, modality in enumerate(data.modalities):
        for j, reader in enumerate(data.readers):
            given = data.scores[modality][reader]
            ks = np.array([index[c] for c in given])
            scores = np.array([given[c] for c in given], float)
            aucs[i, j] = auc(scores, truth[ks])
            jack[i, j, :] = aucs[i, j]
            jack[i, j, ks] = _jackknife_aucs(scores, truth[ks])
            shown[i, ks] = True
    return aucs, jack, shown


# --- Obuchowski-Rockette, Hillis --------------------------------------------------------------

@dataclass(frozen=True)
class ORResult:
    """An OR random-reader random-case analysis.

    Attributes:
        modalities, readers: names, in the order of ``aucs``' axes.
        aucs: (modalities, readers) trapezoidal AUCs.
        mean_auc: reader-averaged AUC per modality.
        variance: error variance, cov1 (same reader, other modality), cov2 (other reader, same
            modality), cov3 (other reader, other modality), averaged over the pairs.
        single: per modality, its RRRC CI and the test of AUC = 0.5 (``t``, ``df``, ``p``).
        comparison: for two or more modalities: ``F``, ``ndf``, ``ddf``, ``p``, and for each
            pair ``diff``, ``se``, ``ci``, ``p``.
    """

    modalities: list[str]
    readers: list[str]
    aucs: np.ndarray
    mean_auc: dict[str, float]
    variance: dict[str, float]
    ms: dict[str, float]
    single: dict[str, dict]
    comparison: dict | None

    def to_json(self) -> dict:
        out = {"modalities": self.modalities, "readers": self.readers,
               "aucs": {m: dict(zip(self.readers, map(float, row)))
                        for m, row in zip(self.modalities, self.aucs)},
               "mean_auc": self.mean_auc, "variance": self.variance, "ms": self.ms,
               "single": self.single, "comparison": self.comparison}
        if self.comparison and len(self.modalities) == 2:  # the two-modality test, up front
            pair = self.comparison["pairs"][0]
            out |= {"F": self.comparison["F"], "ddf": self.comparison["ddf"],
                    "p": self.comparison["p"], "diff": pair["diff"], "ci": pair["ci"]}
        return out

    def lines(self) -> list[str]:
        out = ["Obuchowski-Rockette random-reader random-case analysis (Hillis ddf; jackknife "
               f"covariances); {len(self.readers)} readers"]
        for i, modality in enumerate(self.modalities):
            one = self.single[modality]
            per_reader = ", ".join(f"{r} {a:.4f}" for r, a in zip(self.readers, self.aucs[i]))
            out.append(f"modality {modality}: reader-averaged AUC {one['auc']:.4f} (95% CI "
                       f"{one['ci'][0]:.4f} to {one['ci'][1]:.4f}, df {one['df']:.2f}); "
                       f"against 0.5: t = {one['t']:.3f}, p = {one['p']:.4g}. {one['reading']}")
            out.append(f"  per reader: {per_reader}")
        if self.comparison:
            c = self.comparison
            out.append(f"equal AUCs: F = {c['F']:.4f}, ndf = {c['ndf']}, ddf = {c['ddf']:.4f}, "
                       f"p = {c['p']:.4g}")
            for pair in c["pairs"]:
                out.append(f"  {pair['a']} - {pair['b']}: {pair['diff']:+.5f} (95% CI "
                           f"{pair['ci'][0]:+.5f} to {pair['ci'][1]:+.5f}), p = {pair['p']:.4g}")
        return out


def _covariances(jack: np.ndarray) -> dict[str, float]:
    """Var, Cov1, Cov2, Cov3 from the jackknife AUCs (modality, reader, case)."""
    n_mod, n_read, k = jack.shape
    flat = jack.reshape(n_mod * n_read, k)
    centred = flat - flat.mean(axis=1, keepdims=True)
    cov = (k - 1) / k * centred @ centred.T
    groups: dict[str, list[float]] = {"var": [], "cov1": [], "cov2": [], "cov3": []}
    for a, b in itertools.product(range(n_mod * n_read), repeat=2):
        (i, j), (i2, j2) = divmod(a, n_read), divmod(b, n_read)
        if j == j2:
            key = "var" if i == i2 else "cov1"  # one reader: one modality, or two
        else:
            key = "cov2" if i == i2 else "cov3"  # two readers: one modality, or two
        groups[key].append(cov[a, b])
    return {key: float(np.mean(values)) if values else 0.0 for key, values in groups.items()}


def or_analysis(data: MRMCData, level: float = 0.95) -> ORResult:
    """See :func:`_or_analysis`; degenerate data (every reader gives one score) yields NaN
    statistics rather than division warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _or_analysis(data, level)


def _or_analysis(data: MRMCData, level: float = 0.95) -> ORResult:
    """The OR RRRC analysis of ``data``: every reader reads every case of a modality; two
    modalities may show different cases (jackknife over the union of cases).

    Raises:
        ValueError: fewer than two readers, or a reader without a score for a case of a
            modality.
    """
    data.check()
    n_mod, n_read = len(data.modalities), len(data.readers)
    if n_read < 2:
        raise ValueError("an MRMC analysis needs at least two readers")
    aucs, jack, shown = _reader_aucs(data)
    variance = _covariances(jack)
    grand = aucs.mean()
    per_mod, per_reader = aucs.mean(axis=1), aucs.mean(axis=0)
    ms_t = n_read * ((per_mod - grand) ** 2).sum() / (n_mod - 1) if n_mod > 1 else 0.0
    ms_r = n_mod * ((per_reader - grand) ** 2).sum() / (n_read - 1)
    interaction = aucs - per_mod[:, None] - per_reader[None, :] + grand
    ms_tr = (interaction ** 2).sum() / ((n_mod - 1) * (n_read - 1)) if n_mod > 1 else 0.0
    alpha = 1 - level
    single = {}
    for i, modality in enumerate(data.modalities):
        ms_r_i = ((aucs[i] - per_mod[i]) ** 2).sum() / (n_read - 1)
        cov2_i = _covariances(jack[i:i + 1][:, :, shown[i]])["cov2"]  # its own cases
        denominator = ms_r_i + n_read * max(cov2_i, 0.0)
        se = math.sqrt(max(denominator, 0.0) / n_read)
        df = denominator ** 2 / (ms_r_i ** 2 / (n_read - 1)) if ms_r_i > 0 else float("inf")
        half = stats.t.ppf(1 - alpha / 2, df) * se
        t = (per_mod[i] - 0.5) / se if se > 0 else float("nan")
        p = float(2 * stats.t.sf(abs(t), df))
        ci = (float(per_mod[i] - half), float(per_mod[i] + half))
        reading = ("Readers tell the two classes apart (the CI excludes 0.5)." if ci[0] > 0.5 else
                   "Readers score the classes the wrong way round (the CI is below 0.5)."
                   if ci[1] < 0.5 else "Readers cannot tell the two classes apart: the CI "
                                       "contains 0.5.")
        single[modality] = {"auc": float(per_mod[i]), "se": se, "df": float(df), "ci": ci,
                            "t": float(t), "p": p, "ms_r": float(ms_r_i), "cov2": cov2_i,
                            "reading": reading}
    comparison = None
    if n_mod > 1:
        denominator = ms_tr + n_read * max(variance["cov2"] - variance["cov3"], 0.0)
        ddf = denominator ** 2 / (ms_tr ** 2 / ((n_mod - 1) * (n_read - 1)))
        f_stat = ms_t / denominator
        pairs = []
        for a, b in itertools.combinations(range(n_mod), 2):
            diff = per_mod[a] - per_mod[b]
            se = math.sqrt(2 / n_read * max(denominator, 0.0))
            half = stats.t.ppf(1 - alpha / 2, ddf) * se
            pairs.append({"a": data.modalities[a], "b": data.modalities[b], "diff": float(diff),
                          "se": se, "ci": (float(diff - half), float(diff + half)),
                          "p": float(2 * stats.t.sf(abs(diff / se), ddf))})
        comparison = {"F": float(f_stat), "ndf": n_mod - 1, "ddf": float(ddf),
                      "p": float(stats.f.sf(f_stat, n_mod - 1, ddf)), "pairs": pairs}
    return ORResult(data.modalities, data.readers, aucs,
                    {m: float(a) for m, a in zip(data.modalities, per_mod)}, variance,
                    {"T": float(ms_t), "R": float(ms_r), "TR": float(ms_tr)}, single, comparison)
