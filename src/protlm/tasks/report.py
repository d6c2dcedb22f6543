"""Evaluation outputs: predictions TSVs, confusion-matrix, ROC / PR curve and regression scatter PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protlm.io.atomic import atomic_open, save_figure


def plot_confusion(y: np.ndarray, prob: np.ndarray, labels: tuple[str, ...], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (rows: true class) with counts in the cells (up to 30 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    present = np.arange(len(labels))  # every class, also those absent from a small split
    if len(labels) > 30:  # a 1,195-fold matrix is unreadable: keep the 30 most frequent true classes
        top = np.argsort(-np.bincount(y, minlength=len(labels)))[:30]
        present = np.sort(top)
    cm = confusion_matrix(y, prob.argmax(1), labels=present)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(present) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [labels[k] for k in present]
    ax.set_xticks(range(len(present)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(present)), names, fontsize=7)
    if len(present) <= 15:
        for i in range(len(present)):
            for j in range(len(present)):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="black" if norm[i, j] < 0.6 else "white",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(y: np.ndarray, prob: np.ndarray, out: Path, stem: str, title: str) -> list[Path]:
    """ROC and precision-recall curves of the positive class of a binary task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    if len(np.unique(y)) < 2:
        return []
    fpr, tpr, _ = roc_curve(y, prob[:, 1])
    precision, recall, _ = precision_recall_curve(y, prob[:, 1])
    curves = (
        ("roc", fpr, tpr, f"ROC-AUC {roc_auc_score(y, prob[:, 1]):.3f}", "false positive rate", "true positive rate"),
        ("pr", recall, precision, f"PR-AUC {average_precision_score(y, prob[:, 1]):.3f}", "recall", "precision"),
    )
    paths = []
    for name, xs, ys, label, xlabel, ylabel in curves:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(xs, ys, label=label)
        if name == "roc":
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        else:  # a random ranking's precision is the positive rate
            ax.axhline(float(np.mean(y)), color="k", ls=":", lw=0.8, label=f"positives {np.mean(y):.2f}")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend(loc="lower right" if name == "roc" else "lower left")
        fig.tight_layout()
        paths.append(out / f"{name}_{stem}.png")
        save_figure(fig, paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_predictions(path: Path, ids: list[str], y: np.ndarray, prob: np.ndarray, labels: tuple[str, ...]) -> Path:
    """One row per example: id, true label, predicted label, probability of the prediction."""
    with atomic_open(path) as fh:
        fh.write("id\tlabel\tpredicted\tprobability\n")
        for rid, t, p in zip(ids, y, prob, strict=True):
            k = int(p.argmax())
            fh.write(f"{rid}\t{labels[int(t)]}\t{labels[k]}\t{p[k]:.4f}\n")
    return path


def plot_scatter(y: np.ndarray, pred: np.ndarray, path: Path, title: str, name: str) -> Path:
    """Predicted against true values of a regression, with the Spearman correlation in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from protlm.tasks.metrics import spearman

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(y, pred, s=6, alpha=0.5)
    ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title=f"{title}\nSpearman {spearman(y, pred):.3f}")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def write_values(path: Path, ids: list[str], y: np.ndarray, pred: np.ndarray) -> Path:
    """One row per example of a regression: id, true value, predicted value."""
    with atomic_open(path) as fh:
        fh.write("id\tvalue\tpredicted\n")
        fh.writelines(f"{rid}\t{t:.6g}\t{p:.6g}\n" for rid, t, p in zip(ids, y, pred, strict=True))
    return path


def write_label_sets(path: Path, ids: list[str], y: np.ndarray, prob: np.ndarray, labels: tuple[str, ...]) -> Path:
    """One row per example of a multi-label task: id, true labels, predicted labels (probability >= 0.5), `;`-joined."""

    def names(row) -> str:
        return ";".join(labels[k] for k in np.flatnonzero(row))

    with atomic_open(path) as fh:
        fh.write("id\tlabels\tpredicted\n")
        fh.writelines(f"{rid}\t{names(t)}\t{names(p >= 0.5)}\n" for rid, t, p in zip(ids, y, prob, strict=True))
    return path
