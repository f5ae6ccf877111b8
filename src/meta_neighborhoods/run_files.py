"""The files each kind of run writes into its folder, named once: the experiments write them, the commands read
their records back (``--config``), and ``io`` refuses a run of one kind in a folder that holds another kind's."""

from __future__ import annotations

from pathlib import Path

# regress and ablate (experiments/table_runs.py)
RESULTS = RESULTS_JSON, RESULTS_MD, FOLDS_PNG = ("results.json", "results.md", "folds.png")  # a table's
SUMMARY = SUMMARY_JSON, SUMMARY_MD = ("summary.json", "summary.md")  # several tables'
ABLATION = ABLATION_JSON, ABLATION_MD, ABLATION_PNG = ("ablation.json", "ablation.md", "ablation.png")
# fit (experiments/final_model.py); its saved estimator is persistence's
FIT_JSON = "fit.json"
# spiral (experiments/spiral.py)
SPIRAL_PNG, SPIRAL_GIF = "spiral.png", "spiral.gif"
# classify (experiments/classification.py; runs.py reads them back)
CONFIG, SPLIT, METRICS = "config.json", "split.json", "metrics.json"
METRICS_CSV, TENSORBOARD = "metrics.csv", "tensorboard"  # the per-epoch log, and its optional twin
LAST, BEST = "last", "best"  # checkpoint stems
COMPARISON = COMPARISON_JSON, COMPARISON_MD = ("comparison.json", "comparison.md")  # --method all's
# analyze (experiments/analysis.py): into a classify run's folder, or an --out of its own
ANALYSES = ("tsne", "cosine", "retrieval")

TABLE_KIND, FIT_KIND = "regress or ablate", "fit"
# The files that mark a folder as holding a run of each kind: a run of another kind is refused there, --overwrite or
# not (their files would mix, and their same-named records, metrics.json and run.json, replace each other's)
RUN_KINDS = {TABLE_KIND: (RESULTS_JSON, SUMMARY_JSON, ABLATION_JSON), "spiral": (SPIRAL_PNG, SPIRAL_GIF),
             "classify": (SPLIT, f"{LAST}.json", COMPARISON_JSON), FIT_KIND: (FIT_JSON,)}


def analysis_files(name: str) -> tuple[str, str]:
    """The figure and the record that analysis ``name`` (of ``ANALYSES``) writes."""
    return f"{name}.png", f"{name}.json"


def analyses_in(folder: Path) -> list[str]:
    """The files of analyses that ``folder`` holds: whose run they are is for the caller to know."""
    return [file for name in ANALYSES for file in analysis_files(name) if (Path(folder) / file).exists()]
