"""Diagnostics: KID agrees with torchmetrics, FID with its textbook formula, the class-pair
matrix reads the right way, features and projections are cached, copies are found."""


import numpy as np
import pytest
import torch

from polyp_core.diagnostics import projections
from polyp_core.diagnostics.distances import fid, kid, kid_matrix
from polyp_core.diagnostics.memorisation import (diversity, memorisation_report, nearest_real,
                                                 side_by_side)
from polyp_core.diagnostics.sweep import checkpoint_sweep, sweep_figure


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize("n_x, n_y, d, subsets, size", [(300, 250, 64, 7, 100),
                                                         (120, 400, 1280, 5, 120),
                                                         (50, 50, 16, 3, 50),
                                                         (700, 650, 96, 3, 333)])
def test_kid_agrees_with_torchmetrics(n_x, n_y, d, subsets, size):
    """Sizes of 256 and more take the blocked (symmetric) path; smaller ones the plain one."""
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(d)
    x = rng.normal(size=(n_x, d))
    y = rng.normal(0.1, 1.2, size=(n_y, d))
    metric = KernelInceptionDistance(feature=Identity(), subsets=subsets, subset_size=size)
    metric.update(torch.tensor(x), real=True)
    metric.update(torch.tensor(y), real=False)
    torch.manual_seed(11)
    reference_mean, reference_std = (float(v) for v in metric.compute())
    ours = kid(x, y, subsets=subsets, subset_size=size, seed=11)
    assert abs(ours.mean - reference_mean) < 1e-6
    assert abs(ours.std - reference_std) < 1e-6
    assert (ours.subsets, ours.subset_size, ours.n_x, ours.n_y) == (subsets, size, n_x, n_y)


def test_kid_behaviour():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 32)), rng.normal(size=(400, 32))
    same = kid(a, b, subsets=20, subset_size=200)
    shifted = kid(a, b + 0.5, subsets=20, subset_size=200)
    assert abs(same.mean) < 3 * same.std + 1e-3  # unbiased: near zero for one distribution
    assert shifted.mean > 10 * max(same.std, 1e-4)
    assert kid(a[:30], b, subset_size=1000).subset_size == 30  # adapts to the smaller set
    with pytest.raises(ValueError, match="dimensions differ"):
        kid(a, b[:, :5])
    with pytest.raises(ValueError, match="2-D"):
        kid(a[0], b)


def test_fid_matches_the_textbook_formula():
    from scipy import linalg

    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 8))
    b = rng.normal(0.3, 1.5, size=(500, 8)) @ rng.normal(size=(8, 8))
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    result = fid(a, b)
    assert result.value == pytest.approx(reference, rel=1e-6)
    assert result.n == 500 and result.note == ""
    assert fid(a, a).value == pytest.approx(0, abs=1e-6)
    small = fid(a[:5], b[:300])
    assert small.n == 5 and "singular" in small.note


def clusters(rng, centres, n, d=24):
    return {c: rng.normal(size=(n[c], d)) + centres[c] for c in centres}


def test_class_pair_matrix_reads_the_right_way():
    rng = np.random.default_rng(2)
    centres = {"AD": np.zeros(24), "SSA": np.full(24, 0.8), "HP": np.full(24, -0.8)}
    real = clusters(rng, centres, {"AD": 300, "SSA": 80, "HP": 70})
    good = clusters(rng, centres, {"AD": 100, "SSA": 100, "HP": 100})
    matrix = kid_matrix(good, real, "test-extractor", "three_class", subsets=10)
    assert matrix.subset_size == 70  # the smallest group
    assert all(matrix.margin[c] > 0 for c in centres)
    assert matrix.direction("AD", "AD") == "lower is better"
    assert matrix.direction("AD", "SSA") == "higher is better"
    swapped = {"AD": good["SSA"], "SSA": good["AD"], "HP": good["HP"]}
    bad = kid_matrix(swapped, real, "test-extractor", "three_class", subsets=10)
    assert bad.margin["AD"] < 0 and bad.margin["SSA"] < 0 and bad.margin["HP"] > 0
    as_json = bad.to_json()
    assert as_json["extractor"] == "test-extractor" and as_json["subset_size"] == 70
    assert as_json["cells"]["AD"]["AD"]["direction"] == "lower is better"


def test_checkpoint_sweep_prefers_the_separating_checkpoint():
    rng = np.random.default_rng(3)
    centres = {"AD": np.zeros(24), "HP": np.full(24, 1.0)}
    real = clusters(rng, centres, {"AD": 120, "HP": 60})

    def sampler(checkpoint, cls, n, seed):  # pretend images are already feature vectors
        local = np.random.default_rng([seed, hash(cls) % 1000])
        centre = centres[cls] if checkpoint == "step-2000" else np.full(24, 0.5)
        return list(local.normal(size=(n, 24)) + centre)

    result = checkpoint_sweep(sampler, ["step-1000", "step-2000"], ["AD", "HP"], 40, real,
                              embed=np.stack, extractor="t", scheme="ad_vs_rest", subsets=10)
    assert result.best() == "step-2000"
    assert len(result.rows) == 4
    assert len(sweep_figure(result).data) == 4


def test_nearest_real_and_copies():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(200, 16))
    synthetic = np.concatenate([real[[5, 17]] * 1.01, rng.normal(size=(30, 16))])
    idx, sims = nearest_real(synthetic, real, k=3)
    brute = (synthetic / np.linalg.norm(synthetic, axis=1, keepdims=True)) @ \
            (real / np.linalg.norm(real, axis=1, keepdims=True)).T
    assert np.array_equal(idx[:, 0], brute.argmax(1))
    assert np.allclose(sims[:, 0], brute.max(1))
    report = memorisation_report(synthetic, [f"s{i}" for i in range(32)],
                                 ["AD", "HP"] + ["AD"] * 30, real,
                                 [f"r{i}" for i in range(200)], 0.99, "t")
    assert [(p.synthetic_id, p.real_id) for p in report.pairs] in (
        [("s0", "r5"), ("s1", "r17")], [("s1", "r17"), ("s0", "r5")])
    assert report.share_flagged == {"AD": pytest.approx(1 / 31), "HP": 1.0}
    with pytest.raises(ValueError, match="threshold"):
        memorisation_report(synthetic, [], [], real, [], 1.5, "t")
    assert side_by_side(np.zeros((8, 8, 3), np.uint8), np.ones((10, 6, 3), np.uint8)).shape == (8, 18, 3)


def test_diversity():
    rng = np.random.default_rng(5)
    assert diversity(np.ones((10, 4))) == pytest.approx(0, abs=1e-9)
    spread = diversity(rng.normal(size=(300, 8)))
    assert 0.8 < spread < 1.2  # random directions: cosine ~ 0 on average


def test_projections_methods_cache_and_figure(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    features = np.concatenate([rng.normal(size=(20, 10)), rng.normal(3, 1, size=(20, 10))])
    ids = [f"img{i}" for i in range(40)]
    for method in ("pca", "tsne", "umap"):
        coords = projections.project(features, method, 0, tmp_path, ids, "t")
        assert coords.shape == (40, 2) and np.isfinite(coords).all()

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a cached projection")

    monkeypatch.setitem(projections.PROJECTIONS, "tsne", fail)
    projections.project(features, "tsne", 0, tmp_path, ids, "t")
    with pytest.raises(AssertionError):  # other parameters: a new projection
        projections.project(features, "tsne", 0, tmp_path, ids, "t", perplexity=5.0)
    with pytest.raises(ValueError, match="umap, tsne, pca"):
        projections.project(features, "mds")
    figure = projections.projection_figure(coords, ["AD"] * 20 + ["HP"] * 20,
                                           ["real", "synthetic"] * 20, ids, "t",
                                           ["data:x"] * 40)
    assert sorted(cd[0] for trace in figure.data for cd in trace.customdata) == sorted(ids)
    html = projections.write_projection_html(figure, tmp_path / "p.html").read_text()
    assert "plotly_hover" in html
    import re
    assert not re.search(r"<script[^>]+src=[\"']https?:", html)  # works offline: plotly.js inlined


def test_diagnose_end_to_end_through_the_cli(review_env, monkeypatch, tmp_path):
    """Real phantom images, synthetic ones in the pool: one command stores a traceable run."""
    from polyp_core import cli
    from polyp_core.runs import load_run

    db_url = review_env.db.url
    code = cli.main(["--workspace", str(review_env.workspace.root), "diagnose", "--dataset",
                     "phantom", "--size", "64", "--subsets", "5", "--real-split", "all",
                     "--projection", "pca", "--db", db_url])
    assert code == 0
    runs = sorted(review_env.workspace.runs_dir.iterdir())
    assert len(runs) == 1
    stored = load_run(review_env.db, runs[0].name)
    assert stored["config"]["extractor_id"] == "efficientnet_lite0@bundled"
    assert stored["results"]["kid"]["three_class"]["extractor"] == "efficientnet_lite0@bundled"
    assert set(stored["results"]["kid"]) == {"three_class", "ad_vs_rest"}
    assert len(stored["images"]["real"]) == 60 and len(stored["images"]["synthetic"]) == 40
    assert (runs[0] / "projection_pca.html").is_file() and (runs[0] / "kid_three_class.html").is_file()
    # the floor: two halves of each real class, lesion-disjoint (the phantom knows its lesions)
    floor = stored["results"]["kid_floor"]["ad_vs_rest"]
    assert set(floor) == {"AD", "REST"} and all(f["unit"] == "groups" for f in floor.values())
    assert all(f["n_a"] >= 2 and f["n_b"] >= 2 and f["groups"] >= 2 for f in floor.values())
    # a second run embeds nothing again
    from polyp_core.diagnostics.report import DiagnoseConfig, diagnose
    from polyp_core.diagnostics import features as features_module

    calls = []
    original = features_module.FeatureExtractor.__call__
    monkeypatch.setattr(features_module.FeatureExtractor, "__call__",
                        lambda self, images, progress=None: calls.append(len(images)) or
                        original(self, images))
    diagnose(review_env.db, review_env.workspace,
             DiagnoseConfig("phantom", size=64, subsets=5, real_split=None, projections=()))
    assert calls == []


def test_diagnose_reads_a_second_real_source_beside_the_synthetic_rows(review_env, tmp_path,
                                                                       capsys):
    """``--against``: another real data set (here: a phantom of another seed, as a second
    hospital) gets KID rows against this data set's real classes, and joins the projection."""
    from polyp_core import cli
    from polyp_core.data.importer import ImportConfig, import_dataset
    from polyp_core.data.phantom import write_phantom
    from polyp_core.runs import load_run

    write_phantom(tmp_path / "site-b", n_frames=40, size=64, seed=11, workers=1)
    import_dataset(review_env.workspace, ImportConfig(str(tmp_path / "site-b"), name="site-b"))
    code = cli.main(["--workspace", str(review_env.workspace.root), "diagnose", "--dataset",
                     "phantom", "--size", "64", "--subsets", "5", "--real-split", "all",
                     "--projection", "pca", "--against", "site-b", "--db", review_env.db.url])
    assert code == 0
    out = capsys.readouterr().out
    assert "second real source site-b (all: 40 images, 0 shared with phantom)" in out
    assert "real2 AD" in out and " ± " in out.split("real2 AD")[1].splitlines()[0]
    (run,) = sorted(review_env.workspace.runs_dir.iterdir())
    stored = load_run(review_env.db, run.name)
    second = stored["results"]["second_real"]
    assert second["dataset"] == "site-b" and second["images"] == 40
    rows = second["kid"]["ad_vs_rest"]
    assert rows["classes"] == ["AD", "REST"] and set(rows["cells"]["AD"]) == {"AD", "REST"}
    assert len(stored["images"]["second_real"]) == 40
    coords = np.load(run / "projection_pca.npy")
    assert len(coords) == 60 + 40 + 40  # real, synthetic, second real source
    # a source that is no data set is named
    code = cli.main(["--workspace", str(review_env.workspace.root), "diagnose", "--dataset",
                     "phantom", "--size", "64", "--against", "nowhere", "--db", review_env.db.url])
    assert code == 2 and "nowhere" in capsys.readouterr().err
