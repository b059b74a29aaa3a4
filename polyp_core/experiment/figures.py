"""The compare dashboard as data and plotly figures: metric table, per-class deltas with
regressions in red, confusion matrices side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyp_core.tasks import COMPARED, task_of

if TYPE_CHECKING:
    import plotly.graph_objects as go


def evaluation_line(results: dict) -> str:
    """How the run was evaluated, in a few words (runs stored before CV: the fixed split)."""
    ev = results.get("evaluation", {"kind": "fixed split"})
    why = f" ({ev['chosen']})" if ev.get("chosen") else ""
    if ev["kind"] != "grouped cross-validation":
        return "the data set's fixed train/valid/test split" + why
    unit = "patient/lesion/video" if ev.get("grouped") else \
        "image (the data set names no groups: frame-level folds)"
    text = (f"{ev['folds']}-fold cross-validation stratified by class and grouped by {unit}, "
            f"pooled out-of-fold predictions")
    if ev.get("validation"):
        text += f"; {ev['validation']}"
    if ev.get("train_only_groups"):
        text += (f"; {ev['train_only_groups']} groups ({ev['train_only_images']} images) a "
                 "generator learned from trained in every fold and were never tested")
    return text + why


def _cell(s: dict) -> str:
    return f"{s['mean']:.3f} ± {s['std']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"


def _case_cell(s: dict) -> str:
    text = f"{s['estimate']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"
    return text + (f" p={s['p']:.3g}" if "p" in s else "")


def _node(tree: dict, path: tuple) -> dict:
    for key in path:
        tree = tree[key]
    return tree


#: the paired differences a run may hold: results key -> what is subtracted from what
COMPARISONS = tuple(COMPARED.items())


def metric_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: every metric, per arm the 95% CI over test groups (patients/lesions,
    cluster bootstrap) and seeds, and mean ± std [t interval] over seeds alone; then the paired
    differences (augmented − baseline; with a gated arm, gated − augmented) with their
    cluster-bootstrap CI and p."""
    arms = list(results["arms"])
    cases = "uncertainty" in results
    header = ["metric"]
    for arm in arms:
        header += ([f"{arm}: 95% CI over groups+seeds"] if cases else []) + \
            [f"{arm}: mean ± std [CI] over seeds"]
    deltas = [(key, name) for key, name in COMPARISONS if key in results]
    for key, name in deltas:
        header += ([f"{name}: paired CI over groups+seeds, p"] if
                   f"{key}_cluster" in results else []) + [f"{name} over seeds"]
    rows = []
    names = task_of(results).metric_rows(results)
    for label, path in names:
        row = [label]
        for arm in arms:
            if cases:
                try:
                    row.append(_case_cell(_node(results["uncertainty"][arm], path)))
                except KeyError:  # accuracy: chance depends on the mix, so no case CI is given
                    row.append("-")
            try:
                row.append(_cell(_node(results["arms"][arm]["summary"], path)))
            except KeyError:  # segmentation: per-class Dice has a case CI only
                row.append("-")
        for key, _ in deltas:
            if f"{key}_cluster" in results:
                try:
                    row.append(_case_cell(_node(results[f"{key}_cluster"], path)))
                except KeyError:
                    row.append("-")
            try:
                row.append(_cell(_node(results[key], path)))
            except KeyError:
                row.append("-")
        rows.append(row)
    return header, rows


def delta_bars(results: dict) -> go.Figure:
    """The change between the arms, augmented - baseline, with 95% intervals (the task draws
    it: per-class recall and F1, or Dice); a title saying so when the run lacks an arm."""
    import plotly.graph_objects as go

    if "delta" not in results:
        figure = go.Figure()
        figure.update_layout(title="Per-class change: needs both arms")
        return figure
    return task_of(results).delta_figure(results)


def confusion_figure(results: dict) -> go.Figure:
    """Summed confusion matrices of each arm (over seeds), side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not task_of(results).CONFUSION:
        figure = go.Figure()
        figure.update_layout(title="No confusion matrix for this task (see its scores)")
        return figure

    arms = list(results["arms"])
    classes = results["classes"]
    figure = make_subplots(rows=1, cols=len(arms), subplot_titles=arms)
    for i, arm in enumerate(arms, start=1):
        matrix = results["arms"][arm]["summary"]["confusion_sum"]
        figure.add_trace(go.Heatmap(z=matrix, x=classes, y=classes, colorscale="Blues",
                                    showscale=False, text=matrix, texttemplate="%{text}"),
                         row=1, col=i)
        figure.update_xaxes(title_text="predicted", row=1, col=i)
        figure.update_yaxes(title_text="true", autorange="reversed", row=1, col=i)
    figure.update_layout(title="Confusion matrices (test images, summed over seeds)", height=380,
                         margin=dict(l=40, r=20, t=70, b=40))
    return figure
