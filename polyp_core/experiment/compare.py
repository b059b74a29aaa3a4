"""``compare-runs``: what differs between two stored runs of one task."""

from __future__ import annotations

from polyp_core.runs import load_run
from polyp_core.tasks import task
from review_db.database import Database


def compare_runs(db: Database, run_a: str, run_b: str) -> dict:
    """What differs between two retrain runs: config, images, ratings, and every metric.

    Returns:
        ``config`` (changed settings, ``a`` -> ``b``), ``images`` (synthetic images only in
        one run, by SHA-256), ``ratings_changed``, and ``metrics`` per arm: mean of ``b`` minus
        mean of ``a`` for the summary metrics and every class's precision, recall and F1.
    """
    a, b = load_run(db, run_a), load_run(db, run_b)

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    fa, fb = flat(a["config"]), flat(b["config"])
    changed = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb))
               if fa.get(k) != fb.get(k) and k != "studio_version"}
    syn_a = {i["sha256"] for i in a["images"].get("synthetic", [])}
    syn_b = {i["sha256"] for i in b["images"].get("synthetic", [])}
    hash_a = a["results"].get("selection", {}).get("ratings_hash")
    hash_b = b["results"].get("selection", {}).get("ratings_hash")
    tasks = {r["results"].get("task", "classification") for r in (a, b)}
    if len(tasks) > 1:
        raise ValueError(f"{run_a} and {run_b} answer different tasks ({', '.join(sorted(tasks))}); "
                         "compare runs of one task")
    differences = task(tasks.pop()).differences
    metrics = {arm: differences(a["results"]["arms"][arm]["summary"],
                                b["results"]["arms"][arm]["summary"])
               for arm in sorted(set(a["results"]["arms"]) & set(b["results"]["arms"]))}
    return {"runs": [run_a, run_b], "config": changed,
            "images": {"only_in_a": sorted(syn_a - syn_b), "only_in_b": sorted(syn_b - syn_a),
                       "shared": len(syn_a & syn_b)},
            "ratings_changed": hash_a != hash_b, "metrics": metrics}
