"""Figures. Matplotlib runs headless (Agg): experiments write PNG/GIF files, they never open windows."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

from .io import atomic_write  # noqa: E402

CLASS_COLOURS = np.array(["#3b6fb6", "#f2c12e"])  # blue / yellow, as Fig. 3: predictions and neighbours alike
SPIRAL_AXES = ("$x_1$ (standardised)", "$x_2$ (standardised)")
# Methods in one figure: Okabe-Ito colours, told apart by marker and line too (no red against green alone)
METHOD_STYLES = [dict(color=c, marker=m, linestyle=ls) for c, m, ls in zip(
    ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000"], "os^DvPX",
    ["-", "--", "-.", ":", "-", "--", "-."])]


def _save(fig, path, dpi=120, rect=(0.0, 0.0, 1.0, 1.0)) -> None:
    """Lay out (tightly within ``rect``; None: the caller has placed the axes), write atomically (never through a
    link at ``path``) and close: no open figure is left behind (long runs would pile them up)."""
    if rect is not None:
        fig.tight_layout(rect=rect)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=Path(path).suffix[1:]))
    plt.close(fig)


class _GIF(PillowWriter):
    """Pillow's writer, told the format: ``atomic_write``'s temporary file has no .gif suffix to infer it from."""

    def finish(self):
        self._frames[0].save(self.outfile, format="GIF", save_all=True, append_images=self._frames[1:],
                             duration=int(1000 / self.fps), loop=0)


def _literal(text: str) -> str:
    """A name read from disk (a class folder's) as plain text: matplotlib would parse $...$ in it as mathtext, and
    fail on what is not valid mathtext."""
    return text.replace("$", r"\$")


def _draw_predictions(ax, points, predictions, title):
    ax.clear()
    ax.scatter(points[:, 0], points[:, 1], c=CLASS_COLOURS[predictions], s=4, alpha=0.6, linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(SPIRAL_AXES[0])
    ax.set_ylabel(SPIRAL_AXES[1])


def draw_spiral_state(ax, points, predictions, trajectory, neighbour_labels, title):
    """Test predictions, the neighbours' keys in their value's class colour, and their dotted paths so far.

    ``trajectory`` has shape (T, S, 2): the keys at T moments of training up to now.
    """
    _draw_predictions(ax, points, predictions, title)
    for path in trajectory.transpose(1, 0, 2):
        ax.plot(path[:, 0], path[:, 1], ":", color="black", linewidth=0.6)
    keys = trajectory[-1]
    ax.scatter(keys[:, 0], keys[:, 1], c=CLASS_COLOURS[neighbour_labels], marker="P", s=45,
               edgecolors="black", linewidths=0.5)


def _spiral_legend(fig, **where):
    """One legend for every panel: what the dots, the crosses and the dotted lines are."""
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour, markersize=5,
                          label=f"test point predicted as spiral {c}") for c, colour in enumerate(CLASS_COLOURS)]
    handles += [plt.Line2D([], [], marker="P", linestyle="", markerfacecolor=colour, markeredgecolor="black",
                           markersize=8, label=f"learned neighbour, value = spiral {c}")
                for c, colour in enumerate(CLASS_COLOURS)]
    handles.append(plt.Line2D([], [], linestyle=":", color="black", label="neighbour's path during training"))
    fig.legend(handles=handles, fontsize=8, frameon=False, **where)


def spiral_figure(path, points, frames, trajectory, neighbour_labels, panels=3, vanilla=None):
    """Fig. 3: ``panels`` moments of training from initialisation to the end, side by side, and (when ``vanilla``
    = (accuracy, predictions) is given) the vanilla linear model's test predictions in a last panel.

    ``frames`` is a list of (epoch, accuracy, predictions), one per snapshot in ``trajectory``.
    """
    columns = panels + (vanilla is not None)
    fig, axes = plt.subplots(1, columns, figsize=(4.2 * columns, 4.9), squeeze=False, sharex=True, sharey=True)
    for ax, t in zip(axes[0], np.linspace(0, len(frames) - 1, panels).round().astype(int)):
        epoch, accuracy, predictions = frames[t]
        draw_spiral_state(ax, points, predictions, trajectory[: t + 1], neighbour_labels,
                          f"Meta-Neighborhoods, epoch {epoch}\ntest accuracy {accuracy:.3f}")
    if vanilla is not None:
        accuracy, predictions = vanilla
        _draw_predictions(axes[0, -1], points, predictions, f"vanilla linear model, trained\n"
                                                            f"test accuracy {accuracy:.3f}")
    _spiral_legend(fig, loc="lower center", ncol=3)
    _save(fig, path, rect=(0.0, 0.1, 1.0, 1.0))


def spiral_animation(path, points, frames, trajectory, neighbour_labels, fps=8):
    """The same picture for every snapshot, as a GIF."""
    fig, ax = plt.subplots(figsize=(4.6, 5.8))
    _spiral_legend(fig, loc="lower center", ncol=1)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.24, top=0.95)

    def draw(t):
        epoch, accuracy, predictions = frames[t]
        draw_spiral_state(ax, points, predictions, trajectory[: t + 1], neighbour_labels,
                          f"epoch {epoch}: test accuracy {accuracy:.3f}")

    animation = FuncAnimation(fig, draw, frames=len(frames))
    atomic_write(path, lambda tmp: animation.save(tmp, writer=_GIF(fps=fps), dpi=72))
    plt.close(fig)


def fold_errors_figure(path, fold_errors, title, folds, fell_back=None, ylabel="MSE (standardised target)"):
    """One line per method across each seed's ``folds`` (entry r * folds + f is fold f of repeat r), broken
    between seeds, whose folds are not the same rows: paired differences (what the t-test sees) at a glance.
    ``fell_back``: (method, the folds where it kept the vanilla network), ringed, since its point there hides
    vanilla's, equal to it; ``ylabel``, what the errors are."""
    n = len(next(iter(fold_errors.values())))
    x = np.array([(i // folds) * (folds + 1) + i % folds + 1 for i in range(n)], dtype=float)
    gaps = list(range(folds, n, folds))  # a NaN there breaks the line between seeds
    width = min(max(6.4, 0.22 * n + 2.0), 16.0)
    fig, ax = plt.subplots(figsize=(width, 4.6))
    for (name, errors), style in zip(fold_errors.items(), itertools.cycle(METHOD_STYLES)):
        ax.plot(np.insert(x, gaps, np.nan), np.insert(np.asarray(errors, dtype=float), gaps, np.nan), label=name,
                markersize=5, **style)
    if fell_back and fell_back[1]:
        name, where = fell_back
        ax.scatter(x[where], np.asarray(fold_errors[name], dtype=float)[where], s=140, facecolors="none",
                   edgecolors="#444444", linewidths=1.2, zorder=3, label=f"{name} kept the vanilla network")
    shown = [i for i in range(n) if (i % folds) % max(1, folds // 10) == 0]
    ax.set_xticks(x[shown], [str(i % folds + 1) for i in shown])
    ax.set_xlabel(f"fold, seed by seed ({n // folds} seed{'s' * (n // folds != 1)} x {folds} folds, left to right)")
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 80), fontsize=9)
    entries = len(ax.get_legend_handles_labels()[1])
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(entries, int(width // 2.6)))
    _save(fig, path)


def ablation_figure(path, param, values, means, stds, log_x, title, error_bars="error bars: ±1 std over folds",
                    notes=None, ylabel="MSE (standardised target)"):
    """Mean ± std over folds against the value, with ``error_bars`` (what the bars are, e.g. "error bars: ±1 std
    over 15 folds (3 seeds x 5 folds)") written under the plot: a bar means nothing until it says what it spans.
    ``notes``, one per value, are written above its point: the paired test's p, which bars dominated by how hard
    each fold is cannot show.

    Values that are not all numbers (strings, None) sit at even positions, unjoined; ``log_x`` applies only where
    every value is a positive number.
    """
    notes = notes or [""] * len(values)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    x = np.asarray(values, dtype=float) if numeric else np.arange(len(values))
    if numeric:  # the line joins the values in their order on the axis, whatever order they were given in
        order = np.argsort(x)
        x, means, stds, values = x[order], np.asarray(means)[order], np.asarray(stds)[order], [values[i] for i in order]
        notes = [notes[i] for i in order]
    log_x = log_x and numeric and bool((x > 0).all())
    fig, ax = plt.subplots(figsize=(5.6, 4.3))
    ax.errorbar(x, means, yerr=stds, marker="o", capsize=4, linestyle="-" if numeric else "none")
    for x_i, top, note in zip(x, np.asarray(means) + np.asarray(stds), notes):
        ax.annotate(note, (x_i, top), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax.margins(x=0.08, y=0.12)  # room for the notes above the highest bar
    if log_x:
        ax.set_xscale("log")
    if not numeric or log_x:
        ax.set_xticks(x, [str(v) for v in values])
        ax.minorticks_off()
    ax.set_xlabel(f"{param} (log scale)" if log_x else param)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.text(0.5, 0.015, textwrap.fill(error_bars, 90), ha="center", va="bottom", fontsize=8, color="#444444")
    _save(fig, path, rect=(0.0, 0.08, 1.0, 1.0))


# ---------------------------------------------------------------------------------------------------
# Analysis of the learned neighbours (Figs. 4-6)


def class_colours(n_classes):
    """One colour per class (the t-SNE figure): tab10 / tab20 where they suffice, else turbo."""
    if n_classes <= 10:
        return np.array(plt.get_cmap("tab10").colors[:n_classes])
    if n_classes <= 20:
        return np.array(plt.get_cmap("tab20").colors[:n_classes])
    return plt.get_cmap("turbo")(np.linspace(0.0, 1.0, n_classes))[:, :3]


def tsne_figure(path, train_xy, train_labels, key_xy, key_labels, class_names, title):
    """Fig. 5: training features as small dots and keys as '+', both coloured by class (keys by argmax value)."""
    colours = class_colours(len(class_names))
    fig, ax = plt.subplots(figsize=(7.4, 6.4))
    ax.scatter(train_xy[:, 0], train_xy[:, 1], c=colours[train_labels], s=5, alpha=0.5, linewidths=0)
    ax.scatter(key_xy[:, 0], key_xy[:, 1], c=colours[key_labels], marker="P", s=70, edgecolors="black",
               linewidths=0.6, zorder=3)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[c], markersize=5, label=_literal(name))
               for c, name in enumerate(class_names)] if len(class_names) <= 20 else []
    handles += [plt.Line2D([], [], marker="P", linestyle="", markerfacecolor="white", markeredgecolor="black",
                           markersize=8, label="learned neighbour (key)")]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.set_title(title, fontsize=9, wrap=True)  # two long lines: kept within the figure
    ax.set_xticks([])
    ax.set_yticks([])
    _save(fig, path)


def cosine_figure(path, before, after, title):
    """Fig. 4: each test point's cosine to its ground-truth prototype before (x) and after (y) finetuning; and,
    since finetuning moves most points by little, the change itself against the cosine before (right)."""
    before, after = np.asarray(before), np.asarray(after)
    fig, (ax, change) = plt.subplots(1, 2, figsize=(10.4, 5.2))
    low, high = float(min(before.min(), after.min())), float(max(before.max(), after.max()))
    pad = 0.03 * (high - low or 1.0)
    line = [low - pad, high + pad]
    ax.plot(line, line, color="red", linewidth=0.8, zorder=1, label="after = before (no change)")
    ax.scatter(before, after, s=6, alpha=0.6, color="#3b6fb6", linewidths=0, zorder=2)
    ax.set_xlim(line)
    ax.set_ylim(line)
    ax.set_aspect("equal")
    ax.set_ylabel("cosine after finetuning")
    ax.legend(loc="lower right", fontsize=8)
    change.axhline(0.0, color="red", linewidth=0.8, zorder=1, label="no change")
    change.scatter(before, after - before, s=6, alpha=0.6, color="#3b6fb6", linewidths=0, zorder=2)
    change.set_ylabel("change: cosine after - before")
    change.legend(loc="lower right", fontsize=8)
    for axis in (ax, change):
        axis.set_xlabel("cosine before finetuning")
    fig.suptitle(f"{title}\ncosine of each test image's feature to its true class's prototype", fontsize=9)
    _save(fig, path)


def retrieval_figure(path, images, row_labels, correct, title, caption=""):
    """Appendix A.8: one row per key, its nearest test images; green outline = the key's value class, else red.

    ``images`` is (rows, k, C, H, W) uint8 as stored (no normalisation), ``correct`` (rows, k) booleans.
    ``caption``, under the grid, says what the row labels mean. Returns the grid's shape (rows, k).
    """
    rows, k = images.shape[:2]
    width = 1.15 * k + 1.9
    caption = textwrap.fill(caption, width=int(16 * width)) if caption else ""
    bottom = 0.14 * (caption.count("\n") + 1) + 0.2 if caption else 0.0  # inches of caption under the grid
    height = 1.15 * rows + 0.6 + bottom
    fig, axes = plt.subplots(rows, k, figsize=(width, height), squeeze=False)
    for r in range(rows):
        for c in range(k):
            ax, image = axes[r, c], images[r, c]
            if image.shape[0] == 1:
                ax.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("#1a9850" if correct[r, c] else "#d73027")
                spine.set_linewidth(2.5)
        axes[r, 0].set_ylabel(_literal(row_labels[r]), rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9, y=1 - 0.12 / height, va="top")
    if caption:
        fig.text(0.02, 0.1 / height, caption, ha="left", va="bottom", fontsize=7, color="#333333")
    # by hand, in inches: the row labels on the left, the title above the first row, the caption under the last
    fig.subplots_adjust(left=1.8 / width, right=1 - 0.1 / width, bottom=(bottom or 0.1) / height,
                        top=1 - 0.5 / height, wspace=0.1, hspace=0.1)
    _save(fig, path, dpi=100, rect=None)
    return axes.shape
