"""The compare dashboard as data and plotly figures: metric table, per-class deltas with
regressions in red, confusion matrices side by side."""

from __future__ import annotations


def _cell(s: dict) -> str:
    return f"{s['mean']:.3f} ± {s['std']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"


def metric_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: every metric, one column per arm (mean ± std [95% CI]), then the
    paired difference when both arms ran."""
    arms = list(results["arms"])
    header = ["metric", *arms] + (["augmented − baseline"] if "delta" in results else [])
    rows = []
    names = [("macro-F1", ("macro_f1",)), ("balanced accuracy", ("balanced_accuracy",)),
             ("accuracy", ("accuracy",))]
    names += [(f"{c} {m}", ("per_class", c, m)) for c in results["classes"]
              for m in ("precision", "recall", "f1")]
    for label, path in names:
        row = [label]
        for arm in arms:
            node = results["arms"][arm]["summary"]
            for key in path:
                node = node[key]
            row.append(_cell(node))
        if "delta" in results:
            node = results["delta"]
            for key in path:
                node = node[key]
            row.append(_cell(node))
        rows.append(row)
    return header, rows


def delta_bars(results: dict):
    """Per-class change in recall and F1 (augmented − baseline) with 95% intervals; a bar is
    red when the class got worse."""
    import plotly.graph_objects as go

    figure = go.Figure()
    if "delta" not in results:
        figure.update_layout(title="Per-class change: needs both arms")
        return figure
    classes = results["classes"]
    for metric, pattern in (("recall", ""), ("f1", "/")):
        d = [results["delta"]["per_class"][c][metric] for c in classes]
        means = [x["mean"] for x in d]
        figure.add_trace(go.Bar(
            x=classes, y=means, name=metric, marker_pattern_shape=pattern,
            marker_color=["#d62728" if m < 0 else "#2ca02c" for m in means],
            error_y=dict(type="data", symmetric=False,
                         array=[x["ci"][1] - x["mean"] for x in d],
                         arrayminus=[x["mean"] - x["ci"][0] for x in d])))
    figure.update_layout(barmode="group", title="Per-class change, augmented − baseline (95% CI)",
                         yaxis_title="Δ", height=360, margin=dict(l=40, r=20, t=50, b=40))
    return figure


def confusion_figure(results: dict):
    """Summed confusion matrices of each arm (over seeds), side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

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
