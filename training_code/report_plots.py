"""The report's plots (matplotlib, Agg backend), each returned as PNG bytes.

matplotlib is optional: ``available()`` imports it, installs ``requirements-evaluation.txt`` once when the import
fails (unless ``REVIEWTUNE_EVAL_PIP=0``), and says whether plots can be drawn. Nothing here is needed for the
metrics.
"""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

REQUIREMENTS = Path(__file__).resolve().parent / "requirements-evaluation.txt"
PIP_SWITCH = "REVIEWTUNE_EVAL_PIP"
PIP_TIMEOUT_S = 300
CLASS_NAMES: dict[int, str] = {-1: "negative", 0: "neutral", 1: "positive"}
LOG_SCALINGS = ("Logarithmic", "ReverseLogarithmic")

_state: dict[str, bool] = {}


def _import() -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        return False
    return True


def available() -> bool:
    """True when matplotlib can be used (installing it first when allowed and needed)."""
    if "ok" in _state:
        return _state["ok"]
    ok = _import()
    if not ok and os.environ.get(PIP_SWITCH, "1") != "0" and REQUIREMENTS.is_file():
        print(f"matplotlib is missing: pip install -r {REQUIREMENTS.name}", flush=True)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT_S,
                check=False,
            )
            if result.returncode != 0:
                print(f"warning: pip install failed: {result.stderr.strip()[-500:]}", flush=True)
        except (OSError, subprocess.TimeoutExpired) as error:
            print(f"warning: pip install failed: {error}", flush=True)
        importlib.invalidate_caches()
        ok = _import()
    if not ok:
        print("warning: matplotlib is not available: the report has no images", flush=True)
    _state["ok"] = ok
    return ok


def _png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _class_names(labels: list[int]) -> list[str]:
    return [CLASS_NAMES.get(int(label), str(label)) for label in labels]


def _draw_matrix(axes: Any, values: Any, labels: list[str], fmt: str, title: str) -> None:
    image = axes.imshow(values, cmap="Blues", vmin=0)
    top = float(values.max()) if values.size else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            colour = "white" if top and values[i, j] > top / 2 else "black"
            axes.text(j, i, format(values[i, j], fmt), ha="center", va="center", color=colour)
    axes.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return image


def confusion_matrix_png(confusion: dict[str, Any], path: Path | None = None) -> bytes:
    """Counts and row-normalised (recall) side by side; also written to ``path`` when given."""
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(confusion["matrix"], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    names = _class_names(confusion["labels"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    _draw_matrix(left, counts.astype(int), names, "d", "Test set: counts")
    _draw_matrix(right, normalised, names, ".2f", "Normalised by true class")
    data = _png(figure)
    if path is not None:
        path.write_bytes(data)
    return data


def _numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(str(v).strip('"')) for v in values]
    except ValueError:
        return None


def objective_by_parameter(trials: list[dict[str, Any]], ranges: dict[str, Any], best: str | None) -> bytes | None:
    """One panel per tuned hyperparameter: each trial's objective against its value (log axis for log ranges)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    scored = [t for t in trials if t.get("objective") is not None]
    params = sorted({k for t in scored for k in t.get("tuned_hyperparameters", {})})
    if not scored or not params:
        return None
    figure, axes_list = plt.subplots(1, len(params), figsize=(4.2 * len(params), 3.4), squeeze=False)
    for axes, name in zip(axes_list[0], params, strict=True):
        rows = [t for t in scored if name in t["tuned_hyperparameters"]]
        raw = [str(t["tuned_hyperparameters"][name]).strip('"') for t in rows]
        values = _numeric(raw)
        rule = ranges.get(name)
        categorical = isinstance(rule, list) or values is None
        if categorical:
            order = [str(v) for v in rule] if isinstance(rule, list) else sorted(set(raw))
            order += sorted(set(raw) - set(order))
            xs = [order.index(v) for v in raw]
            axes.set_xticks(range(len(order)), order)
        else:
            xs = values
            if isinstance(rule, dict) and rule.get("scaling") in LOG_SCALINGS:
                from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                axes.set_xscale("log")
                axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0e}"))
                axes.xaxis.set_minor_formatter(NullFormatter())
            if isinstance(rule, dict) and "min" in rule and "max" in rule:  # the whole searched range
                low, high = float(rule["min"]), float(rule["max"])
                pad = (high / low) ** 0.05 if axes.get_xscale() == "log" and low > 0 else None
                axes.set_xlim(*((low / pad, high * pad) if pad else (low - 0.05 * (high - low), high + 0.05 * (high - low))))
        objectives = [t["objective"] for t in rows]
        colours = [t.get("_order", i) + 1 for i, t in enumerate(rows)]
        points = axes.scatter(xs, objectives, c=colours, cmap="viridis", vmin=1, vmax=max(len(scored), 2),
                              edgecolors="grey", s=45, zorder=3)
        for x, t in zip(xs, rows, strict=True):
            if t["name"] == best:
                axes.scatter([x], [t["objective"]], marker="*", s=260, color="tab:red", zorder=4, label="best")
        axes.set_xlabel(name + (" (log)" if axes.get_xscale() == "log" else ""))
        axes.set_ylabel("validation accuracy %")
        axes.grid(alpha=0.3)
    bar = figure.colorbar(points, ax=axes_list[0][-1], label="trial # (order started)")
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    figure.suptitle("Objective by hyperparameter")
    return _png(figure)


def learning_curves(trials: list[dict[str, Any]], best_epochs: list[dict[str, Any]], best: str | None) -> bytes | None:
    """Validation accuracy and loss per epoch: the best trial's full curve, the others at their last epoch."""
    import matplotlib.pyplot as plt

    if not trials and not best_epochs:
        return None
    figure, (acc_axes, loss_axes) = plt.subplots(1, 2, figsize=(9, 3.6))
    if best_epochs:
        epochs = [e["epoch"] for e in best_epochs if e.get("val_acc") is not None]
        acc_axes.plot(epochs, [e["val_acc"] for e in best_epochs if e.get("val_acc") is not None],
                      "o-", color="tab:red", label="best trial: validation")
        loss_axes.plot(epochs, [e["val_loss"] for e in best_epochs if e.get("val_loss") is not None],
                       "o-", color="tab:red", label="best trial: validation")
        loss_axes.plot([e["epoch"] for e in best_epochs], [e["train_loss"] for e in best_epochs],
                       "s--", color="tab:orange", label="best trial: training")
    labelled: set[str] = set()
    for trial in trials:
        if trial["name"] == best or trial.get("epochs") is None:
            continue
        early = bool(trial.get("early_stopped"))
        label = "early-stopped trial: validation" if early else "other trial: validation (last epoch)"
        show = None if label in labelled else label
        labelled.add(label)
        # Drawn over the best trial's curve, a circle hollow and larger than its markers: a trial that ends where the
        # best one does stays visible as a ring around the best trial's last point.
        style = ({"marker": "x", "color": "tab:blue"} if early else
                 {"marker": "o", "s": 80, "facecolors": "none", "edgecolors": "tab:blue", "linewidths": 1.5})
        if trial.get("objective") is not None:
            acc_axes.scatter([trial["epochs"]], [trial["objective"]], zorder=3, label=show, **style)
        if trial.get("val_loss") is not None:
            loss_axes.scatter([trial["epochs"]], [trial["val_loss"]], zorder=3, label=show, **style)
    for axes, title, ylabel in ((acc_axes, "Validation accuracy", "%"), (loss_axes, "Loss", "cross-entropy")):
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.set_ylabel(ylabel)
        axes.xaxis.get_major_locator().set_params(integer=True)
        low, high = axes.get_xlim()
        if high - low < 1:  # one epoch drawn: one tick, not 0.96 ... 1.04
            axes.set_xticks([round((low + high) / 2)])
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    return _png(figure)


def history(runs: list[dict[str, Any]]) -> bytes | None:
    """Test accuracy of this dataset's runs over time, with the 95 % interval where known; ★ = this run."""
    import matplotlib.pyplot as plt
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    points = sorted(
        (r for r in runs if r.get("test_accuracy") is not None and r.get("created_at")), key=lambda r: r["created_at"]
    )
    if len(points) < 2:
        return None
    times = [datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")) for r in points]
    accuracy = [100 * r["test_accuracy"] for r in points]
    below = [a - 100 * r["ci95"][0] if r.get("ci95") else 0 for r, a in zip(points, accuracy, strict=True)]
    above = [100 * r["ci95"][1] - a if r.get("ci95") else 0 for r, a in zip(points, accuracy, strict=True)]
    figure, axes = plt.subplots(figsize=(8, 3.2))
    # points, not a line: each run is measured on its own test reviews, so the points make no trend
    axes.errorbar(times, accuracy, yerr=[below, above], fmt="o", capsize=3, color="tab:blue",
                  label="test accuracy (each run's own test reviews)")
    current = [(t, a) for t, a, r in zip(times, accuracy, points, strict=True) if r.get("current")]
    if current:
        axes.scatter(*zip(*current, strict=True), marker="*", s=220, color="tab:red", zorder=3, label="this run")
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_ylabel("test accuracy %")
    axes.set_title("Test accuracy of this dataset's runs (95 % interval)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)
