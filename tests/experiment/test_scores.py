"""Known answers, worked by hand in each test, for every number the studio reports on a
segmentation, a gate, the gated and expert selections, mask-quality agreement and
compare-runs. Each test names the wrong line it is there to catch (tests/MUTATION.md lists
the planted mutants and the test that kills each)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from polyp_core.data.tensors import ImageRef
from polyp_core.experiment.policy import Selection, SelectionPolicy, mask_passes
from polyp_core.segment.metrics import mask_scores, summarise_scores

Z = 1.959963984540054


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """Wilson's score interval written out: centre (k + z²/2) / (n + z²), half-width
    z·sqrt(k(n-k)/n + z²/4) / (n + z²)."""
    centre = (k + Z * Z / 2) / (n + Z * Z)
    half = Z * math.sqrt(k * (n - k) / n + Z * Z / 4) / (n + Z * Z)
    return centre - half, centre + half


# --- segmentation scores -----------------------------------------------------------------

def test_dice_iou_precision_recall_on_4x4_masks_with_the_empty_cases():
    """Four 4 x 4 images. 0: truth 4 px, prediction 6 px of which 4 right (Dice 8/10 = 0.8,
    IoU 4/6, precision 4/6, recall 1). 1: truth 8 px, nothing predicted (Dice, IoU, precision
    and recall 0: a missed polyp is a zero, not a gap). 2: no polyp, nothing predicted (no
    score; not a false positive). 3: no polyp, 1 px predicted (no score; a false positive).
    Catches: a swapped precision/recall, a union for Dice, empty images averaged in as 0 or 1,
    a false positive counted on an image that has a polyp."""
    truth = np.zeros((4, 4, 4), bool)
    truth[0, :2, :2] = True
    truth[1, :, :2] = True
    predicted = np.zeros_like(truth)
    predicted[0, :2, :3] = True
    predicted[3, 3, 3] = True
    with warnings.catch_warnings():  # no division warning leaks out of the scores
        warnings.simplefilter("error")
        s = mask_scores(predicted, truth)
        summary = summarise_scores(s)
        only_empty = summarise_scores(mask_scores(predicted[2:], truth[2:]))
        # one predicted pixel, inside a 2-pixel polyp: precision 1, recall 1/2, Dice 2/3
        lone_truth = np.zeros((1, 2, 2), bool)
        lone_truth[0, 0] = True
        lone = mask_scores(lone_truth & np.array([[[True, False], [False, False]]]), lone_truth)
    assert (lone["precision"][0], lone["recall"][0]) == (1.0, 0.5)
    assert lone["dice"][0] == pytest.approx(2 / 3) and lone["iou"][0] == 0.5
    assert s["dice"][0] == pytest.approx(0.8) and s["iou"][0] == pytest.approx(4 / 6)
    assert s["precision"][0] == pytest.approx(4 / 6) and s["recall"][0] == 1.0
    assert [s[k][1] for k in ("dice", "iou", "precision", "recall")] == [0.0, 0.0, 0.0, 0.0]
    assert all(np.isnan(s[k][i]) for k in ("dice", "iou", "precision", "recall") for i in (2, 3))
    assert s["empty"].tolist() == [False, False, True, True]
    assert s["false_positive"].tolist() == [False, False, False, True]
    assert summary["dice"] == pytest.approx(0.4) and summary["iou"] == pytest.approx(1 / 3)
    assert summary["precision"] == pytest.approx(1 / 3) and summary["recall"] == pytest.approx(0.5)
    assert (summary["images_with_polyp"], summary["empty_images"],
            summary["empty_false_positives"]) == (2, 2, 1)
    assert np.isnan(only_empty["dice"]) and only_empty["images_with_polyp"] == 0


class FixedLogits(torch.nn.Module):
    """A 'U-Net' whose logits are fixed per image: the threshold alone decides its masks."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives it a device
        self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.device_seen = x.device
        assert self.seen + len(x) <= len(self.logits), "an image was predicted twice"
        out = self.logits[self.seen:self.seen + len(x)]
        self.seen += len(x)
        return out


def _masked(truth: np.ndarray):
    from polyp_core.segment.train import MaskTensors

    n, h, w = truth.shape
    refs = [ImageRef(f"{i:064x}", f"/x/{i}.png", "lesion", mask=f"/x/{i}_m.png") for i in range(n)]
    return MaskTensors(refs, torch.zeros((n, 3, h, w), dtype=torch.uint8), torch.from_numpy(truth))


def test_a_prediction_is_a_logit_above_zero_and_the_gate_iou_follows_it():
    """Logits 0.3 (probability 0.57) count as polyp, 0.0 (0.5) and -0.3 do not. Image 0:
    logits [[0.3, -0.3], [0.0, 2.0]] predict {(0,0), (1,1)}; its truth {(0,0), (0,1), (1,1)}:
    IoU 2/3. Image 1: logits all 0.6 (all polyp) against a truth of one pixel: IoU 1/4.
    Catches: a threshold on the logit at 0.5 (image 0 loses (0,0), image 1 empties: 1/2, 0),
    at >= 0 (image 0 gains (1,0): 2/4), or on the probability at 0 (everything: 3/4)."""
    from polyp_core.segment.gate import gate_ious
    from polyp_core.segment.train import predict_masks

    logits = torch.tensor([[[[0.3, -0.3], [0.0, 2.0]]], [[[0.6, 0.6], [0.6, 0.6]]]])
    truth = np.array([[[True, True], [False, True]], [[False, False], [False, True]]])
    data = _masked(truth)
    predicted = predict_masks(FixedLogits(logits), data, torch.device("cpu"), batch_size=1)
    assert predicted.tolist() == [[[True, False], [False, True]], [[True, True], [True, True]]]
    nothing = predict_masks(FixedLogits(logits), data.subset([]), torch.device("cpu"))
    assert nothing.shape == (0, 2, 2) and nothing.dtype == bool
    ious = gate_ious(FixedLogits(logits), data, torch.device("cpu"))
    assert ious == pytest.approx([2 / 3, 1 / 4])
    # no device given: the images go to the model's own (a GPU's, in use; "meta" here)
    model = FixedLogits(logits)
    assert gate_ious(model, data) == pytest.approx([2 / 3, 1 / 4])
    assert model.device_seen == torch.device("cpu")
    on_meta = FixedLogits(logits)
    on_meta.anchor = torch.nn.Parameter(torch.zeros(1, device="meta"))
    assert gate_ious(on_meta, data) == pytest.approx([2 / 3, 1 / 4])
    assert on_meta.device_seen.type == "meta"


def test_the_training_loss_is_bce_plus_the_per_image_soft_dice_loss():
    """Logits 0 everywhere (probability 1/2) on two 2 x 2 images: BCE ln 2 whatever the
    mask. Image 0 has one polyp pixel: soft Dice (2 · 1/2 + 1)/(2 + 1 + 1) = 1/2; image 1 none:
    (0 + 1)/(2 + 0 + 1) = 1/3. Loss ln 2 + mean(1/2, 2/3) = ln 2 + 7/12. Catches: Dice over
    the batch instead of per image, the smoothing term dropped, BCE on probabilities."""
    from polyp_core.segment.train import dice_bce_loss

    masks = torch.zeros((2, 2, 2), dtype=torch.bool)
    masks[0, 0, 0] = True
    loss = dice_bce_loss(torch.zeros((2, 1, 2, 2)), masks)
    assert loss.item() == pytest.approx(math.log(2) + 7 / 12, abs=1e-6)
    sharp = dice_bce_loss(torch.full((1, 1, 2, 2), 20.0), torch.ones((1, 2, 2), dtype=torch.bool))
    assert sharp.item() == pytest.approx(0.0, abs=1e-6)  # sure and right: no loss
    assert dice_bce_loss(torch.zeros((1, 1, 2, 2)), torch.zeros((1, 2, 2), dtype=torch.bool),
                         eps=0.0).item() == pytest.approx(math.log(2) + 1.0, abs=1e-6)


# --- the gate ------------------------------------------------------------------------------

def test_acceptance_at_0_7_counts_ties_in_and_empty_masks_out():
    """IoUs of five images of two keys at the paper's 0.7. AD: 0.7 (a tie: kept), 0.69999
    (not), 0.95 (kept): 2 of 3. HP: NaN (an empty intended mask: counted, never kept) and 0.2:
    0 of 2. Wilson intervals as worked out by hand. Catches: ``iou < threshold`` (AD 1 of 3,
    HP 1 of 2), ``>`` for ``>=`` (AD 1 of 3), NaN images dropped from n (HP 0 of 1)."""
    from polyp_core.segment.gate import acceptance, distribution, passes
    from polyp_core.segment.gate import rate as gate_rate

    keys = ["g / AD", "g / AD", "g / AD", "g / HP", "g / HP"]
    ious = [0.7, 0.69999, 0.95, float("nan"), 0.2]
    rates = acceptance(keys, ious, 0.7)
    assert {k: (r["accepted"], r["n"]) for k, r in rates.items()} == {"g / AD": (2, 3),
                                                                       "g / HP": (0, 2)}
    assert rates["g / AD"]["rate"] == pytest.approx(2 / 3)
    assert rates["g / AD"]["ci"] == pytest.approx(wilson_by_hand(2, 3), abs=1e-9)
    assert rates["g / AD"]["ci"] == pytest.approx((0.2076596, 0.9385081), abs=1e-6)
    assert rates["g / HP"]["rate"] == 0.0
    assert rates["g / HP"]["ci"] == pytest.approx(wilson_by_hand(0, 2), abs=1e-9)
    assert [passes(v, 0.7) for v in ious] == [True, False, True, False, False]
    with pytest.raises(ValueError, match="5 keys but 4 IoUs"):
        acceptance(keys, ious[:4], 0.7)
    # the real-frame reference: quartiles and the share at or above 0.7 (ties in, NaN out)
    ref = distribution(np.array([0.5, 0.7, 0.7, 0.9, float("nan")]), 0.7)
    assert ref["n"] == 4  # quartiles by linear interpolation between order statistics
    assert (ref["q1"], ref["median"], ref["q3"]) == pytest.approx((0.65, 0.7, 0.75))
    assert ref["mean"] == pytest.approx(0.7) and ref["sd"] == pytest.approx(math.sqrt(0.08 / 3))
    assert (ref["at_threshold"]["accepted"], ref["at_threshold"]["n"]) == (3, 4)
    assert distribution(np.array([float("nan")]), 0.7) == {"n": 0}
    spread_out = distribution(np.array([0.5, 0.6, 0.8, 0.9]), 0.7)
    assert (spread_out["q1"], spread_out["median"], spread_out["q3"]) == \
        pytest.approx((0.575, 0.7, 0.825))
    assert distribution(np.array([0.8]), 0.7)["sd"] == 0.0  # one image: no spread
    assert distribution(np.array([0.6, 0.8]), 0.7)["sd"] == pytest.approx(math.sqrt(0.02))
    # rates of nothing and of one image
    assert gate_rate(0, 0) == {"accepted": 0, "n": 0, "rate": None, "ci": None}
    one = gate_rate(1, 1)
    assert (one["accepted"], one["n"], one["rate"]) == (1, 1, 1.0)
    assert one["ci"] == pytest.approx(wilson_by_hand(1, 1), abs=1e-9)


def _refs(n: int) -> list[ImageRef]:
    return [ImageRef(f"{i:064x}", f"/p/{i}.png", "AD", "synthetic", f"/p/{i}_m.png")
            for i in range(n)]


def test_the_gated_selection_keeps_exactly_the_images_at_or_above_the_threshold():
    """Five candidates with given gate IoUs [0.7, 0.69999, NaN, 0.71, 0.0]. At 0.7 the gate
    keeps images 0 and 3; at 0.0 every image with a mask (0, 1, 3, 4). Catches: the comparison
    inverted (keeps 1, 4), a strict ``>`` (keeps 3 only), NaN kept, images and IoUs paired
    out of order."""
    from polyp_core.segment.gate import kept_by_gate

    refs = _refs(5)
    ious = np.array([0.7, 0.69999, float("nan"), 0.71, 0.0])
    assert kept_by_gate(refs, ious, 0.7) == [refs[0], refs[3]]
    assert kept_by_gate(refs, ious, 0.0) == [refs[0], refs[1], refs[3], refs[4]]
    assert kept_by_gate(refs, ious, 0.72) == []
    with pytest.raises(ValueError, match="5 images but 2 IoUs"):
        kept_by_gate(refs, ious[:2], 0.7)


def test_the_expert_selection_keeps_masks_rated_well_by_enough_reviewers():
    """Four images of one fold; ``min_mask_quality=moderate``, two reviewers needed. Image 0:
    r1 good, r2 moderate (kept). Image 1: r1 good, r2 poor (one reviewer: dropped). Image 2:
    r1 moderate twice (one reviewer, however often: dropped). Image 3: nobody rated its mask
    (kept under ``unrated=include``, dropped under ``exclude``). A fold without a selection
    stays None; one left empty is refused. Catches: ``>`` for ``>=`` on the rank (image 0
    dropped), counting ratings instead of reviewers (image 2 kept), the unrated rule ignored."""
    from polyp_core.experiment.policy import expert_selections

    refs = _refs(4)
    rows = [(refs[0].sha256, "r1", "good"), (refs[0].sha256, "r2", "moderate"),
            (refs[1].sha256, "r1", "good"), (refs[1].sha256, "r2", "poor"),
            (refs[2].sha256, "r1", "moderate"), (refs[2].sha256, "r1", "moderate")]
    policy = SelectionPolicy(min_mask_quality="moderate", min_reviewers=2)
    chosen = Selection(refs, "hash", {"selected": {"AD": 4}})
    first, none = expert_selections(rows, policy, [chosen, None])
    assert first.images == [refs[0], refs[3]] and none is None
    none, later = expert_selections(rows, policy, [None, chosen])  # a gap ends nothing
    assert none is None and later.images == [refs[0], refs[3]]
    assert first.counts["expert"] == {"min_mask_quality": "moderate", "kept": 2, "of": 4}
    assert first.counts["selected"] == {"AD": 4}  # what the selection said stays
    strict = SelectionPolicy(min_mask_quality="good", min_reviewers=1, unrated="exclude")
    assert expert_selections(rows, strict, [chosen])[0].images == [refs[0], refs[1]]
    with pytest.raises(ValueError, match="^no selected image has a mask rated good or better "
                                         r"by 2 reviewer\(s\); the expert arm needs a study "
                                         "that showed their masks$"):
        expert_selections(rows[2:4], SelectionPolicy(min_mask_quality="good", min_reviewers=2,
                                                     unrated="exclude"), [chosen])
    # the rule for one image, at an explicit threshold
    assert mask_passes([("r1", "moderate")], policy, threshold="moderate") is False  # 1 < 2
    assert mask_passes([("r1", "moderate"), ("r2", "good")], policy, threshold="good") is False
    assert mask_passes([("r1", "good"), ("r2", "good")], policy, threshold="good") is True


# --- agreement on mask quality -------------------------------------------------------------

def _mask_records(pairs: list[tuple[str, str]]) -> list[dict]:
    out = []
    for k, answers in enumerate(pairs):
        for reviewer, answer in zip(("A", "B"), answers):
            out.append({"reviewer": reviewer, "image": f"i{k}", "truth": "synthetic",
                        "source": "gen", "label": "AD", "verdict": "synthetic", "confidence": 4,
                        "quality": "good", "mask_quality": answer, "kind": "main"})
    return out


def test_mask_quality_agreement_on_a_table_worked_by_hand():
    """Two reviewers, six masks (poor 0, moderate 1, good 2): (2,2) (2,1) (1,1) (0,1) (0,0)
    (2,0).

    Linear weighted kappa: observed disagreement sum|a-b| / 6 = 4/6; A's marginals (2,1,3)/6,
    B's (2,3,1)/6; expected sum_ij pA_i pB_j |i-j| = (10 + 3 + 21)/36 = 34/36; kappa =
    1 - (4/6)/(34/36) = 5/17.
    Gwet's AC1: agreement 3/6; each category's mean share pi = 4/12; chance
    (1/(q-1)) sum pi(1-pi) = (1/2)(3 · 2/9) = 1/3; AC1 = (1/2 - 1/3)/(1 - 1/3) = 1/4.
    Krippendorff's ordinal alpha: coincidences o = [[2,1,1],[1,2,1],[1,1,2]], n_c = 4 each,
    n = 12; ordinal distances d(0,1) = d(1,2) = (8 - 4)^2 = 16, d(0,2) = (12 - 4)^2 = 64;
    alpha = 1 - (n-1) sum o d / sum n_c n_k d = 1 - 11 · 192 / 3072 = 5/16.
    Catches: unweighted kappa (0.25), nominal alpha, AC1 with Cohen's chance term, the
    reviewers' answers paired across images."""
    from polyp_core.review.stats import mask_quality

    table = [("good", "good"), ("good", "moderate"), ("moderate", "moderate"),
             ("poor", "moderate"), ("poor", "poor"), ("good", "poor")]
    result = mask_quality(_mask_records(table))
    (pair,) = result["weighted_kappa"]
    assert (pair["a"], pair["b"], pair["n"]) == ("A", "B", 6)
    assert pair["weighted_kappa"] == pytest.approx(5 / 17, abs=1e-12)
    assert result["ac1"]["ac1"] == pytest.approx(0.25, abs=1e-12)
    assert result["ac1"]["pa"] == pytest.approx(0.5) and result["ac1"]["pe"] == pytest.approx(1 / 3)
    assert result["krippendorff"]["alpha"] == pytest.approx(5 / 16, abs=1e-12)
    assert result["krippendorff"]["n_images"] == 6
    # one source, per class and "all": poor 4 of 12 ratings, good 4 of 12
    rows = {(r["source"], r["class"]): r for r in result["by_source"]}
    assert rows[("gen", "all")]["poor"] == 4 and rows[("gen", "all")]["good"] == 4
    assert rows[("gen", "all")]["good_share"] == pytest.approx(4 / 12)
    assert rows[("gen", "all")]["images"] == 6
    assert result["image_vs_mask"]["good"] == {"good": 4, "moderate": 4, "poor": 4}



def test_mask_quality_with_three_reviewers_two_values_and_an_unlabelled_image():
    """A rates i0 good, i1 good, i2 poor; B i0 poor, i3 good, i4 poor; C i1 good, i2 good, i3
    good, i4 poor; i4 has no class. No one said "moderate".

    Pairs: A-B share one image (skipped; the others still count), A-C share i1, i2: x = (2, 0),
    y = (2, 2): observed sum w O = |0 - 2| = 2, expected from marginals A (1, 0, 1)/2 and C
    (0, 0, 2)/2: 2 · (1 · 2)/2 = 2, kappa = 1 - 2/2 = 0; B-C share i3, i4 and agree: kappa 1.
    Gwet's AC1 over the five images with two ratings: agreement 3/5; mean shares good 3/5,
    poor 2/5, moderate 0; chance over the scale's three categories (1/2)(2 · 6/25) = 6/25;
    AC1 = (15/25 - 6/25)/(19/25) = 9/19 (3/13 if only the two values seen counted).
    By class: all 10 ratings (poor 4), AD 8, the unlabelled "?" 2 (both poor).
    Catches: a pair of two shared images skipped, a skipped pair ending the others, images
    rated by only one of a pair, kappa only above two values, AC1 over the observed
    categories, classes merged, the "?" class renamed."""
    from polyp_core.review.stats import mask_quality

    def r(reviewer, image, answer, label="AD"):
        return {"reviewer": reviewer, "image": image, "truth": "synthetic", "source": "gen",
                "label": label, "verdict": "synthetic", "confidence": 4, "quality": "good",
                "mask_quality": answer, "kind": "main"}

    records = [r("A", "i0", "good"), r("A", "i1", "good"), r("A", "i2", "poor"),
               r("B", "i0", "poor"), r("B", "i3", "good"), r("B", "i4", "poor", None),
               r("C", "i1", "good"), r("C", "i2", "good"), r("C", "i3", "good"),
               r("C", "i4", "poor", None)]
    result = mask_quality(records)
    assert [(p["a"], p["b"], p["n"], p["weighted_kappa"]) for p in result["weighted_kappa"]] == [
        ("A", "C", 2, pytest.approx(0.0, abs=1e-12)), ("B", "C", 2, pytest.approx(1.0))]
    assert result["ac1"]["ac1"] == pytest.approx(9 / 19, abs=1e-12)
    assert result["n"] == 10
    rows = {r["class"]: r for r in result["by_source"]}
    assert list(rows) == ["?", "AD", "all"]
    assert [(rows[c]["ratings"], rows[c]["poor"], rows[c]["good"]) for c in rows] == [
        (2, 2, 0), (8, 2, 6), (10, 4, 6)]
    assert rows["?"]["poor_share"] == 1.0 and rows["?"]["good_share"] == 0.0
    assert rows["all"]["poor_share"] == pytest.approx(0.4) and rows["all"]["images"] == 5

# --- compare-runs --------------------------------------------------------------------------

def _classification_results(macro: float, ad_recall: float) -> dict:
    per_class = {"AD": {"precision": {"mean": 0.8}, "recall": {"mean": ad_recall},
                        "f1": {"mean": 0.7}},
                 "HP": {"precision": {"mean": 0.5}, "recall": {"mean": 0.4}, "f1": {"mean": 0.45}}}
    summary = {"macro_f1": {"mean": macro}, "balanced_accuracy": {"mean": 0.6},
               "accuracy": {"mean": 0.7}, "per_class": per_class}
    return {"task": "classification", "arms": {"baseline": {"summary": summary},
                                               "augmented": {"summary": summary}},
            "selection": {"ratings_hash": f"h{macro}"}}


def test_compare_runs_of_two_runs_that_differ_by_a_known_amount(tmp_path):
    """Run b: macro-F1 0.55 against a's 0.50 (+0.05), AD recall 0.70 against 0.90 (-0.20),
    epochs 2 -> 3, synthetic images {s1, s2} -> {s2, s3}, another ratings hash. Catches: a - b
    for b - a, a metric read from the wrong arm, the image sets swapped."""
    from polyp_core.experiment import compare_runs
    from polyp_core.runs import save_run
    from polyp_core.workspace import Workspace
    from review_db.database import Database

    workspace = Workspace(tmp_path / "ws")
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    for run_id, macro, recall, epochs, shas in (("a", 0.50, 0.90, 2, ("s1", "s2")),
                                                ("b", 0.55, 0.70, 3, ("s2", "s3"))):
        folder = tmp_path / run_id
        folder.mkdir()
        save_run(db, workspace, run_id, folder, "retrain",
                 {"dataset": "demo", "train": {"epochs": epochs}},
                 _classification_results(macro, recall),
                 {"synthetic": [{"sha256": s} for s in shas]})
    diff = compare_runs(db, "a", "b")
    assert diff["config"] == {"train.epochs": [2, 3]}
    assert diff["images"] == {"only_in_a": ["s1"], "only_in_b": ["s3"], "shared": 1}
    assert diff["ratings_changed"] is True
    for arm in ("baseline", "augmented"):
        row = diff["metrics"][arm]
        assert row["macro_f1"] == pytest.approx(0.05)
        assert (row["balanced_accuracy"], row["accuracy"]) == (0.0, 0.0)
        assert row["per_class"]["AD"]["recall"] == pytest.approx(-0.20)
        assert row["per_class"]["HP"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    back = compare_runs(db, "b", "a")
    assert back["metrics"]["baseline"]["macro_f1"] == pytest.approx(-0.05)
    assert back["images"]["only_in_a"] == ["s3"]
    # segmentation runs: Dice and its companions, and a run of the other task is refused
    seg = {m: {"mean": v} for m, v in (("dice", 0.80), ("iou", 0.70), ("precision", 0.9),
                                       ("recall", 0.75))}
    seg_b = {**seg, "dice": {"mean": 0.83}, "recall": {"mean": 0.70}}
    for run_id, summary in (("sa", seg), ("sb", seg_b)):
        folder = tmp_path / run_id
        folder.mkdir()
        save_run(db, workspace, run_id, folder, "retrain", {"dataset": "demo"},
                 {"task": "segmentation", "arms": {"real": {"summary": summary}}}, {})
    metrics = compare_runs(db, "sa", "sb")["metrics"]["real"]
    assert metrics["dice"] == pytest.approx(0.03) and metrics["recall"] == pytest.approx(-0.05)
    assert (metrics["iou"], metrics["precision"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="answer different tasks"):
        compare_runs(db, "a", "sa")
    db.dispose()


# --- the selection policy's arithmetic -----------------------------------------------------

def test_quotas_for_balance_a_target_mix_and_a_cap_worked_by_hand():
    """Real AD 10, SSA 3, HP 5. Balance: top every class up to 10 (SSA 7, HP 5), at most what
    is available (HP 2). Mix 50/25/25: the real counts need a total of max(10/0.5, 3/0.25,
    5/0.25) = 20, so SSA needs 2 more, AD and HP none. No mix: every available image. A cap of
    0.5 synthetic per real image (9 of 18) on 6/4/2 available: shares 4.5/3/1.5 floored to
    4/3/1, the one left over to the largest remainder, the first of the tie (AD)."""
    from polyp_core.experiment.policy import _quotas

    classes = ("AD", "SSA", "HP")
    real = {"AD": 10, "SSA": 3, "HP": 5}
    balance = SelectionPolicy(target_mix="balance")
    assert _quotas(real, {"AD": 4, "SSA": 10, "HP": 2}, balance, classes) == \
        {"AD": 0, "SSA": 7, "HP": 2}
    mix = SelectionPolicy(target_mix={"AD": 0.5, "SSA": 0.25, "HP": 0.25})
    assert _quotas(real, {"AD": 9, "SSA": 9, "HP": 9}, mix, classes) == {"AD": 0, "SSA": 2, "HP": 0}
    only_ad = SelectionPolicy(target_mix={"AD": 1.0, "SSA": 0.0, "HP": 0.0})
    assert _quotas(real, {"AD": 9, "SSA": 9, "HP": 9}, only_ad, classes) == \
        {"AD": 0, "SSA": 0, "HP": 0}
    assert _quotas(real, {"AD": 6, "SSA": 4}, SelectionPolicy(), classes) == \
        {"AD": 6, "SSA": 4, "HP": 0}
    capped = SelectionPolicy(max_ratio=0.5)
    assert _quotas(real, {"AD": 6, "SSA": 4, "HP": 2}, capped, classes) == \
        {"AD": 5, "SSA": 3, "HP": 1}
    assert _quotas(real, {"AD": 2, "SSA": 1, "HP": 0}, capped, classes) == \
        {"AD": 2, "SSA": 1, "HP": 0}  # under the cap: untouched


def test_quotas_when_a_class_is_missing_from_the_counts():
    """A class with no real image (absent from the counts) needs the whole top-up; a class
    absent from the mix gets nothing; a class absent from what is available gets nothing; with
    no real image at all a mix asks for nothing. A cap that cuts 12/4 to 7 of 16: exact shares
    5.25 and 1.75 floored to 5 and 1, the one left goes to the larger remainder (HP's 0.75),
    not to the larger class."""
    from polyp_core.experiment.policy import _quotas

    classes = ("AD", "SSA", "HP")
    balance = SelectionPolicy(target_mix="balance")
    assert _quotas({"AD": 4, "SSA": 1}, {"AD": 9, "SSA": 9, "HP": 9}, balance, classes) == \
        {"AD": 0, "SSA": 3, "HP": 4}
    assert _quotas({"AD": 4, "SSA": 1}, {"AD": 9, "SSA": 9}, balance, classes) == \
        {"AD": 0, "SSA": 3, "HP": 0}
    halves = SelectionPolicy(target_mix={"AD": 0.5, "HP": 0.5})  # SSA not in the mix
    # total max(4/0.5, 0/0.5) = 8: AD 4 - 4 = 0, HP 4 - 0 = 4, SSA 0
    assert _quotas({"AD": 4, "SSA": 2}, {"AD": 9, "SSA": 9, "HP": 9}, halves, classes) == \
        {"AD": 0, "SSA": 0, "HP": 4}
    assert _quotas({}, {"AD": 9, "SSA": 9, "HP": 9}, SelectionPolicy(target_mix={"AD": 1.0}),
                   classes) == {"AD": 0, "SSA": 0, "HP": 0}
    capped = SelectionPolicy(max_ratio=0.5)  # 7 of 14 real images
    assert _quotas({"AD": 10, "HP": 4}, {"AD": 12, "HP": 4}, capped, classes) == \
        {"AD": 5, "SSA": 0, "HP": 2}


def test_the_mask_file_of_a_pooled_image():
    """An image stored with a mask names ``masks/<sha>.png`` beside it; without a provenance,
    or with one that names no mask, it has none."""
    from types import SimpleNamespace

    from polyp_core.experiment.policy import _mask_path

    def image(extra, provenance=True):
        return SimpleNamespace(path="/pool/synthetic/abc.png",
                               provenance=SimpleNamespace(extra=extra) if provenance else None)

    assert _mask_path(image({"mask_sha256": "f00"})) == "/pool/synthetic/masks/f00.png"
    assert _mask_path(image({"other": 1})) is None
    assert _mask_path(image(None)) is None
    assert _mask_path(image({"mask_sha256": "f00"}, provenance=False)) is None


def test_mix_parsing_and_the_ratings_fingerprint():
    import hashlib
    import json

    from polyp_core.experiment.policy import parse_mix, ratings_fingerprint

    assert parse_mix("AD=0.4, SSA=0.3,HP=0.3") == {"AD": 0.4, "SSA": 0.3, "HP": 0.3}
    assert parse_mix(" balance ") == "balance" and parse_mix("") is None and parse_mix(None) is None
    with pytest.raises(ValueError, match="^target mix part 'SSA' is not CLASS=share"):
        parse_mix("AD=0.5,SSA")
    with pytest.raises(ValueError, match="^target mix part 'AD=0.4=0.6' is not CLASS=share"):
        parse_mix("AD=0.4=0.6")  # split at the first "=", not the last
    rows = [["b", "r1", "good"], ["a", "r2", "poor"]]
    assert ratings_fingerprint(rows) == hashlib.sha256(
        json.dumps(rows, sort_keys=True).encode()).hexdigest()
    assert ratings_fingerprint(rows) != ratings_fingerprint(rows[::-1])  # order is part of it


def test_a_policy_checks_itself_against_the_scheme_and_round_trips():
    classes = ("AD", "SSA", "HP")
    with pytest.raises(ValueError, match=r"classes \['REST'\] are not in the scheme"):
        SelectionPolicy(classes=("REST",)).validate(classes)
    with pytest.raises(ValueError, match="target_mix 'even': give 'balance' or class shares"):
        SelectionPolicy(target_mix="even").validate(classes)
    with pytest.raises(ValueError, match=r"target_mix names \['REST'\]"):
        SelectionPolicy(target_mix={"REST": 1.0}).validate(classes)
    with pytest.raises(ValueError, match=r"must be non-negative and sum to 1; got \[0.5, 0.6\]"):
        SelectionPolicy(target_mix={"AD": 0.5, "HP": 0.6}).validate(classes)
    SelectionPolicy(target_mix={"AD": 0.5, "HP": 0.5 + 1e-7}).validate(classes)  # rounding
    SelectionPolicy(target_mix="balance", classes=("AD",)).validate(classes)
    SelectionPolicy(target_mix={"AD": 1.0, "HP": 0.0}).validate(classes)  # a zero share is fine
    assert SelectionPolicy(target_mix="balance").to_json()["target_mix"] == "balance"
    mixed = SelectionPolicy(target_mix={"AD": 1.0})
    written = mixed.to_json()
    written["target_mix"]["AD"] = 0.0  # the JSON is a copy: the policy stays as it was
    assert mixed.target_mix == {"AD": 1.0}
    policy = SelectionPolicy(generators=("g",), classes=("AD",), studies=("s",),
                             exclude_memorised=("m",), target_mix={"AD": 1.0}, max_ratio=2.0,
                             min_mask_quality="good", min_gate_iou=0.7)
    data = policy.to_json()
    assert data["target_mix"] == {"AD": 1.0} and data["generators"] == ("g",)
    back = SelectionPolicy.from_json(json.loads(json.dumps(data)))
    assert back == policy and isinstance(back.exclude_memorised, tuple)


def test_mask_quality_at_its_edges():
    """Three reviewers. A and B share images 0-3 and answer only poor and good, agreeing on two:
    weighted kappa 0 (what chance gives). C rates image 4,
    which no one else rated, and image 0 with B (one shared image: no pair). A's image 5 has no
    class: its row is '?'. Two reviewers who give one answer throughout have no kappa."""
    from sklearn.metrics import cohen_kappa_score

    from polyp_core.review.reader import ac1_of
    from polyp_core.review.stats import mask_quality

    def r(reviewer, image, answer, label="AD"):
        return {"reviewer": reviewer, "image": f"i{image}", "truth": "synthetic", "source": "gen",
                "label": label, "verdict": "synthetic", "quality": "good",
                "mask_quality": answer, "kind": "main"}

    records = [r("A", 0, "poor"), r("B", 0, "poor"), r("A", 1, "good"), r("B", 1, "poor"),
               r("A", 2, "good"), r("B", 2, "good"), r("A", 3, "poor"), r("B", 3, "good"),
               r("C", 4, "good"), r("C", 0, "good"), r("A", 5, "moderate", label=None)]
    result = mask_quality(records)
    pairs = {(p["a"], p["b"]): p for p in result["weighted_kappa"]}
    assert set(pairs) == {("A", "B")}  # A-C and B-C share one image: no pair
    a, b = [0, 2, 2, 0], [0, 0, 2, 2]
    assert pairs[("A", "B")]["n"] == 4
    assert pairs[("A", "B")]["weighted_kappa"] == pytest.approx(
        cohen_kappa_score(a, b, weights="linear", labels=[0, 1, 2]))
    assert pairs[("A", "B")]["weighted_kappa"] == pytest.approx(0.0)
    assert result["ac1"] == ac1_of(records, "mask_quality", ("good", "moderate", "poor"))
    rows = {(row["source"], row["class"]): row for row in result["by_source"]}
    assert set(rows) == {("gen", "all"), ("gen", "AD"), ("gen", "?")}
    assert rows[("gen", "all")]["ratings"] == 11 and rows[("gen", "?")]["ratings"] == 1
    assert rows[("gen", "all")]["poor_share"] == pytest.approx(4 / 11)
    assert rows[("gen", "all")]["good_share"] == pytest.approx(6 / 11)
    assert result["n"] == 11
    same = [r("A", k, "good") for k in range(3)] + [r("B", k, "good") for k in range(3)]
    assert math.isnan(mask_quality(same)["weighted_kappa"][0]["weighted_kappa"])
