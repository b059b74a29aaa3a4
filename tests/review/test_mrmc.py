"""MRMC ROC analysis reproduces the published Obuchowski-Rockette analysis of the Van Dyke data
(tests/fixtures/README.md gives the source of the data and of every number below)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polyp_core.errors import DatasetImportError
from polyp_core.review.mrmc import (MRMCData, auc, delong_auc, imrmc_text, or_analysis,
                                    read_imrmc)

VANDYKE = Path(__file__).resolve().parents[1] / "fixtures" / "vandyke.imrmc"
AUCS = [[0.9196457, 0.8587762, 0.9038647, 0.9731079, 0.8297907],
        [0.9478261, 0.9053140, 0.9217391, 0.9993559, 0.9299517]]


def test_van_dyke_reproduces_the_published_or_analysis():
    result = or_analysis(read_imrmc(VANDYKE))
    assert result.readers == ["0", "1", "2", "3", "4"] and result.modalities == ["0", "1"]
    np.testing.assert_allclose(result.aucs, AUCS, atol=5e-8)
    assert result.mean_auc == pytest.approx({"0": 0.8970370, "1": 0.9408374}, abs=5e-8)
    assert result.variance == pytest.approx({"var": 0.0008022883, "cov1": 0.0003466137,
                                             "cov2": 0.0003440748, "cov3": 0.0002390284}, abs=5e-11)
    assert result.ms["T"] == pytest.approx(0.004796171, abs=5e-10)
    assert result.ms["TR"] == pytest.approx(0.0005510306, abs=5e-11)
    c = result.comparison
    assert (round(c["F"], 3), c["ndf"], round(c["ddf"], 3), round(c["p"], 3)) == \
        (4.456, 1, 15.26, 0.052)
    assert c["F"] == pytest.approx(4.456319, abs=5e-7)
    assert c["ddf"] == pytest.approx(15.25967, abs=5e-6)
    assert c["p"] == pytest.approx(0.05166569, abs=5e-9)
    (pair,) = c["pairs"]
    assert pair["diff"] == pytest.approx(-0.04380032, abs=5e-9)
    assert pair["se"] == pytest.approx(0.02074862, abs=5e-9)
    assert pair["ci"] == pytest.approx((-0.0879594986, 0.0003588544), abs=5e-9)
    for modality, (se, df, low, high) in {"0": (0.03317360, 12.74465, 0.8252236, 0.9688505),
                                          "1": (0.02156637, 12.71019, 0.8941378, 0.9875369)}.items():
        one = result.single[modality]
        assert (one["se"], one["df"]) == pytest.approx((se, df), abs=5e-6)
        assert one["ci"] == pytest.approx((low, high), abs=5e-7)
        assert "CI excludes 0.5" in one["reading"]


def test_the_cli_prints_the_analysis_and_json(tmp_path):
    def run(*extra):
        return subprocess.run(
            [sys.executable, "-m", "polyp_core", "--workspace", str(tmp_path), "mrmc", str(VANDYKE),
             *extra], capture_output=True, text=True)
    text = run()
    assert text.returncode == 0, text.stderr
    assert "F = 4.4563, ndf = 1, ddf = 15.2597, p = 0.05167" in text.stdout
    assert "0 - 1: -0.04380 (95% CI -0.08796 to +0.00036)" in text.stdout
    out = json.loads(run("--json").stdout)
    assert out["comparison"]["F"] == pytest.approx(4.456319, abs=5e-7)
    assert (out["F"], out["ddf"], out["p"], out["diff"]) == pytest.approx(
        (4.456319, 15.25967, 0.05166569, -0.04380032), abs=5e-6)
    assert out["ci"] == pytest.approx([-0.0879594986, 0.0003588544], abs=5e-9)
    assert out["aucs"]["1"]["3"] == pytest.approx(0.9993559, abs=5e-8)
    assert out["mean_auc"]["0"] == pytest.approx(0.8970370, abs=5e-8)
    bad = tmp_path / "bad.imrmc"
    bad.write_text("BEGIN DATA:\n-1,1,truth,0\n-1,2,truth,1\nr1,1,A,0.5\nr1,2,A,high\n")
    failed = subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", str(tmp_path),
                             "mrmc", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert "bad.imrmc row 5: score 'high' is not a number" in failed.stderr


def test_the_imrmc_format_round_trips(tmp_path):
    data = read_imrmc(VANDYKE)
    path = tmp_path / "again.imrmc"
    path.write_text(imrmc_text(data))
    again = read_imrmc(path)
    assert again.truth == data.truth and again.scores == data.scores


def test_modalities_may_show_different_negatives_beside_the_same_positives():
    """Two generators in one study: the real images are shared, each generator's images are
    its own; the comparison uses the shared cases only through the jackknife."""
    rng = np.random.default_rng(0)
    truth = {f"r{i}": 1 for i in range(30)} | {f"a{i}": 0 for i in range(30)} | \
        {f"b{i}": 0 for i in range(30)}
    data = MRMCData(truth=truth)
    for modality, own, shift in (("A", "a", 1.5), ("B", "b", 0.2)):
        for reader in ("x", "y", "z"):
            cases = [c for c in truth if c[0] in ("r", own)]
            data.scores.setdefault(modality, {})[reader] = {
                c: float(rng.normal(shift if truth[c] else 0.0)) for c in cases}
    result = or_analysis(data)
    assert result.mean_auc["A"] > result.mean_auc["B"]
    assert result.comparison["pairs"][0]["diff"] > 0
    del data.scores["A"]["y"]["a3"]
    with pytest.raises(ValueError, match="reader y has no score for case a3 in modality A"):
        or_analysis(data)


def test_auc_and_delong_on_a_hand_worked_example():
    # negatives 1, 2, 3; positives 2, 4: positive 2 wins 1 + 0.5 + 0, positive 4 wins 3: 4.5 of 6
    scores, truth = [1, 2, 3, 2, 4], [0, 0, 0, 1, 1]
    assert auc(scores, truth) == pytest.approx(4.5 / 6)
    one = delong_auc(scores, truth)
    # V10 (per positive) = (1.5/3, 3/3), V01 (per negative) = (1, .75, .5)
    s10, s01 = np.var([0.5, 1.0], ddof=1), np.var([1.0, 0.75, 0.5], ddof=1)
    assert one["se"] == pytest.approx(np.sqrt(s10 / 2 + s01 / 3))


def test_bad_files_name_the_row():
    with pytest.raises(DatasetImportError, match="no 'BEGIN DATA:' line"):
        read_imrmc(Path(__file__))


def test_power_planner_holds_its_level_and_grows_with_the_design():
    """Simulated studies under the null (AUC 0.5) are rejected at about the nominal 5%; the
    power grows with the effect and with readers and images."""
    from polyp_core.review.power import study_power

    null = study_power(0.5, 5, 30, 30, simulations=400, seed=3)
    # seeded: 21 of 400 (5.25 %); a level-5 % test over 400 studies has a standard error of
    # 1.1 %, so the band is the nominal level +- 3 SE
    assert null.power == pytest.approx(21 / 400), null.line()
    assert 0.05 - 3 * 0.011 <= null.power <= 0.05 + 3 * 0.011
    small = study_power(0.65, 3, 15, 15, simulations=150, seed=4)
    large = study_power(0.65, 6, 60, 60, simulations=150, seed=4)
    assert large.power > small.power + 0.2, (small.line(), large.line())
    pair = study_power(0.85, 4, 30, 30, other_auc=0.6, simulations=100, seed=5)
    assert pair.power > 0.7 and "generators with AUC 0.85 and 0.60 differ" in pair.line()
    with pytest.raises(ValueError, match="at least two readers"):
        study_power(0.7, 1, 10, 10)
