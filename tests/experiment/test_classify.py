"""Classifier retraining: metrics, selection policies, training, experiments, jobs, CLI."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PASSWORD
from polyp_core.experiment import ExperimentConfig, SelectionPolicy, compare_runs, parse_mix, repeat_experiment, run_experiment, select_synthetic
from polyp_core.training import TrainConfig
from polyp_core.data.tensors import ImageRef, augment, load_tensors, normalise
from polyp_core.classify.metrics import classification_metrics, compare_arms
from polyp_core.stats.seeds import spread
from polyp_core.classify.model import load_classifier
from polyp_core.classify.train import epoch_order, evaluate, train_classifier
from polyp_core.stats.uncertainty import regression_warnings
from polyp_core.data.cache import PixelCache
from polyp_core.jobs import JobRunner, job_status, recover_interrupted
from polyp_core.progress import CancelToken
from polyp_core.review import desk
from polyp_core.review.errors import NotFound
from polyp_core.review.accounts import sign_in
from polyp_core.review.studies import StudySpec, SyntheticPool, create_study
from polyp_core.runs import load_run, new_run_dir, save_run
from review_db import queries

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
TINY = TrainConfig(image_size=32, epochs=2, batch_size=16, patience=2, hidden=32)


# metrics -------------------------------------------------------------------------------------

def test_metrics_agree_with_sklearn_and_intervals_are_t_intervals():
    from sklearn.metrics import classification_report

    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0]
    y_pred = [0, 1, 0, 1, 2, 2, 2, 0, 2, 0]
    m = classification_metrics(y_true, y_pred, ["AD", "SSA", "HP"])
    ref = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    assert m["per_class"]["SSA"]["recall"] == pytest.approx(ref["1"]["recall"])
    assert m["macro_f1"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["balanced_accuracy"] == pytest.approx(np.mean([3 / 4, 1 / 2, 3 / 4]))
    assert m["confusion"] == [[3, 1, 0], [0, 1, 1], [1, 0, 3]]
    s = spread([0.5, 0.6, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1)
    assert s["ci"][1] - 0.6 == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    # a proportion's interval stays inside 0..1
    assert spread([0.9, 1.0, 1.0], bounds=(0.0, 1.0))["ci"][1] == 1.0
    assert spread([0.9, 1.0, 1.0])["ci"][1] > 1.0


def _seed_metrics(recalls, classes=("AD", "SSA", "HP")):
    out = []
    for r in recalls:
        per = {c: {"precision": 0.5, "recall": r[i], "f1": r[i], "support": 10}
               for i, c in enumerate(classes)}
        out.append({"classes": list(classes), "per_class": per, "macro_f1": float(np.mean(r)),
                    "balanced_accuracy": float(np.mean(r)), "accuracy": 0.5,
                    "confusion": np.eye(3, dtype=int).tolist()})
    return out


def test_an_ssa_collapse_is_a_regression_beyond_noise():
    baseline = _seed_metrics([(0.8, 0.50, 0.6), (0.78, 0.48, 0.62), (0.82, 0.49, 0.61)])
    augmented = _seed_metrics([(0.9, 0.0, 0.6), (0.91, 0.02, 0.63), (0.92, 0.01, 0.6)])
    deltas, warnings = compare_arms(augmented, baseline)
    assert deltas["per_class"]["AD"]["recall"]["mean"] > 0
    ssa = [w for w in warnings if w["class"] == "SSA"]
    assert {w["metric"] for w in ssa} == {"recall", "f1"}
    assert all(w["beyond_noise"] for w in ssa)
    assert "SSA recall fell from 0.490 to 0.010" in ssa[0]["text"]
    # HP moved by noise: a small fall is warned about but not called beyond noise
    hp = [w for w in warnings if w["class"] == "HP"]
    assert all(not w["beyond_noise"] for w in hp)
    assert not [w for w in warnings if w["class"] == "AD"]


# selection policies --------------------------------------------------------------------------

def _rate_everything(env, study: str, rule) -> None:
    """Every reviewer rates every assignment of ``study`` as ``rule(sha, reviewer index)``
    says (``None``: leave it unrated)."""
    for index, account in enumerate(env.reviewers):
        person = sign_in(env.db, account.name, PASSWORD)
        try:
            items = desk.queue(env.db, person, study)
        except NotFound:  # this reviewer has no assignments in the study
            continue
        for item in items:
            with env.db.session() as session:
                sha = queries.assignment_by_token(session, item.token).image.sha256
            answer = rule(sha, index)
            if answer is not None:
                desk.rate(env.db, person, item.token, *answer)


def _synthetic(env, generator=None):
    with env.db.session() as session:
        return {i.sha256: i.label for i in queries.synthetic_images(session, generator)}


def _study(env, name="s1", generator=None, n=None):
    """A study of ``generator``'s images (all, or ``n``) for the three reviewers; returns
    every synthetic image of the pool ``{sha: class}``."""
    pool = _synthetic(env, generator)
    admin = sign_in(env.db, "admin", PASSWORD)
    create_study(env.db, env.workspace, admin, StudySpec(
        name, (SyntheticPool(n or len(pool), generator=generator),),
        tuple(r.name for r in env.reviewers), overlap=3))
    return pool


def test_policy_rules_ratings_memorisation_mix_and_cap(review_env):
    env = review_env
    rated_pool = _study(env, "s1", generator="gen-a")
    pool = _synthetic(env)
    shas = sorted(rated_pool)
    rank = {sha: i for i, sha in enumerate(shas)}
    # image of rank i: "real" from (i % 4) of its 3 reviewers, "good" from (i % 3) of them
    qualities = ("good", "moderate", "poor")
    _rate_everything(env, "s1", lambda sha, r: (
        "real" if r < rank[sha] % 4 else "synthetic",
        "good" if r < rank[sha] % 3 else qualities[1 + (rank[sha] % 2)]))
    with env.db.session() as session:
        rows = queries.synthetic_ratings(session)
    rated = {r[0] for r in rows}
    n_a = len(rated)
    assert n_a and len(rows) == 3 * n_a
    real_counts = {"AD": 28, "SSA": 7, "HP": 7}

    everything = select_synthetic(env.db, SelectionPolicy(), "three_class", real_counts)
    assert len(everything.images) == len(pool)
    assert all(ref.kind == "synthetic" for ref in everything.images)

    good2 = select_synthetic(env.db, SelectionPolicy(min_quality="good", min_reviewers=2,
                                                     unrated="exclude"), "three_class", real_counts)
    expected = {s for s in rated if rank[s] % 3 >= 2}
    assert {r.sha256 for r in good2.images} == expected
    assert good2.counts["dropped"]["unrated"] == len(pool) - n_a

    majority = select_synthetic(env.db, SelectionPolicy(verdict="majority_real", unrated="exclude"),
                                "three_class", real_counts)
    assert {r.sha256 for r in majority.images} == {s for s in rated if rank[s] % 4 >= 2}
    all_real = select_synthetic(env.db, SelectionPolicy(verdict="all_real"), "three_class", real_counts)
    assert {r.sha256 for r in all_real.images} == \
        {s for s in rated if rank[s] % 4 == 3} | (set(pool) - rated)
    not_syn = select_synthetic(env.db, SelectionPolicy(verdict="not_majority_synthetic",
                                                       unrated="exclude"), "three_class", real_counts)
    assert {r.sha256 for r in not_syn.images} == {s for s in rated if rank[s] % 4 >= 2}

    # memorisation flags of a stored diagnostics run
    flagged = sorted(pool)[:3]
    run_id, folder = new_run_dir(env.workspace, "diagnose")
    save_run(env.db, env.workspace, run_id, folder, "diagnose", {}, {"memorisation": {"pairs": [
        {"synthetic_id": s, "real_id": "x", "similarity": 0.99, "synthetic_class": "AD"}
        for s in flagged]}}, {})
    memo = select_synthetic(env.db, SelectionPolicy(exclude_memorised=(run_id,)), "three_class",
                            real_counts)
    assert not set(flagged) & {r.sha256 for r in memo.images}
    assert memo.counts["dropped"]["memorised"] == 3
    with pytest.raises(ValueError, match="no diagnostics run 'nope'"):
        select_synthetic(env.db, SelectionPolicy(exclude_memorised=("nope",)), "three_class", real_counts)

    # class mix: top up to the majority, then a 40/30/30 mix, then a ratio cap
    available = {c: sum(1 for label in pool.values() if label == c) for c in ("AD", "SSA", "HP")}
    balance = select_synthetic(env.db, SelectionPolicy(target_mix="balance"), "three_class", real_counts)
    assert balance.counts["selected"] == {"AD": 0, "SSA": min(21, available["SSA"]),
                                          "HP": min(21, available["HP"])}
    mix = select_synthetic(env.db, SelectionPolicy(target_mix=parse_mix("AD=0.4,SSA=0.3,HP=0.3")),
                           "three_class", {"AD": 8, "SSA": 2, "HP": 2})
    assert mix.counts["selected"] == {"AD": 0, "SSA": min(4, available["SSA"]),
                                      "HP": min(4, available["HP"])}
    capped = select_synthetic(env.db, SelectionPolicy(max_ratio=0.25), "three_class", real_counts)
    assert len(capped.images) == int(0.25 * 42)
    again = select_synthetic(env.db, SelectionPolicy(max_ratio=0.25), "three_class", real_counts)
    assert [r.sha256 for r in again.images] == [r.sha256 for r in capped.images]

    # the ratings hash is stable, and moves with a new rating
    assert everything.ratings_hash == again.ratings_hash
    _study(env, "s2", generator="gen-b", n=2)
    _rate_everything(env, "s2", lambda sha, r: ("real", "good") if r == 0 else None)
    after = select_synthetic(env.db, SelectionPolicy(), "three_class", real_counts)
    assert after.ratings_hash != everything.ratings_hash
    only_s1 = select_synthetic(env.db, SelectionPolicy(studies=("s1",)), "three_class", real_counts)
    assert only_s1.ratings_hash == everything.ratings_hash

    # AD-vs-Rest maps SSA and HP images to REST
    rest = select_synthetic(env.db, SelectionPolicy(), "ad_vs_rest", {"AD": 28, "REST": 14})
    assert {r.label for r in rest.images} == {"AD", "REST"}


@pytest.mark.parametrize("fields, message", [
    ({"min_quality": "great"}, "min_quality: 'great' is not one of: moderate, good"),
    ({"verdict": "maybe"}, "verdict: 'maybe' is not one of"),
    ({"max_ratio": float("nan")}, "max_ratio: nan is not a finite number"),
    ({"seed": 2**70}, "seed: 1180591620717411303424 is out of range; a seed is 0 to 4294967295"),
    ({"target_mix": {"AD": 0.5, "XX": 0.5}}, r"target_mix names \['XX'\]"),
    ({"target_mix": {"AD": 0.5, "SSA": 0.2}}, "sum to 1"),
    ({"classes": ("REST",)}, r"classes \['REST'\] are not in the scheme"),
])
def test_policy_errors_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        SelectionPolicy(**fields).validate(("AD", "SSA", "HP"))


def test_parse_mix_errors():
    assert parse_mix("balance") == "balance"
    with pytest.raises(ValueError, match="'SSA:0.3' is not CLASS=share"):
        parse_mix("AD=0.7,SSA:0.3")


# data, normalisation and training ------------------------------------------------------------

def test_augment_is_seeded_and_training_only_normalisation_is_shared():
    batch = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    a = augment(batch, torch.Generator().manual_seed(1))
    b = augment(batch, torch.Generator().manual_seed(1))
    c = augment(batch, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.shape == (6, 3, 32, 32)
    # uint8 and 0..1 inputs of the same pixels normalise identically
    assert torch.allclose(normalise(batch, (0.5,) * 3, (0.5,) * 3),
                          normalise(batch.float() / 255, (0.5,) * 3, (0.5,) * 3))
    labels = torch.tensor([0] * 30 + [1] * 5 + [2] * 5)
    drawn = epoch_order(labels, 3, "sampler", torch.Generator().manual_seed(0))
    share = torch.bincount(labels[drawn], minlength=3).float() / len(drawn)
    assert len(drawn) == 40 and share.min() > 0.15  # minority classes drawn about a third each


def _phantom_tensors(env, size=32):
    manifest = env.workspace.load_manifest("phantom")
    pixels = PixelCache(env.workspace.pixel_cache_dir)
    classes = ("AD", "SSA", "HP")
    return {s: load_tensors([ImageRef(i.sha256, i.image, i.label) for i in manifest.split_items(s)],
                            classes, size, pixels) for s in ("train", "valid", "test")}, classes


@SQLITE_ONLY
def test_training_is_deterministic_on_the_cpu_and_cancellable(review_env):
    data, classes = _phantom_tensors(review_env)
    cpu = torch.device("cpu")
    one = train_classifier(data["train"], data["valid"], classes, TINY, seed=3, device=cpu)
    two = train_classifier(data["train"], data["valid"], classes, TINY, seed=3, device=cpu)
    other = train_classifier(data["train"], data["valid"], classes, TINY, seed=4, device=cpu)
    assert one.history == two.history
    for key, value in one.model.state_dict().items():
        assert torch.equal(value, two.model.state_dict()[key]), key
    assert one.history != other.history
    assert evaluate(one.model, one.spec, data["test"], cpu) == evaluate(two.model, two.spec, data["test"], cpu)
    token = CancelToken()
    token.cancel()
    from polyp_core.progress import Cancelled
    with pytest.raises(Cancelled):
        train_classifier(data["train"], data["valid"], classes, TINY, seed=3, device=cpu, cancel=token)
    with pytest.raises(ValueError, match="imbalance: 'smote' is not one of"):
        train_classifier(data["train"], data["valid"], classes,
                         TrainConfig(imbalance="smote"), seed=0)


@SQLITE_ONLY
def test_a_frozen_backbone_is_embedded_once_and_stays_as_it_was(review_env):
    from polyp_core.classify.model import build_classifier

    data, classes = _phantom_tensors(review_env)
    cpu = torch.device("cpu")
    config = TrainConfig(image_size=32, epochs=3, batch_size=16, hidden=32,
                                   freeze_backbone=True, augment=False, lr=3e-3)
    trained = train_classifier(data["train"], data["valid"], classes, config, seed=0, device=cpu)
    fresh, _ = build_classifier("efficientnet_lite0", classes, 32, hidden=32)
    for key, value in fresh.backbone.state_dict().items():
        assert torch.equal(value, trained.model.backbone.state_dict()[key]), key
    # the macro-F1 measured on cached features is the full model's on the images
    assert evaluate(trained.model, trained.spec, data["valid"], cpu)["macro_f1"] == \
        pytest.approx(trained.best_valid_macro_f1)
    # and the head on cached features predicts the test images as the whole model does
    from polyp_core.classify.train import predict, predict_run
    cache: dict = {}
    via_features = predict_run(trained, config, data["test"], cpu, cache)
    assert len(cache[("efficientnet_lite0", 32)]) == len(data["test"])
    np.testing.assert_allclose(via_features, predict(trained.model, trained.spec, data["test"], cpu),
                               atol=1e-5)


@pytest.fixture
def embedded(monkeypatch):
    """How many images each call of ``backbone_features`` embedded, in order."""
    from polyp_core.classify import train as train_module

    counts = []
    real = train_module.backbone_features
    monkeypatch.setattr(train_module, "backbone_features",
                        lambda model, spec, pixels, device, **kw:
                        counts.append(len(pixels)) or real(model, spec, pixels, device, **kw))
    return counts


@SQLITE_ONLY
def test_frozen_backbone_augmentation_embeds_a_fixed_number_of_views_once(review_env, embedded):
    """With the backbone frozen, augmentation embeds the original and AUGMENTED_VIEWS
    augmented views of every training image once, whatever the number of epochs (it used to
    push every augmented batch through the backbone every epoch: 13x slower on a real set)."""
    from polyp_core.classify import train as train_module

    data, classes = _phantom_tensors(review_env)
    config = TrainConfig(image_size=32, epochs=4, batch_size=16, hidden=32,
                                   freeze_backbone=True, augment=True, lr=3e-3)
    one = train_classifier(data["train"], data["valid"], classes, config, seed=5,
                           device=torch.device("cpu"))
    n_train, n_valid = len(data["train"]), len(data["valid"])
    assert sum(embedded) == (1 + train_module.AUGMENTED_VIEWS) * n_train + n_valid
    two = train_classifier(data["train"], data["valid"], classes, config, seed=5,
                           device=torch.device("cpu"))
    assert one.history == two.history  # seeded: the same views and the same draws


@SQLITE_ONLY
def test_seeds_share_the_frozen_pretrained_features_of_one_run(review_env, embedded):
    """Within a run the frozen pretrained backbone embeds each image set once for every seed
    (and for the linear probe); a randomly initialised backbone differs by seed: never shared."""
    data, classes = _phantom_tensors(review_env)
    cache: dict = {}
    config = TrainConfig(image_size=32, epochs=1, batch_size=16, hidden=32,
                                   freeze_backbone=True, augment=False)
    runs = [train_classifier(data["train"], data["valid"], classes, config, seed=s,
                             device=torch.device("cpu"), feature_cache=cache) for s in (0, 1)]
    assert sum(embedded) == len(data["train"]) + len(data["valid"])  # once, not per seed
    alone = train_classifier(data["train"], data["valid"], classes, config, seed=1,
                             device=torch.device("cpu"))
    assert alone.history == runs[1].history  # sharing changes nothing but the time
    embedded.clear()
    random_backbone = replace(config, pretrained=False)
    for s in (0, 1):
        train_classifier(data["train"], data["valid"], classes, random_backbone, seed=s,
                         device=torch.device("cpu"), feature_cache=cache)
    assert sum(embedded) == 2 * (len(data["train"]) + len(data["valid"]))


def test_every_parameter_gets_a_gradient_and_bad_specs_are_refused():
    from polyp_core.classify.model import build_classifier

    model, spec = build_classifier("efficientnet_lite0", ("AD", "REST"), 32, hidden=8, pretrained=False)
    x = normalise(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), spec.mean, spec.std)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="multiple of 32"):
        build_classifier("efficientnet_lite0", ("AD", "REST"), 100)
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'"):
        build_classifier("resnet9000", ("AD", "REST"), 128)


# experiments ---------------------------------------------------------------------------------

@SQLITE_ONLY
def test_experiment_baseline_vs_augmented_is_stored_and_repeatable(review_env):
    env = review_env
    pool = _study(env, "s1", generator="gen-a")
    _rate_everything(env, "s1", lambda sha, r: ("real", "good") if sha < "8" else ("synthetic", "poor"))
    policy = SelectionPolicy(min_quality="good", min_reviewers=2, unrated="exclude")
    config = ExperimentConfig(dataset="phantom", train=TINY, seeds=(0, 1), policy=policy, name="tiny",
                              folds=0)
    # the small phantom's test split holds one or two lesions of SSA and HP: refused as it is
    with pytest.raises(ValueError, match=r"too few independent groups .*`allow_small_test`"):
        run_experiment(env.db, env.workspace, config, device=torch.device("cpu"))
    config = replace(config, allow_small_test=True, linear_probe=True)
    messages = []
    result = run_experiment(env.db, env.workspace, config,
                            progress=lambda d, t, m: messages.append((d, t, m)),
                            device=torch.device("cpu"))
    res = result.results
    stored = load_run(env.db, result.run_id)
    assert stored["results"]["arms"].keys() == {"baseline", "augmented", "linear probe",
                                                 "linear probe + synthetic"}
    chosen = {i["sha256"] for i in stored["images"]["synthetic"]}
    assert chosen and chosen == {s for s in pool if s < "8"}
    # validation and test images are real, and none of them is synthetic
    real = {i["sha256"] for s in ("train", "valid", "test") for i in stored["images"][s]}
    assert not chosen & real
    assert all(i["kind"] == "real" for s in ("valid", "test") for i in stored["images"][s])
    for arm in ("baseline", "augmented"):
        seeds = res["arms"][arm]["per_seed"]
        assert [m["seed"] for m in seeds] == [0, 1]
        assert all(sum(map(sum, m["confusion"])) == len(stored["images"]["test"]) for m in seeds)
        summary = res["arms"][arm]["summary"]
        assert summary["macro_f1"]["n"] == 2
        assert summary["macro_f1"]["ci"][0] <= summary["macro_f1"]["mean"] <= summary["macro_f1"]["ci"][1]
    n_train = len(stored["images"]["train"])
    assert res["arms"]["baseline"]["per_seed"][0]["n_train"] == n_train
    assert res["arms"]["augmented"]["per_seed"][0]["n_train"] == n_train + len(chosen)
    assert set(res["delta"]["per_class"]) == {"AD", "SSA", "HP"}
    assert isinstance(res["warnings"], list)
    for w in res["warnings"]:  # each warning, if any, rests on an interval below zero
        assert w["ci"][1] < 0 and "excluding 0" in w["text"]
    assert res["warnings"] == regression_warnings(res["delta_cluster"], ("AD", "SSA", "HP"))
    # uncertainty over the test lesions (with the seeds), per arm and paired
    design = res["test_groups"]
    assert design["grouped"] and len(design["of_image"]) == len(stored["images"]["test"])
    assert any("`allow_small_test`" in w for w in design["warnings"])
    assert any("smallest macro-F1 change" in w for w in design["warnings"])
    for arm in ("baseline", "augmented"):
        ci = res["uncertainty"][arm]["macro_f1"]
        assert ci["low"] <= ci["estimate"] <= ci["high"]
        assert res["uncertainty"][arm]["groups"] == len(set(design["of_image"]))
    assert "p" in res["delta_cluster"]["macro_f1"]
    # the linear probe beside both arms: one deterministic fit each, on the same test images
    for name in ("linear probe", "linear probe + synthetic"):
        (probe,) = res["arms"][name]["per_seed"]
        assert sum(map(sum, probe["confusion"])) == len(stored["images"]["test"])
        assert "C =" in probe["probe"]["how"] and name in res["uncertainty"]
    assert res["arms"]["linear probe + synthetic"]["per_seed"][0]["n_train"] == n_train + len(chosen)
    # every arm against its real-data arm (the report's forest plot): the probe against the probe
    assert {a: d["against"] for a, d in res["versus_real"].items()} == {
        "augmented": "baseline", "linear probe + synthetic": "linear probe"}
    assert res["versus_real"]["augmented"]["macro_f1"] == res["delta_cluster"]["macro_f1"]
    probe_delta = res["versus_real"]["linear probe + synthetic"]["macro_f1"]["estimate"]
    assert probe_delta == pytest.approx(res["arms"]["linear probe + synthetic"]["per_seed"][0][
        "macro_f1"] - res["arms"]["linear probe"]["per_seed"][0]["macro_f1"])
    # the run's self-contained report: methods written from the config, design, results
    report = (result.folder / "report.html").read_text()
    for words in ("seeds 0, 1", "cluster bootstrap", "test units", "Design: groups / images",
                  "linear probe", "Confusion matrices", "augmented arm added"):
        assert words in report, words
    assert "<script" not in report and "http" not in report
    assert res["delta_cluster"]["macro_f1"]["estimate"] == pytest.approx(
        res["delta"]["macro_f1"]["mean"])
    assert res["normalisation"]["arms"] == ["baseline", "augmented"]
    assert messages[-1][2].startswith("stored run") and any("valid macro-F1" in m for *_, m in messages)
    # the saved best checkpoint of each arm predicts as it did
    model, spec = load_classifier(result.folder / "checkpoints" / "augmented")
    best_seed = json.loads((result.folder / "checkpoints" / "augmented" / "config.json").read_text())["seed"]
    data, _ = _phantom_tensors(env)
    again = evaluate(model, spec, data["test"], torch.device("cpu"))
    recorded = next(m for m in res["arms"]["augmented"]["per_seed"] if m["seed"] == best_seed)
    assert again["confusion"] == recorded["confusion"]

    # new ratings arrive; the same run repeated picks other images, and the diff says why
    _rate_everything(env, "s1", lambda sha, r: ("real", "good"))
    repeated = repeat_experiment(env.db, env.workspace, result.run_id, device=torch.device("cpu"))
    diff = compare_runs(env.db, result.run_id, repeated.run_id)
    assert diff["ratings_changed"] is True and diff["config"] == {}
    assert set(diff["images"]["only_in_b"]) == set(pool) - chosen and not diff["images"]["only_in_a"]
    assert set(diff["metrics"]) == {"baseline", "augmented", "linear probe",
                                    "linear probe + synthetic"}
    # same split, same seeds: the baseline arm and the probe are reproduced exactly
    assert diff["metrics"]["baseline"]["macro_f1"] == 0
    assert diff["metrics"]["linear probe"]["macro_f1"] == 0


@SQLITE_ONLY
def test_experiment_refuses_generators_that_saw_held_out_images(review_env):
    env = review_env
    manifest = env.workspace.load_manifest("phantom")
    test_item = manifest.split_items("test")[0]
    folder = env.workspace.models_dir / "gen-a"
    (folder / "config.json").write_text(json.dumps({"trained_on": {"image_sha256": [
        test_item.sha256]}}))
    config = ExperimentConfig(dataset="phantom", train=TINY, seeds=(0,), folds=0)
    # the refusal names the image: data set, id and split
    with pytest.raises(ValueError, match=re.escape(
            f"gen-a learned from 1 validation/test images (phantom:{test_item.id} (test))")):
        run_experiment(env.db, env.workspace, config, device=torch.device("cpu"))
    # a generator whose training record is gone cannot be shown honest
    shutil.rmtree(env.workspace.models_dir / "gen-b")
    with pytest.raises(ValueError, match="'gen-b' has no training record"):
        run_experiment(env.db, env.workspace, ExperimentConfig(
            dataset="phantom", train=TINY, seeds=(0,), folds=0,
            policy=SelectionPolicy(generators=("gen-b",))))
    # restricted to the honest generator it runs
    with pytest.raises(ValueError, match="chose no synthetic image.*`baseline_only`"):
        run_experiment(env.db, env.workspace, ExperimentConfig(
            dataset="phantom", train=TINY, seeds=(0,), folds=0,
            policy=SelectionPolicy(generators=("gen-x",))))
    with env.db.session() as session:
        assert not queries.list_runs(session, "retrain")


# jobs ----------------------------------------------------------------------------------------

def test_jobs_progress_finish_fail_cancel(db):
    runner = JobRunner(db)

    def good(progress, cancel):
        for i in range(3):
            progress(i + 1, 3, f"step {i + 1}")
        return "result-1"

    def bad(progress, cancel):
        raise ValueError("the data set 'x' has no test images")

    def slow(progress, cancel):
        for i in range(1000):
            cancel.check()
            progress(i, 1000, "working")
            time.sleep(0.01)
        return "never"

    done = runner.wait(runner.submit("retrain", {"a": 1}, good))
    assert (done.status, done.done, done.total, done.message) == ("done", 3, 3, "result-1")
    failed = runner.wait(runner.submit("retrain", {}, bad))
    assert failed.status == "failed" and "has no test images" in failed.error
    job = runner.submit("retrain", {}, slow)
    deadline = time.time() + 30
    while job_status(db, job).status != "running" and time.time() < deadline:
        time.sleep(0.05)
    assert runner.cancel(job)
    assert runner.wait(job, 30).status == "cancelled"


def test_gpu_jobs_run_one_at_a_time(db):
    runner = JobRunner(db, gpu_slots=1)
    active, peak = [0], [0]

    def work(progress, cancel):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        active[0] -= 1
        return None

    jobs = [runner.submit("retrain", {}, work) for _ in range(3)]
    assert all(runner.wait(j, 30).status == "done" for j in jobs)
    assert peak[0] == 1


JOB_SCRIPT = """
import sys, time
from review_db.database import Database
from polyp_core.jobs import run_job
def work(progress, cancel):
    for i in range(10_000):
        progress(i, 10_000, "training")
        time.sleep(0.05)
run_job(Database(sys.argv[1]), "retrain", {"dataset": "phantom"}, work)
"""


def test_a_killed_job_is_marked_interrupted_not_lost(db, db_url, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, str(script), db_url], env=env)
    try:
        deadline = time.time() + 60
        running = []
        while time.time() < deadline and not running:
            time.sleep(0.2)
            with db.session() as session:
                running = [j.id for j in queries.list_jobs(session, statuses=("running",))
                           if j.done > 0]
        assert running, "the job never started"
        # a runner starting while the process lives leaves its job alone
        assert recover_interrupted(db) == []
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    runner = JobRunner(db)  # the studio starting again
    assert runner.interrupted == running
    status = job_status(db, running[0])
    assert status.status == "interrupted" and "start it again" in status.error
    assert status.config["dataset"] == "phantom"


# CLI -----------------------------------------------------------------------------------------

@SQLITE_ONLY
def test_retrain_cli_prints_the_table_and_lists_runs(review_env, capsys):
    from polyp_core.cli import main

    env = review_env
    base = ["--workspace", str(env.workspace.root)]
    args = [*base, "retrain", "--dataset", "phantom", "--size", "32", "--epochs", "1",
            "--seeds", "0", "--batch-size", "16", "--max-ratio", "0.5", "--db", env.db.url]
    # the small phantom's test split: too few lesions of SSA and HP, refused before any job
    assert main(args) == 2
    err = capsys.readouterr().err  # the engine names the request field, the CLI its option
    assert "too few independent groups" in err and "run anyway with --allow-small-test" in err
    with env.db.session() as session:
        assert not queries.list_runs(session, "retrain")
    code = main([*args, "--allow-small-test"])
    out = capsys.readouterr().out
    assert code == 0, out
    # --folds auto (the default) on a set this small: the fixed split, and why
    # (the lesions the generators learned from train in every fold: 7, 2 and 2 are left to test)
    assert "evaluation: the data set's fixed train/valid/test split (auto: fixed split: no K >= " \
           "2 gives every test fold 3 groups of each class (AD: 7, SSA: 2, HP: 2 to test))" in out
    assert "macro-F1" in out and "SSA recall" in out and "augmented − baseline" in out
    assert "cluster bootstrap over" in out and "unit of the test split: group" in out
    assert "report: " in out
    run_id = next(line for line in out.splitlines() if line.startswith("run ")).split()[1]
    assert main([*base, "runs", "--db", env.db.url]) == 0
    assert run_id in capsys.readouterr().out
    assert main([*base, "jobs", "--db", env.db.url]) == 0
    jobs_out = capsys.readouterr().out
    assert "retrain" in jobs_out and " done " in jobs_out
    code = main([*base, "retrain", "--dataset", "phantom", "--size", "32", "--epochs", "1",
                 "--seeds", "0", "--target-mix", "AD=0.9,SSA:0.1", "--db", env.db.url])
    assert code == 2 and "is not CLASS=share" in capsys.readouterr().err
    code = main([*args, "--folds", "1"])
    assert code == 2 and "use 2 or more" in capsys.readouterr().err
    code = main([*args, "--folds", "2.5"])
    assert code == 2 and "--folds: '2.5' is not a number of folds or 'auto'" in \
        capsys.readouterr().err


def test_linear_probe_chooses_its_regularisation_by_grouped_cv():
    """Features of 3 classes in 24 lesions of 5 frames: the probe picks C by inner CV that
    keeps each lesion in one fold, and falls back to C = 1 (saying so) when a class has a
    single lesion."""
    from polyp_core.classify.probe import fit_probe

    rng = np.random.default_rng(0)
    lesion_class = np.repeat([0, 1, 2], 8)
    centres = rng.normal(0, 1, (3, 16)) * 2
    x = np.concatenate([centres[c] + rng.normal(0, 1, (5, 16)) + rng.normal(0, 0.5, 16)
                        for c in lesion_class])
    y = np.repeat(lesion_class, 5)
    groups = np.repeat([f"l{i}" for i in range(24)], 5)
    import sklearn.model_selection as model_selection

    seen_splits, real_cv = [], model_selection.cross_val_score

    def recording(estimator: object, x_: np.ndarray, y_: np.ndarray,
                  groups: np.ndarray | None = None, cv: object = None,
                  **kwargs: object) -> np.ndarray:
        seen_splits.append(list(cv.split(x_, y_, groups)))
        return real_cv(estimator, x_, y_, groups=groups, cv=cv, **kwargs)

    model_selection.cross_val_score = recording
    try:
        fitted, choice = fit_probe(x, y, groups)
    finally:
        model_selection.cross_val_score = real_cv
    assert choice["folds"] == 5 and len(seen_splits) == len(choice["cv_macro_f1"])
    for splits in seen_splits:  # the folds themselves: grouped, every lesion tested once
        assert len(splits) == 5
        tested = [g for _, test in splits for g in set(groups[test])]
        assert sorted(tested) == sorted(set(groups))
        for train, test in splits:
            assert not set(groups[train]) & set(groups[test])
    assert len(choice["cv_macro_f1"]) == 7 and (fitted.predict(x) == y).mean() > 0.9
    _, fallback = fit_probe(x[:15], np.array([0] * 5 + [1] * 5 + [2] * 5),
                            ["a"] * 5 + ["b"] * 5 + ["c"] * 5)
    assert fallback["C"] == 1.0 and "no inner CV" in fallback["how"]
