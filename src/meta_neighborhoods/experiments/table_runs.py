"""Table 2 and the ablations as runs: repeated k-fold CV (``cross_validation.py``) of kNN, the vanilla MLP,
Meta-Neighborhoods, gradient boosting and the optional baselines, the tests of ``significance.py``, and the files of
a table run (their Markdown: ``reports.py``)."""

from __future__ import annotations

import functools
import logging
import math
from contextlib import ExitStack
from pathlib import Path

from .. import __version__
from ..config import ABLATION_TYPES, FOLDS, MAX_VALUES, SEEDS
from ..datasets.files import DataFileError
from ..datasets.tables import Table, available_tables, load_table
from ..estimator_settings import network_description
from ..io import (claimed, inner_folder, lock, prepare_out_dir, refuse_other_runs, remove_created, remove_stale_stages,
                  write_json, write_text)
from ..persistence import WITH_NEIGHBOURS
from ..plots import ablation_figure, fold_errors_figure
from ..provenance import provenance
from ..run_files import (ABLATION, ABLATION_JSON, ABLATION_MD, ABLATION_PNG, FOLDS_PNG, RESULTS, RESULTS_JSON,
                         RESULTS_MD, SUMMARY, SUMMARY_JSON, SUMMARY_MD, TABLE_KIND)
from ..significance import compare
from ..training import resolve_device, torch_threads
from ..validation import NONE, ConfigError, check_option
from .ablation_caps import CAPS, capped_values, point_notes
from .cross_validation import (
    BASELINE, METRICS, REFERENCE, REGRESSION, available_methods, check_method_settings, cross_validate,
    meta_neighborhoods_estimator, protocol_options, protocol_rows, with_params,
)
from .class_labels import checked_classes
from .reports import (
    METRIC_TEXT, ablation_markdown, neighbours_kept, protocol_text, results_markdown, summary_markdown,
    warn_unconverged,
)
from .table_records import recorded, run_config

NOMINAL_ROWS = 2  # the shape settings are checked against before a run of several tables has read one
FOLD_ORDER = "entry r * folds + f of each list is fold f of repeat r, seeded with fold_seeds[r * folds + f]"
# The parameters whose value 'none' means their default temperature or full attention, as reports show it.
NONE_MEANS = {"temperature": "default", "top_k": "full"}
ABLATED = {"vanilla_fallback": False}  # an ablation studies the method itself: its network is always kept
LOG_SCALE_PARAMS = ("dictionary_size", "temperature", "top_k")  # values that span orders of magnitude
TABLE_RUNS = (*RESULTS, *SUMMARY, *ABLATION)  # what regress and ablate write: any of them in a folder is a run
LOGGER = logging.getLogger(__name__)


def run_table(table: Table, out, folds: int = FOLDS, seed: int = 0, seeds: int = SEEDS, search: bool = False,
              methods: dict | None = None, estimator_params: dict | None = None, max_rows: int | None = None,
              progress: bool = True, overwrite: bool = False, threads: int | None = None,
              task: str = REGRESSION) -> dict:
    """Table 2 for one data set: writes results.json, results.md and folds.png into ``out`` (a folder holding any
    table run's files is refused unless ``overwrite``). With ``task="classification"`` the methods are classifiers
    on the table's class labels, the folds stratified, and the error the share of test rows misclassified.

    The whole ``folds``-fold CV runs ``seeds`` times (seeds ``seed``, ``seed + 1``, ...), every method on the same
    folds. ``estimator_params`` override the estimators' defaults for vanilla and Meta-Neighborhoods alike
    (vanilla keeps ``dictionary_size=0``); with ``search=True`` the searched architecture overrides theirs.
    ``max_rows`` runs on a random subset of that many rows, to bound the cost; ``threads``, torch's CPU threads
    while it runs (recorded: ``protocol_options``). ``methods`` default to ``available_methods(task)``.
    """
    methods = _with_reference(methods, task)
    prepared = _prepared(table, methods, estimator_params, folds, seed, seeds, max_rows, threads, task=task)
    with torch_threads(prepared[0]["threads"]), claimed(out, TABLE_RUNS, overwrite, TABLE_KIND) as out:
        results = _table_results(table, methods, *prepared, search, progress)
        _write_table_run(out, results)
    return results


def _with_reference(methods: dict | None, task: str = REGRESSION) -> dict:
    """A table run's ``methods`` (None: ``available_methods(task)``), which the tests compare with
    Meta-Neighborhoods."""
    methods = available_methods(task) if methods is None else methods
    if REFERENCE not in methods:
        raise ConfigError(f"methods must include {REFERENCE!r}, the reference of the tests")
    return methods


def _table_results(table: Table, methods: dict, options: dict, used: Table, params: dict, search: bool,
                   progress: bool) -> dict:
    """The cross-validation of a table run (``_prepared``'s checked ``options``, ``used`` rows and ``params``) and
    its comparison of the methods: the run's record."""
    folds = options["folds"]
    cv = cross_validate(used, methods, folds=folds, seed=options["seed"], seeds=options["seeds"], params=params,
                        search=search, progress=progress, task=options["task"])
    summary = compare(cv["folds"], REFERENCE, folds, baseline=BASELINE)
    varied = {"hidden_layer_sizes": "searched per fold, see architectures"} if search else {}
    return {
        **_folds_record(table, used, cv, options["task"]), "folds": cv["folds"], "kept": cv["kept"],
        "validation_losses": cv["validation_losses"], **summary,
        "p_value_vs_vanilla": summary["p_values"].get("vanilla"), "seconds": cv["seconds"],
        **({"architectures": cv["architectures"]} if search else {}),
        **({"log_loss": cv["log_loss"]} if cv["log_loss"] else {}),
        "config": {**run_config(table, used, options, params, varied), "search": search},
    }


def _write_table_run(out: Path, results: dict) -> None:
    """A table run's files in ``out`` (a claimed folder's stage: they take their places together)."""
    write_json(out / RESULTS_JSON, results)
    warn_unconverged(results)
    write_text(out / RESULTS_MD, results_markdown(results))
    kept = results["kept"].get(REFERENCE, [])
    vanilla_kept = [i for i, choice in enumerate(kept) if choice != WITH_NEIGHBOURS]
    short, _, axis = METRIC_TEXT[results["metric"]]
    fold_errors_figure(out / FOLDS_PNG, results["folds"], f"{results['dataset']}: {short} per fold, "
                       f"{protocol_text(results['config'])}", results["config"]["folds"], (REFERENCE, vanilla_kept),
                       ylabel=axis)


def _prepared(table: Table, methods: dict, estimator_params: dict | None, *protocol,
              task: str = REGRESSION) -> tuple[dict, Table, dict]:
    """A table run's ``protocol`` options (``protocol_options``' arguments) with its ``task``, the rows it uses and
    its estimators' settings, each checked before any folder is claimed."""
    check_option("task", task, METRICS)
    twice = table.repeated_features()
    if twice:  # said now, not when fit --config of the run's record refuses the table
        LOGGER.warning("%s: more than one feature is named %r, which a run takes by position; fit refuses such a "
                       "table (a model finds its columns by name): rename one, or leave them out (--ignore-columns)",
                       table.name, twice[0])
    options = {**protocol_options(*protocol), "task": task}
    used = protocol_rows(table, methods, options)
    if task != REGRESSION:  # a regression's target, or a class too small for the folds: refused now
        checked_classes(used, options["folds"], drawn_from=table)
    return options, used, _checked_params(estimator_params, methods, used, options["folds"], task)


def _folds_record(table: Table, used: Table, cv: dict, task: str = REGRESSION) -> dict:
    """What a table run's record says of its table and folds, for regress and ablate alike."""
    return {"dataset": table.name, "n": len(used.y), "d": int(table.X.shape[1]), "metric": METRICS[task],
            "fold_seeds": cv["fold_seeds"], "fold_numbers": cv["fold_numbers"], "fold_order": FOLD_ORDER,
            "unconverged": cv["unconverged"]}


def _checked_params(estimator_params: dict | None, methods: dict, used: Table | None = None,
                    folds: int = FOLDS, task: str = REGRESSION) -> dict:
    """The estimators' settings, checked before any folder or fit (a device this machine lacks fails here too):
    given the rows a run ``used``, as each method's fit on its smallest training fold would check them; before a run
    of several tables has read one, as Meta-Neighborhoods' own estimator takes them (a method's factory may derive
    settings from the rows it is given, so it waits for each table's)."""
    params = dict(estimator_params or {})
    resolve_device(params.get("device", "cpu"))
    if params.get("dictionary_size") == 0 and BASELINE in methods and REFERENCE in methods:
        raise ConfigError("dictionary_size=0 is the vanilla network, which regress runs beside Meta-Neighborhoods: "
                          "give a size of at least 1", "dictionary_size")
    if used is None:
        check_method_settings({REFERENCE: meta_neighborhoods_estimator}, params, NOMINAL_ROWS, 1)
    else:
        n_train = len(used.y) - math.ceil(len(used.y) / folds)
        check_method_settings(methods, params, n_train, used.X.shape[1], task)
    return params


def _summary_row(results: dict) -> dict:
    mean, p_values = results["mean"], results["p_values"]
    return {
        "n": results["n"], "d": results["d"], "mean": mean, "std": results["std"], "ratio": results["ratio"],
        "reference_wins": results["reference_wins"],
        "reference_ties": results["reference_ties"], "folds_total": len(results["fold_seeds"]),
        "neighbours_kept": neighbours_kept(results),
        "p_value_vs_vanilla": p_values.get("vanilla"), "p_value_vs_knn": p_values.get("knn"),
        "p_values": {name: p_values.get(name) for name in mean if name != REFERENCE},  # MN's against each
        "lowest": min(mean, key=mean.get),  # the method of the lowest mean error, of every method run
        "unconverged": results["unconverged"],  # fits stopped at max_epochs, by method
    }


def run_tables(names: list[str], out, data_dir=None, methods: dict | None = None, folds: int = FOLDS,
               seed: int = 0, seeds: int = SEEDS, search: bool = False, estimator_params: dict | None = None,
               max_rows: int | None = None, progress: bool = True, overwrite: bool = False,
               threads: int | None = None) -> dict:
    """Table 2 for several registered data sets into ``out/<name>/``, plus summary.md / summary.json; the options
    are ``run_table``'s.

    A data set whose files are missing is skipped with a note, so one absent download does not stop the rest.
    A misspelt name, a bad count of seeds or rows or a folder that holds an earlier run's results (without
    ``overwrite``) fails before any data set is run. Each table's files are written once it has its results, but
    where they replace an earlier run's, they all take their places together at the end (``io.staged``): a failed
    or interrupted run leaves the earlier one whole, never some tables of each.
    """
    unknown = [name for name in names if name not in available_tables(REGRESSION)]
    if unknown:
        known = ", ".join(available_tables(REGRESSION))
        raise ConfigError(f"unknown table(s) {', '.join(map(repr, unknown))}; known tables: {known}")
    protocol = (folds, seed, seeds, max_rows, threads)
    checked = protocol_options(*protocol)
    methods = _with_reference(methods)
    config = {**checked, "task": REGRESSION, "search": search,  # what --config with summary.json reruns
              "estimator_params": recorded(_checked_params(estimator_params, methods)), "version": __version__}
    folders = [inner_folder(out, name) for name in names]  # before anything is read or removed through a link
    for folder in folders:  # a table's folder that holds a run of another kind, or cannot be written: refused now
        if folder.exists():
            refuse_other_runs(folder, TABLE_KIND)
            prepare_out_dir(folder)
    outputs = [*TABLE_RUNS, *(f"{name}/{file}" for name in names for file in TABLE_RUNS)]
    replacing = any((Path(out) / name).exists() for name in outputs)
    with torch_threads(checked["threads"]), ExitStack() as held, claimed(out, outputs, overwrite, TABLE_KIND) as stage:
        config["provenance"] = provenance()  # under the tables' thread count: their provenance's
        if replacing:
            _hold(held, folders)
        rows, skipped, shown = {}, {}, ""
        for name in names:
            try:
                table = load_table(name, data_dir)
            except DataFileError as error:
                LOGGER.warning("skipping %s: %s", name, error)
                skipped[name] = str(error)
                continue
            results = _table_results(table, methods, *_prepared(table, methods, estimator_params, *protocol), search,
                                     progress)
            if replacing:  # into the stage: the earlier run stays whole until every table has its files
                _write_table_run(stage / name, results)
            else:  # a folder of no earlier run: each table's files as it ends, so a failed run keeps what it finished
                _write_table(Path(out) / name, results)
            rows[name], shown = _summary_row(results), protocol_text(results["config"])
        summary = {"datasets": rows, "skipped": skipped, "config": config}
        write_json(stage / SUMMARY_JSON, summary)
        write_text(stage / SUMMARY_MD, summary_markdown(rows, list(methods), skipped, shown, config))
    return summary


def _hold(held: ExitStack, folders: list[Path]) -> None:
    """Each table's folder locked in ``held`` until the run's files replace the earlier run's, so that no other run
    writes there meanwhile; one that is missing is made, to be locked (a run into it would be replaced at the end),
    and removed again where it holds no more than the lock; a killed run's stages there, which the stage of the
    whole run does not see, are removed."""
    for folder in folders:
        if not folder.exists():
            folder.mkdir()
            held.callback(remove_created, [folder])
        held.enter_context(lock(folder))
        remove_stale_stages(folder)


def _write_table(folder: Path, results: dict) -> None:
    """One table's files of a run of several, in its own folder, claimed (checked and locked) as a table run's: one
    that another run wrote meanwhile is refused, never replaced."""
    with claimed(folder, TABLE_RUNS, False, TABLE_KIND) as stage:
        _write_table_run(stage, results)


# ---------------------------------------------------------------------------------------------------
# Ablations


def ablation_values(param: str, values) -> list:
    """Command-line strings (or Python values) as the estimator's type; NONE means what NONE_MEANS says."""
    if param not in ABLATION_TYPES:
        raise ConfigError(f"unknown ablation parameter {param!r}; choose one of {', '.join(ABLATION_TYPES)}", "param")
    kind, converted = ABLATION_TYPES[param], []
    for value in values:
        if param in NONE_MEANS and (value is None or str(value).lower() == NONE):
            converted.append(None)
            continue
        try:
            converted.append(kind(value))
        except ValueError:
            raise ConfigError(f"{param} values must be of type {kind.__name__}, got {value!r}", "values") from None
    if not converted:
        raise ConfigError(f"no values given for {param}", "values")
    if len(converted) > MAX_VALUES:
        raise ConfigError(f"{len(converted):,} values of {param}: an ablation tries at most {MAX_VALUES}", "values")
    if len(set(converted)) != len(converted):
        raise ConfigError(f"{param} values repeat: {list(values)}", "values")
    return converted


def _check_distinct(param: str, values: list, methods: dict, params: dict, used: Table) -> None:
    """Refuses two temperatures that the estimator resolves alike on ``used``: 'none', the default for its similarity
    and features, beside that number would fit the same network twice and read as two results."""
    if param != "temperature" or params.get("extractor") is not None:  # an extractor's width: known once built
        return
    d, seen = used.X.shape[1], {}
    for value, factory in zip(values, methods.values()):
        label = f"{NONE} (the default)" if value is None else f"{value:g}"
        estimator = factory(seed=0, n_train=len(used.y), params=params)
        network = network_description(estimator, d, 1, len(used.y), d, estimator.dictionary_size)
        resolved = network["temperature"]
        if resolved in seen:
            raise ConfigError(f"temperature values {seen[resolved]} and {label} are the same here: the default "
                              f"temperature of {network['similarity']} similarity on {d} features is {resolved:g}; "
                              f"drop one", "values")
        seen[resolved] = label


def run_ablation(table: Table, out, param: str, values, folds: int = FOLDS, seed: int = 0, seeds: int = SEEDS,
                 max_rows: int | None = None, progress: bool = True, estimator_params: dict | None = None,
                 overwrite: bool = False, threads: int | None = None, task: str = REGRESSION) -> dict:
    """Meta-Neighborhoods' CV error for ``task`` (``METRICS``) for each value of one parameter (same folds,
    ``seeds`` repeats), each value tested against the first with the corrected t-test; writes
    ablation.json/.md/.png (a folder holding any table run's files is refused unless ``overwrite``)."""
    values = ablation_values(param, values)
    shown = [NONE_MEANS[param] if value is None else str(value) for value in values]
    method = functools.partial(meta_neighborhoods_estimator, task=task)
    methods = {f"{param}={label}": with_params(method, **ABLATED, **{param: value})
               for label, value in zip(shown, values)}
    options, used, params = _prepared(table, methods, estimator_params, folds, seed, seeds, max_rows, threads,
                                      task=task)
    folds, seed, seeds = options["folds"], options["seed"], options["seeds"]  # checked, as plain ints
    _check_distinct(param, values, methods, params, used)
    with torch_threads(options["threads"]), claimed(out, TABLE_RUNS, overwrite, TABLE_KIND) as out:
        cv = cross_validate(used, methods, folds=folds, seed=seed, seeds=seeds, params=params, progress=progress,
                            task=task)
        first = next(iter(methods))
        summary = compare(cv["folds"], first, folds, baseline=first)
        results = {
            **_folds_record(table, used, cv, task), "param": param, "values": values,
            "folds": list(cv["folds"].values()),
            **{key: list(summary[key].values()) for key in ("mean", "std", "ratio")},
            "p_value_vs_first": [None, *summary["p_values"].values()], "seconds": list(cv["seconds"].values()),
            "dictionary_sizes": list(cv["dictionary_sizes"].values()),
            **({"log_loss": list(cv["log_loss"].values())} if cv["log_loss"] else {}),
            "config": run_config(table, used, options, params, {**ABLATED, param: "ablated, see values"}),
        }
        write_json(out / ABLATION_JSON, results)
        warn_unconverged(results)
        capped, total = capped_values(param, values, results["dictionary_sizes"]), len(cv["fold_seeds"])
        short, _, axis = METRIC_TEXT[results["metric"]]
        write_text(out / ABLATION_MD, ablation_markdown(results, shown, capped))
        bars = (f"error bars: ±1 std over {total} folds ({seeds} seed{'s' * (seeds != 1)} x {folds} folds), the same "
                f"folds for every value; p: corrected t-test against {shown[0]}"
                + (f"; {CAPS[param].legend}" if any(capped) else ""))
        ablation_figure(out / ABLATION_PNG, param, shown if None in values else values, results["mean"],
                        results["std"], log_x=param in LOG_SCALE_PARAMS, error_bars=bars, ylabel=axis,
                        title=f"{table.name}: Meta-Neighborhoods' {short} against {param}",
                        notes=point_notes(param, results["p_value_vs_first"], capped))
    return results
