"""What a run on a table records of itself, so that it can be repeated: the table and the rows it used, the settings
given and the estimator's full parameters, as JSON holds them, and the provenance. Table runs (``table_runs.py``)
and a final model's fit (``final_model.py``) write the same ``config``, which ``--config`` reads back."""

from __future__ import annotations

from .. import __version__
from ..datasets.tables import Table
from ..persistence import to_json
from ..provenance import provenance
from .cross_validation import meta_neighborhoods_estimator


def recorded(settings: dict) -> dict:
    """Settings as JSON records them: numpy values and tuples as ``persistence.to_json`` gives them, a ``head`` or
    ``extractor`` factory by its name (a --config rerun refuses it rather than guess), anything else JSON has no
    type for (a ``torch.device``, a ``RandomState``) as its text. Without this such a setting failed the results'
    writing after every fit had run."""
    def one(value):
        if value is None or isinstance(value, (str, bool, int, float, list, dict)):
            return value
        if callable(value):
            return f"factory {getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
        return str(value)

    return {name: one(value) for name, value in to_json(settings).items()}


def estimator_config(params: dict, seed: int, varied: dict) -> dict:
    """The Meta-Neighborhoods estimator's full parameters (the classifier has the same); ``varied`` says which ones
    the run set elsewhere."""
    return {**recorded(meta_neighborhoods_estimator(seed=seed, n_train=0, params=params).get_params()), **varied}


def run_config(table: Table, used: Table, options: dict, params: dict, varied: dict) -> dict:
    """What a run needs to be repeated: its ``options`` (the protocol, the seed), the table and the rows it used, the
    settings given (``params``) and the estimator's full parameters."""
    csv = {key: value for key, value in (("target", table.target), ("encoding", table.encoding),
                                         ("separator", table.separator), ("decimal", table.decimal),
                                         ("ignore_columns", list(table.ignored) or None)) if value is not None}
    return {**options, "table": table.description, **csv, "table_sha256": table.sha256(), "rows_used": len(used.y),
            "rows_in_table": len(table.y), "estimator_params": recorded(params),
            "version": __version__, "estimator": estimator_config(params, options["seed"], varied),
            "provenance": provenance()}
