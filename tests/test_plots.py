"""The figures say what they show: legends, axis labels, captions, and titles that agree with the points."""

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.text import Text

from meta_neighborhoods import plots
from meta_neighborhoods.experiments.analysis import RETRIEVAL_CAPTION, cosine_title, diagonal_shares


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting functions write (still written), to read what is drawn on them."""
    kept, save = [], plots._save

    def keep(fig, path, *args, **kwargs):
        kept.append(fig)
        save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def _texts(fig) -> list[str]:
    return [text.get_text() for text in fig.findobj(Text) if text.get_text()]


def _spiral(rng, n=60, keys=6, snapshots=4):
    points = rng.normal(size=(n, 2))
    frames = [(epoch, 0.5 + 0.1 * epoch, rng.integers(0, 2, n)) for epoch in range(snapshots)]
    return points, frames, rng.normal(size=(snapshots, keys, 2)), np.array([0, 1, 1, 0, 1, 0])


def test_spiral_figure_has_a_legend_axis_labels_and_the_vanilla_model(tmp_path, figures):
    points, frames, trajectory, labels = _spiral(np.random.default_rng(0))
    vanilla = np.zeros(len(points), dtype=int)
    plots.spiral_figure(tmp_path / "spiral.png", points, frames, trajectory, labels, vanilla=(0.61, vanilla))
    (fig,) = figures
    assert (tmp_path / "spiral.png").stat().st_size > 10_000
    assert len(fig.axes) == 4  # three moments of training and the vanilla model
    assert "vanilla" in fig.axes[-1].get_title() and "0.610" in fig.axes[-1].get_title()
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    (legend,) = fig.legends
    entries = [text.get_text() for text in legend.get_texts()]
    assert {"test point predicted as spiral 0", "learned neighbour, value = spiral 1",
            "neighbour's path during training"} <= set(entries)
    first, *_, last = fig.axes[:3]  # from the first snapshot to the last: initialisation, then the end of training
    assert first.get_title().startswith(f"Meta-Neighborhoods, epoch {frames[0][0]}\n")
    assert last.get_title() == f"Meta-Neighborhoods, epoch {frames[-1][0]}\ntest accuracy {frames[-1][1]:.3f}"


def test_a_neighbour_takes_the_colour_of_its_class(tmp_path, figures):
    points, frames, trajectory, labels = _spiral(np.random.default_rng(1))
    plots.spiral_figure(tmp_path / "spiral.png", points, frames, trajectory, labels)
    (fig,) = figures
    assert len(fig.axes) == 3  # without the vanilla model's predictions, no panel for it
    dots, keys = fig.axes[-1].collections  # the test points, then the neighbours' keys
    expected = [to_rgba(plots.CLASS_COLOURS[label]) for label in labels]
    np.testing.assert_allclose(keys.get_facecolors(), expected)
    dot_colours = {tuple(np.round(c[:3], 6)) for c in dots.get_facecolors()}
    assert {tuple(np.round(c[:3], 6)) for c in keys.get_facecolors()} <= dot_colours  # the same two colours


def test_ablation_figure_says_what_the_error_bars_are(tmp_path, figures):
    caption = "error bars: ±1 std over 15 folds (3 seeds x 5 folds)"
    plots.ablation_figure(tmp_path / "a.png", "dictionary_size", [0, 8, 64], [1.0, 0.8, 0.7], [0.1, 0.1, 0.05],
                          log_x=True, title="gom", error_bars=caption)
    plots.ablation_figure(tmp_path / "b.png", "similarity", ["cosine", None], [1.0, 0.9], [0.1, 0.2], False, "gom")
    assert caption in _texts(figures[0])
    assert any(text.startswith("error bars:") for text in _texts(figures[1]))  # the old call still works
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()
    for log_x in (False, True):
        plots.ablation_figure(tmp_path / "c.png", "top_k", [64, 8, 32], [1.0, 0.8, 0.7], [0.1, 0.1, 0.05], log_x, "gom")
        ax = figures[-1].axes[0]
        line = ax.lines[0]
        assert list(line.get_xdata()) == [8, 32, 64] and list(line.get_ydata()) == [0.8, 0.7, 1.0]  # no doubling back
        assert (ax.get_xscale(), ax.get_xlabel()) == (("log", "top_k (log scale)") if log_x else ("linear", "top_k"))
    ticks = {tick.get_position()[0]: tick.get_text() for tick in ax.get_xticklabels()}
    assert ticks == {8.0: "8", 32.0: "32", 64.0: "64"} and ax.get_xlabel() == "top_k (log scale)"  # each its own


def test_retrieval_figure_explains_its_row_labels(tmp_path, figures):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 5, 1, 8, 8), dtype=np.uint8)
    labels = [f"key {i}: {i}\nv = 0.57" for i in range(3)]
    correct = rng.random((3, 5)) > 0.5
    shape = plots.retrieval_figure(tmp_path / "r.png", images, labels, correct, "digits", RETRIEVAL_CAPTION)
    assert shape == (3, 5) and 0 < correct.sum() < correct.size == len(figures[0].axes)
    for ax, right in zip(figures[0].axes, correct.ravel()):  # row by row: green for the key's class, else red
        assert {spine.get_edgecolor() for spine in ax.spines.values()} == {to_rgba("#1a9850" if right else "#d73027")}
    text = " ".join(_texts(figures[0])).replace("\n", " ")
    assert "v = 0.57" in text and "and v, the probability its learned value" in text and "Green outline" in text


def test_points_on_the_diagonal_are_not_above_it(tmp_path, figures):
    before = np.linspace(0.1, 0.9, 50).astype(np.float32)
    shares = diagonal_shares(before, before.copy())
    assert shares["share_above_diagonal"] == 0.0 == shares["share_below_diagonal"]
    assert shares["share_on_diagonal"] == 1.0
    title = cosine_title("digits", shares, 0.9, 0.9, len(before))
    assert "0.0% above the diagonal, 0.0% below, 100.0% on it" in title
    plots.cosine_figure(tmp_path / "cosine.png", before, before, title)
    assert figures[0].get_suptitle().startswith(title)
    scatter, change = figures[0].axes
    for axis in (scatter, change):  # the points above the reference line, which hid them at any zoom
        reference, points = axis.get_lines()[0], axis.collections[0]
        assert points.get_zorder() > reference.get_zorder()
    after = before + np.linspace(-0.01, 0.02, len(before)).astype(np.float32)
    plots.cosine_figure(tmp_path / "moved.png", before, after, title)
    np.testing.assert_allclose(figures[1].axes[0].collections[0].get_offsets(), np.c_[before, after])  # x before
    change = figures[1].axes[1]  # the change itself, after - before, against before
    np.testing.assert_allclose(change.collections[0].get_offsets(), np.c_[before, after - before], rtol=1e-6)


def test_rounding_noise_is_on_the_diagonal_and_real_changes_are_not():
    before = np.array([0.5, 0.5, 0.5, 0.5])
    after = before + np.array([1e-8, -1e-8, 0.01, -0.02])
    shares = diagonal_shares(before, after)
    assert (shares["share_above_diagonal"], shares["share_below_diagonal"], shares["share_on_diagonal"]) == (
        0.25, 0.25, 0.5)


def test_figures_replace_a_link_at_their_path_never_write_through_it(tmp_path):
    """A run folder is untrusted: a link at a figure's name must not make a figure overwrite its target."""
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    points, frames, trajectory, labels = _spiral(np.random.default_rng(2))
    for name in ("spiral.png", "spiral.gif"):
        (tmp_path / name).symlink_to(victim)
    plots.spiral_figure(tmp_path / "spiral.png", points, frames, trajectory, labels)
    plots.spiral_animation(tmp_path / "spiral.gif", points, frames, trajectory, labels)
    assert victim.read_text() == "keep me"
    assert (tmp_path / "spiral.png").read_bytes().startswith(b"\x89PNG") and not (tmp_path / "spiral.png").is_symlink()
    assert (tmp_path / "spiral.gif").read_bytes().startswith(b"GIF8")


def test_class_names_from_disk_are_drawn_as_plain_text(tmp_path):
    r"""A class folder named like $\foo$ made matplotlib's mathtext parser fail in analyze."""
    rng = np.random.default_rng(0)
    names = ["$\\foo$", "cost $5", "plain"]
    plots.tsne_figure(tmp_path / "t.png", rng.normal(size=(6, 2)), np.arange(6) % 3, rng.normal(size=(3, 2)),
                      np.arange(3), names, "t-SNE")
    plots.retrieval_figure(tmp_path / "r.png", rng.integers(0, 256, (3, 2, 1, 8, 8), dtype=np.uint8),
                           [f"{name}\nv = 0.5" for name in names], np.ones((3, 2), bool), "digits")
    assert (tmp_path / "t.png").stat().st_size > 0 and (tmp_path / "r.png").stat().st_size > 0


def test_the_t_sne_title_lies_within_the_figure(tmp_path, figures):
    """Its two long lines, centred over the axes, ran off the figure's left edge (a trial read 'earest training')."""
    rng = np.random.default_rng(0)
    title = ("cifar10: t-SNE of 2000 training features (dots) and 100 keys (+);\nkeys whose nearest training feature "
             "shares their class: 0.87 in the plane, 0.91 in feature space")
    plots.tsne_figure(tmp_path / "t.png", rng.normal(size=(50, 2)), rng.integers(0, 10, 50), rng.normal(size=(10, 2)),
                      rng.integers(0, 10, 10), [str(i) for i in range(10)], title)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures[0]
    canvas = FigureCanvasAgg(fig)  # the figure is closed once written: drawn again, as it was laid out
    canvas.draw()
    extent = fig.axes[0].title.get_window_extent(canvas.get_renderer())
    assert 0 <= extent.x0 and extent.x1 <= fig.bbox.width

def test_the_fold_errors_break_between_seeds_whose_folds_are_other_rows(tmp_path, figures):
    errors = {"vanilla": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "mn": [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]}
    plots.fold_errors_figure(tmp_path / "folds.png", errors, "a title " * 20, folds=3)
    ax = figures[0].axes[0]
    xs, ys = ax.get_lines()[0].get_xdata(), ax.get_lines()[0].get_ydata()
    assert np.isnan(ys[3]) and np.array_equal(ys[[0, 1, 2, 4, 5, 6]], errors["vanilla"])  # no line joins two seeds
    assert np.array_equal(xs[[0, 1, 2, 4, 5, 6]], [1, 2, 3, 5, 6, 7])  # and one empty slot sets the seeds apart
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "1", "2", "3"]
    assert "\n" in ax.get_title()  # a long title wraps instead of being cut off


def test_methods_differ_by_marker_too_and_a_fallback_fold_is_ringed(tmp_path, figures):
    errors = {"vanilla": [1.0, 2.0, 3.0, 4.0], "mn": [1.0, 1.5, 3.0, 3.5]}  # folds 0 and 2: mn kept vanilla's
    plots.fold_errors_figure(tmp_path / "folds.png", errors, "t", folds=2, fell_back=("mn", [0, 2]))
    ax = figures[0].axes[0]
    first, second = ax.get_lines()[:2]
    assert first.get_marker() != second.get_marker() and first.get_linestyle() != second.get_linestyle()
    rings = ax.collections[0].get_offsets()
    assert np.array_equal(np.asarray(rings)[:, 1], [1.0, 3.0])  # drawn where vanilla's point hides under mn's
    assert "mn kept the vanilla network" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_ablation_points_carry_their_p_value_and_categories_are_not_joined(tmp_path, figures):
    plots.ablation_figure(tmp_path / "a.png", "top_k", [64, 8], [1.0, 0.8], [0.1, 0.1], True, "gom",
                          notes=["", "p = 0.047"])
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.texts] == ["p = 0.047", ""]  # follows its value into axis order
    plots.ablation_figure(tmp_path / "b.png", "temperature", ["default", "1.0"], [1.0, 0.9], [0.1, 0.1], True, "g")
    assert figures[1].axes[0].lines[0].get_linestyle() == "None"  # no line suggests a scale between categories
