"""Figures. Matplotlib runs headless (Agg): experiments write PNG/GIF files, they never open windows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

PREDICTION_COLOURS = np.array(["#3b6fb6", "#f2c12e"])  # blue / yellow, as Fig. 3
NEIGHBOUR_COLOURS = np.array(["#1a9850", "#d73027"])  # green / red


def draw_spiral_state(ax, points, predictions, trajectory, neighbour_labels, title):
    """Test predictions, the neighbours' keys coloured by value, and their dotted paths so far.

    ``trajectory`` has shape (T, S, 2): the keys at T moments of training up to now.
    """
    ax.clear()
    ax.scatter(points[:, 0], points[:, 1], c=PREDICTION_COLOURS[predictions], s=4, alpha=0.6, linewidths=0)
    for path in trajectory.transpose(1, 0, 2):
        ax.plot(path[:, 0], path[:, 1], ":", color="black", linewidth=0.6)
    keys = trajectory[-1]
    ax.scatter(keys[:, 0], keys[:, 1], c=NEIGHBOUR_COLOURS[neighbour_labels], marker="P", s=45,
               edgecolors="black", linewidths=0.5)
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def spiral_figure(path, points, frames, trajectory, neighbour_labels, panels=3):
    """Fig. 3: ``panels`` moments of training from initialisation to the end, side by side.

    ``frames`` is a list of (epoch, accuracy, predictions), one per snapshot in ``trajectory``.
    """
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.4))
    for ax, t in zip(axes, np.linspace(0, len(frames) - 1, panels).round().astype(int)):
        epoch, accuracy, predictions = frames[t]
        draw_spiral_state(ax, points, predictions, trajectory[: t + 1], neighbour_labels,
                          f"epoch {epoch}: test accuracy {accuracy:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def spiral_animation(path, points, frames, trajectory, neighbour_labels, fps=8):
    """The same picture for every snapshot, as a GIF."""
    fig, ax = plt.subplots(figsize=(4.4, 4.6))

    def draw(t):
        epoch, accuracy, predictions = frames[t]
        draw_spiral_state(ax, points, predictions, trajectory[: t + 1], neighbour_labels,
                          f"epoch {epoch}: test accuracy {accuracy:.3f}")

    FuncAnimation(fig, draw, frames=len(frames)).save(path, writer=PillowWriter(fps=fps), dpi=72)
    plt.close(fig)
