"""How many readers and images a study needs: the power of the OR random-reader random-case
analysis, by simulation.

Readings are simulated with a Roe-Metz-style model on the five-point scale: reader ``j``'s
latent score of case ``k`` is ``t_k * (mu + tau_j) + C_k + E_jk`` (``t_k`` 1 for a real
image, ``C_k`` the case's own difficulty shared by every reader, ``E_jk`` the reader's noise,
``tau_j`` the reader's skill), cut into five ordered categories. ``mu`` is set so that the
typical reader's AUC is the target; every simulated study is analysed exactly as a real one
(``mrmc.or_analysis``), and the power is the share of simulated studies whose test rejects.
The variance components are assumptions (the defaults follow the Roe & Metz simulation
studies: case and reader-case variances of 0.3 and 0.7 on the latent scale, reader spread
0.3); the planner states them with its answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from polyp_core.review.mrmc import MRMCData, or_analysis


@dataclass(frozen=True)
class PowerResult:
    power: float
    low: float
    high: float
    simulations: int
    question: str
    assumptions: str

    def line(self) -> str:
        return (f"power {self.power:.2f} (95% CI {self.low:.2f}-{self.high:.2f}, "
                f"{self.simulations} simulated studies) to show {self.question}; "
                f"assumed: {self.assumptions}")


def _mu_for(auc: float, case_var: float, noise_var: float) -> float:
    """Separation on the latent scale that gives a reader this AUC (binormal, equal variances)."""
    return float(stats.norm.ppf(auc) * math.sqrt(2 * (case_var + noise_var)))


def _simulate(rng: np.random.Generator, mus: dict[str, float], readers: int, n_real: int,
              n_synthetic: int, case_var: float, noise_var: float, reader_sd: float) -> MRMCData:
    """One simulated study: modalities share the real images, each has its own synthetic ones."""
    truth = {f"r{k}": 1 for k in range(n_real)}
    case_effect = {c: rng.normal(0, math.sqrt(case_var)) for c in truth}
    for m in mus:
        for k in range(n_synthetic):
            truth[f"{m}-s{k}"] = 0
            case_effect[f"{m}-s{k}"] = rng.normal(0, math.sqrt(case_var))
    data = MRMCData(truth=truth)
    skills = rng.normal(0, reader_sd, readers)
    for m, mu in mus.items():
        cases = [c for c in truth if c.startswith("r") or c.startswith(f"{m}-")]
        latent = {j: {c: truth[c] * (mu + skills[j]) + case_effect[c]
                      + rng.normal(0, math.sqrt(noise_var)) for c in cases}
                  for j in range(readers)}
        cuts = np.quantile([v for row in latent.values() for v in row.values()], [.2, .4, .6, .8])
        data.scores[m] = {str(j): {c: float(1 + np.searchsorted(cuts, v)) for c, v in row.items()}
                          for j, row in latent.items()}
    return data


def study_power(target_auc: float, readers: int, n_real: int, n_synthetic: int,
                other_auc: float | None = None, simulations: int = 200, alpha: float = 0.05,
                seed: int = 0, case_var: float = 0.3, noise_var: float = 0.7,
                reader_sd: float = 0.3) -> PowerResult:
    """Power to show that readers tell real from synthetic (reader-averaged AUC differs from
    0.5, two-sided) when their AUC is ``target_auc``; with ``other_auc``, power to show that
    two generators (``n_synthetic`` images each, the same real images) differ.

    Raises:
        ValueError: fewer than two readers, or fewer than two images of a kind.
    """
    if readers < 2:
        raise ValueError("an MRMC analysis needs at least two readers")
    if n_real < 2 or n_synthetic < 2:
        raise ValueError("a study needs at least two real and two synthetic images")
    for auc in (target_auc, other_auc):
        if auc is not None and not 0.5 <= auc < 1:
            raise ValueError(f"a target AUC is from 0.5 to below 1; got {auc}")
    rng = np.random.default_rng(seed)
    mus = {"A": _mu_for(target_auc, case_var, noise_var)}
    if other_auc is not None:
        mus["B"] = _mu_for(other_auc, case_var, noise_var)
    rejected = 0
    for _ in range(simulations):
        result = or_analysis(_simulate(rng, mus, readers, n_real, n_synthetic, case_var,
                                       noise_var, reader_sd))
        p = result.comparison["p"] if other_auc is not None else result.single["A"]["p"]
        rejected += bool(p < alpha)
    low, high = stats.binomtest(rejected, simulations).proportion_ci(0.95, method="wilson")
    question = (f"generators with AUC {target_auc:.2f} and {other_auc:.2f} differ"
                if other_auc is not None else f"AUC {target_auc:.2f} differs from 0.5")
    question += f" with {readers} readers, {n_real} real and {n_synthetic} synthetic images" + \
        (" per generator" if other_auc is not None else "") + f" (alpha {alpha})"
    assumptions = (f"every reader reads every image; Roe-Metz latent model, case variance "
                   f"{case_var}, reader-case variance {noise_var}, reader spread {reader_sd}")
    return PowerResult(rejected / simulations, float(low), float(high), simulations, question,
                       assumptions)
