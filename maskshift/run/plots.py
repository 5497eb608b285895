"""The plots of a run: ``learning_curve.png`` and ``before_after.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskshift._io import save_figure
from maskshift.run.loop import shown_metrics


def target_label(target: dict) -> str:
    """How a table names one target of an amortized run's ``results.json`` (runs written before
    labels existed name their classes)."""
    return target.get("label") or ",".join(map(str, target["forget_classes"]))


def plots(out: Path, results: dict, env) -> None:
    """``learning_curve.png`` (return and end-of-episode metrics over training, or over the
    controller's optimisation) and ``before_after.png`` (the test report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = results["history"]
    labels = env.task.objective.metric_names
    x_label = h.get("x_label", "env steps")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(h["env_steps"], h["episode_return"])
    axes[0].set(xlabel=x_label, ylabel=h.get("return_label", "mean episode return"),
                title=f"Learning curve ({results.get('algo', 'ppo')})")
    fm = np.asarray(h["final_metrics"], dtype=float)  # [points, metrics], or empty
    for i in shown_metrics(labels) if len(fm) else []:
        axes[1].plot(h["env_steps"], fm[:, i], label=labels[i])
    axes[1].set(xlabel=x_label, ylabel="end-of-episode metric (train minibatch)",
                title="Metrics at episode end", ylim=(-0.02, 1.02))
    if len(fm):
        axes[1].legend()
    fig.tight_layout()
    save_figure(fig, out / "learning_curve.png")

    fig, ax = plt.subplots(figsize=(9, 4))
    if results.get("amortized"):
        names = [target_label(r) for r in results["targets"]]
        vb = [r["before"]["forget_acc"] for r in results["targets"]]
        va = [r["after"]["forget_acc"] for r in results["targets"]]
        ax.set(xlabel="forget target", ylabel="forget accuracy",
               title="Each target's forget accuracy, before vs after (one policy)")
    elif "per_class_acc" in results["before"]:  # unlearning reports
        b, a = results["before"], results["after"]
        names = [str(i) for i in range(len(b["per_class_acc"]))]
        vb, va = b["per_class_acc"], a["per_class_acc"]
        forget = getattr(env.task.objective, "forget_classes", None)
        ax.set(xlabel="class", ylabel="test accuracy",
               title="Per-class test accuracy, before vs after"
               + (f" (forget {list(forget)})" if forget is not None else ""))
    elif "group_acc" in results["before"]:  # bias
        b, a = results["before"], results["after"]
        names = [f"{g}/{y}" for g in b["group_acc"] for y in ("non-tox", "tox")]
        vb = [v for g in b["group_acc"].values() for v in g]
        va = [v for g in a["group_acc"].values() for v in g]
        ax.set(ylabel="test accuracy",
               title="Test accuracy per (identity group, label), before vs after")
    else:  # any other objective: its headline figures
        b, a = results["before"], results["after"]
        names = [k for k in results.get("summary_keys", ()) if isinstance(b.get(k), float)]
        vb, va = [b[k] for k in names], [a[k] for k in names]
        ax.set(ylabel="test split", title=f"{results.get('objective', results['task'])}: "
               "headline figures, before vs after")
    x = np.arange(len(names))
    ax.bar(x - 0.2, vb, 0.4, label="before")
    ax.bar(x + 0.2, va, 0.4, label="after")
    ax.set_xticks(x, names, rotation=60 if len(names) > 10 else 0, ha="right" if len(names) > 10
                  else "center", fontsize=8)
    ax.set_ylim(min(0.0, *vb, *va), max(1.05, *vb, *va))
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "before_after.png")
