"""The reports of a table run: the Markdown of regress's results and summary and of an ablation, and the notes they
share (which Meta-Neighborhoods was measured, the settings, the fits stopped at max_epochs); the Markdown table
that classify's comparison writes too."""

from __future__ import annotations

import logging

import numpy as np

from ..estimators import MetaNeighborhoodsRegressor
from ..persistence import WITH_NEIGHBOURS
from ..significance import shown_p
from .ablation_caps import capped_note
from .cross_validation import BASELINE, REFERENCE, SEARCH
from .table_records import recorded

LOGGER = logging.getLogger(__name__)
RUN_SETTINGS = ("random_state", "device", "verbose")  # estimator parameters that a run's own options set


# A table run's error (cross_validation.METRICS) as reports name it: (short, what it measures, a figure's axis).
METRIC_TEXT = {"mse": ("MSE", "MSE on the standardised target", "MSE (standardised target)"),
               "error_rate": ("error rate", "error rate, the share of test rows misclassified", "error rate")}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table from a header and rows of already formatted cells."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines) + "\n"


def number(x: float) -> str:
    """Four significant digits, trailing zeros kept so that a column of errors lines up."""
    return f"{x:#.4g}".rstrip(".")


def error_cell(mean: float, std: float) -> str:
    """A mean error and its std (an MSE, or an error rate)."""
    return f"{number(mean)} ± {number(std)}"


def ratio_cell(ratio: float | None) -> str:
    """A ratio to the baseline; '—' where it has none (its error is 0)."""
    return "—" if ratio is None else number(ratio)


def gap_cell(gap: float | None, mean: float) -> str:
    return "—" if gap is None or mean == 0 else f"±{100 * gap / mean:.1f} %"


def won_tied_lost(results: dict, name: str, total: int) -> str:
    """MN's folds against ``name``: won / tied / lost ('—' against itself). Ties are frequent, not rare: where the
    vanilla fallback keeps the network without neighbours, MN's error is vanilla's."""
    if name not in results["reference_wins"]:
        return "—"
    won, tied = results["reference_wins"][name], results["reference_ties"][name]
    return f"{won}/{tied}/{total - won - tied}"


def protocol_text(config: dict) -> str:
    seeds = config["seeds"]
    return (f"{config['folds']}-fold CV repeated over {seeds} seed{'s' * (seeds > 1)} "
            f"({config['seed']}..{config['seed'] + seeds - 1})")


LOG_LOSS_NOTE = (" Log-loss: the mean over the folds of the test rows' negative log-probability of their class "
                 "(natural log; a probability of 0 counts as 1e-15).")


def _with_log_loss(rows: list[list[str]], losses: list | None) -> tuple[list[list[str]], dict]:
    """``rows`` with a classifier's mean log-loss added, one list of fold losses per row (None: a method without
    probabilities), where a classification run kept them (``losses``), and the ``header`` and ``note`` that column
    needs: the error rate ties where the probabilities do not."""
    if not losses:
        return rows, {"header": [], "note": ""}
    cells = ["—" if fold_losses is None else number(float(np.mean(fold_losses))) for fold_losses in losses]
    return [[*row, cell] for row, cell in zip(rows, cells)], {"header": ["log-loss (mean)"], "note": LOG_LOSS_NOTE}


def results_markdown(results: dict) -> str:
    config, total = results["config"], len(results["fold_seeds"])
    rows = [[name, error_cell(results["mean"][name], results["std"][name]),
             ratio_cell(results["ratio"].get(name)), won_tied_lost(results, name, total),
             shown_p(results["p_values"].get(name)), gap_cell(results["resolvable"].get(name), results["mean"][name]),
             shown_p(results["p_values_first_seed"].get(name))]
            for name in results["folds"]]
    log_loss = results.get("log_loss", {})
    rows, losses = _with_log_loss(rows, [log_loss.get(name) for name in results["folds"]] if log_loss else None)
    short, measured, _ = METRIC_TEXT[results.get("metric", "mse")]
    title = (f"# {results['dataset']}: {measured} (n = {results['n']}, d = {results['d']}; "
             f"{protocol_text(config)})\n\n"
             f"Mean ± std over all {total} (seed, fold) errors. MN won/tied/lost: folds where Meta-Neighborhoods has "
             f"the lower, the same, the higher error. p corrected: Nadeau & Bengio's corrected repeated-CV t-test of "
             f"MN against the method over all of them; resolves: the smallest gap between MN and the method that "
             f"test could call significant (p < 0.05) given how the gap varies from fold to fold, in % of the "
             f"method's {short}; p paired: the paper's paired t-test over the {config['folds']} folds of seed "
             f"{config['seed']}. Std: of the {total} errors (population, ddof = 0).{losses['note']}\n\n"
             f"{method_note(config)} {settings_note(config)}\n\n")
    table = markdown_table(["method", f"{short} (mean ± std)", f"ratio to {BASELINE}", "MN won/tied/lost",
                            "p corrected", "resolves", "p paired (first seed)", *losses["header"]], rows)
    kept = neighbours_kept(results)
    if kept is not None and config["estimator"].get("vanilla_fallback", True):
        table += (f"\nMeta-Neighborhoods kept the network with neighbours on {kept} of {total} folds (the vanilla "
                  f"fallback keeps the network without them where it validates better; `--no-vanilla-fallback` always "
                  f"keeps the neighbours).\n")
    return title + table + unconverged_note(results)


def ablation_markdown(results: dict, shown: list[str], capped: list) -> str:
    """ablation.md: each value's error, its ratio and p against the first value (``shown``: the values as the
    table names them; ``capped``: those the table's rows capped, ``ablation_caps.capped_values``)."""
    param, total = results["param"], len(results["fold_seeds"])
    rows = [[v, error_cell(m, sd), ratio_cell(r), shown_p(p)] for v, m, sd, r, p in
            zip(shown, results["mean"], results["std"], results["ratio"], results["p_value_vs_first"])]
    rows, losses = _with_log_loss(rows, results.get("log_loss"))
    short, measured, _ = METRIC_TEXT[results.get("metric", "mse")]
    title = (f"# {results['dataset']}: Meta-Neighborhoods ablation of {param} ({measured}; "
             f"{protocol_text(results['config'])})\n\n{method_note(results['config'])} "
             f"{settings_note(results['config'], param)} Mean ± std (population, ddof = 0) over all {total} "
             f"(seed, fold) errors; ratio and p (corrected repeated-CV t-test) against {param} = "
             f"{shown[0]}.{losses['note']}\n\n")
    header = [param, f"{short} (mean ± std)", f"ratio to {shown[0]}", "p vs first", *losses["header"]]
    return title + markdown_table(header, rows) + unconverged_note(results) + capped_note(param, shown, capped)


def method_note(config: dict) -> str:
    """Which Meta-Neighborhoods the run measured: the README's Table 2 has two (with and without the fallback)."""
    fallback = config["estimator"].get("vanilla_fallback", True)
    which = ("with the vanilla fallback (the estimator's default)" if fallback else
             "without the vanilla fallback (MN alone: always the network with neighbours, as the paper)")
    search = (f"; the MLP's architecture searched per fold for vanilla and used by MN too (`architectures` in "
              f"results.json)") if config.get("search") else ""
    return f"Meta-Neighborhoods (MN): {which}{search}."


def settings_note(config: dict, varied: str | None = None) -> str:
    """The estimator's parameters that differ from its defaults (``head`` too) in the run (``config``: its
    record), but ``varied`` (an ablation's); and the command that ran it. ``results.json``'s ``config`` holds
    everything, for ``--config``."""
    defaults = {name: value for name, value in recorded(MetaNeighborhoodsRegressor().get_params()).items()
                if name not in RUN_SETTINGS}  # as a record holds them: lists for tuples
    run = config.get("estimator") or {**defaults, **config.get("estimator_params", {})}  # a summary's: given only
    differ = {name: value for name, value in run.items() if name in defaults and name != varied
              and defaults[name] != value}
    shown = ", ".join(f"`{name}={value!r}`" for name, value in differ.items())
    command = " ".join(config.get("provenance", {}).get("command", []))
    return ((f"Parameters other than the estimator's defaults: {shown}." if differ else
             "Every other parameter at the estimator's default.") + (f" Command: `{command}`." if command else ""))


def unconverged_note(results: dict) -> str:
    """A paragraph on the fits that stopped at ``max_epochs`` before early stopping ended them ('' if none did):
    such a run measures capped training, and its reader should know. The run also logs it, once, instead of a
    warning per fit."""
    total, unconverged = len(results["fold_seeds"]), results["unconverged"]
    if not unconverged:
        return ""
    counts = "; ".join(f"{name}: {count} {'fits' if name == SEARCH else f'of {total} folds'}"
                       for name, count in unconverged.items())
    return (f"\nStopped at max_epochs before early stopping ended them ({counts}): raise --max-epochs, or lower "
            f"--n-iter-no-change, to let early stopping decide.\n")


def warn_unconverged(results: dict) -> None:
    """Say once on the log what ``unconverged_note`` says in the report."""
    if results["unconverged"]:
        LOGGER.warning("%s: %s", results["dataset"], unconverged_note(results).strip())


def neighbours_kept(results: dict) -> int | None:
    """On how many folds Meta-Neighborhoods kept its network with neighbours (None: not recorded)."""
    kept = results.get("kept", {}).get(REFERENCE)
    return None if kept is None else sum(choice == WITH_NEIGHBOURS for choice in kept)


def summary_markdown(rows: dict, methods: list[str], skipped: dict, protocol: str, config: dict) -> str:
    """The summary of a run on several tables: each method's error, and MN's p against every other method; the
    parameters other than the defaults (``config``: the run's) and the tables where fits stopped at max_epochs."""
    rivals = [m for m in methods if m != REFERENCE]
    header = ["data set", "n", "d", *methods, "MN / vanilla", "MN won/tied/lost vs vanilla",
              *(f"p MN vs {m}" for m in rivals), "lowest mean", "neighbours kept"]
    lines = [[name, str(r["n"]), str(r["d"]), *(error_cell(r["mean"][m], r["std"][m]) for m in methods),
              ratio_cell(r["ratio"].get(REFERENCE)),
              won_tied_lost(r, "vanilla", r["folds_total"]),
              *(shown_p(r["p_values"].get(m)) for m in rivals), r["lowest"],
              "—" if r["neighbours_kept"] is None else f"{r['neighbours_kept']}/{r['folds_total']}"]
             for name, r in rows.items()]
    text = (f"# Regression: MSE on the standardised target, {protocol}\n\n"
            "Mean ± std over all (seed, fold) errors (std: population, ddof = 0); p: corrected repeated-CV t-test "
            "(Nadeau & Bengio) of Meta-Neighborhoods (MN), per table (not adjusted for the number of tables). Lowest "
            "mean: the method of the lowest mean MSE, of those run, significantly or not. Neighbours kept: folds "
            "where MN kept its network with neighbours, not the vanilla fallback's. "
            f"{settings_note(config)}\n\n")
    text += markdown_table(header, lines)
    stopped = {name: sum(r["unconverged"].values()) for name, r in rows.items() if r["unconverged"]}
    if stopped:  # each table's results.md says which methods and folds
        text += ("\nStopped at max_epochs before early stopping ended them: " + ", ".join(
            f"{name} ({count} fits)" for name, count in stopped.items()) + "; see each table's results.md.\n")
    if skipped:
        text += "\nSkipped (data files missing): " + ", ".join(skipped) + "\n"
    return text
