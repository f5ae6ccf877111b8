"""``meta-neighborhoods fit`` and ``predict``: a final model fit on a whole table, saved, and used on another file."""

import json

import numpy as np
import pandas as pd
import pytest

from meta_neighborhoods import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor, io
from meta_neighborhoods.cli import main

SMALL = ["--max-epochs", "3", "--dictionary-size", "16", "--hidden-layer-sizes", "8", "--quiet"]
SETTINGS = {"max_epochs": 3, "dictionary_size": 16, "hidden_layer_sizes": (8,)}


def _table(rows: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame["y"] = np.sin(frame.a) + frame.b ** 2
    frame["label"] = (frame.y > frame.y.median()).astype(int)
    return frame


@pytest.fixture
def files(tmp_path):
    """A training file (target y), a file to predict in another column order with an extra column, and the fit."""
    table, new = _table(), _table(seed=1)
    table.drop(columns="label").to_csv(tmp_path / "train.csv", index=False)
    new.assign(id=[f"row {i}" for i in range(len(new))])[["id", "label", "c", "y", "a", "b"]].to_csv(
        tmp_path / "new.csv", index=False)  # a column of text the model does not take is left out
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "y", "--out",
                 str(tmp_path / "model"), *SMALL]) == 0
    return tmp_path, table, new


def test_fit_saves_the_estimator_that_python_fits_and_predict_writes_its_predictions(files, capsys):
    tmp_path, table, new = files
    expected = MetaNeighborhoodsRegressor(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]], table.y)
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "p.csv"), "--target", "y", "--quiet"]) == 0
    written = pd.read_csv(tmp_path / "p.csv")
    predicted = expected.predict(new[["a", "b", "c"]])
    assert list(written.columns) == ["prediction"] and len(written) == len(new)
    np.testing.assert_array_equal(written.prediction, predicted)  # columns by name, in any order; every digit
    mse = float(np.mean((predicted - new.y) ** 2))
    assert f"mse against --target y: {mse:.6g}" in capsys.readouterr().out
    for path in ("model/model", "model"):  # the checkpoint, or the folder fit wrote
        loaded = MetaNeighborhoodsRegressor.load(tmp_path / path)
        np.testing.assert_array_equal(loaded.predict(new[["a", "b", "c"]]), predicted)


def test_a_model_fitted_without_names_takes_the_columns_in_order_and_says_so(files, capsys):
    """As scikit-learn warns of named columns given to an estimator fitted on an array: a trial's file, in another
    order than the registered table its model was fitted on, was predicted wrong without a word."""
    tmp_path, table, _ = files
    MetaNeighborhoodsRegressor(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]].to_numpy(), table.y).save(
        tmp_path / "array")
    table[["c", "b", "a"]].to_csv(tmp_path / "reordered.csv", index=False)
    assert main(["predict", "--model", str(tmp_path / "array"), "--data-file", str(tmp_path / "reordered.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 0
    said = capsys.readouterr().err
    assert "was fitted without column names" in said and "3 columns of" in said and "whatever its header" in said


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a machine without CUDA refuses --device cuda")
def test_predict_runs_on_the_device_asked_for_and_refuses_one_it_lacks(files, capsys):
    tmp_path, _, _ = files
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / "p.csv"), "--device", "cuda", "--quiet"]) == 1
    assert "this machine has 0 CUDA GPU(s)" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()


@pytest.mark.filterwarnings("default::sklearn.exceptions.ConvergenceWarning")  # the suite ignores them
def test_the_estimator_s_warnings_name_the_command_s_options_not_python_parameters(tmp_path, capsys):
    _table().drop(columns="label").to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "y", "--out", str(tmp_path / "m"),
                 *SMALL[:-1]]) == 0
    said = capsys.readouterr().err
    assert "stopped at --max-epochs 3 before early stopping ended it" in said
    assert "not followed by --n-iter-no-change 200 epochs" in said and "raise --max-epochs, or lower " \
        "--n-iter-no-change," in said and "max_epochs" not in said
    record = json.loads((tmp_path / "m" / "fit.json").read_text())
    assert "stopped at max_epochs=3" in json.dumps(record)  # the record keeps the estimator's words
    table = _species()
    table.loc[0, "species"] = "head"  # a class of a single row, warned of in the class's own name
    table.to_csv(tmp_path / "classes.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "classes.csv"), "--target", "species", "--task",
                 "classification", "--out", str(tmp_path / "c"), *SMALL[:-1]]) == 0
    said = capsys.readouterr().err
    assert "'head'" in said and "--head" not in said and "--max-epochs 3" in said


def test_a_fit_without_validation_rows_says_its_loss_is_the_training_loss(tmp_path, capsys):
    _table(rows=8).drop(columns="label").to_csv(tmp_path / "tiny.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "tiny.csv"), "--target", "y", "--out", str(tmp_path / "m"),
                 *SMALL[:-1], "--dictionary-size", "4"]) == 0  # not --quiet: the estimator shows its progress
    said = capsys.readouterr()
    assert "best training loss" in said.out
    assert said.err.count("meta-neighborhoods fit: warning: 8 training rows leave 1 for validation") == 1
    assert json.loads((tmp_path / "m" / "fit.json").read_text())["training"]["loss"] == "training"
    assert MetaNeighborhoodsRegressor.load(tmp_path / "m").verbose == 0  # the command's progress is not the model's


def test_the_record_of_a_fit_reruns_it_with_config(files, capsys):
    tmp_path, table, new = files
    record = json.loads((tmp_path / "model" / "fit.json").read_text())
    assert record["task"] == "regression" and record["features"] == ["a", "b", "c"] and record["n"] == 80
    assert record["training"]["epochs"] == 3 and record["training"]["loss"] == "validation"
    assert record["training"]["measure"] == "mean squared error on the standardised target"  # not the target's units
    losses = record["training"]["validation_losses"]  # what the fallback chose by, each network's best
    assert set(losses) == {"meta_neighborhoods", "vanilla"} and losses[record["training"]["kept"]] == min(
        losses.values()) == record["training"]["best_loss"]
    assert record["config"]["estimator_params"]["dictionary_size"] == 16
    assert record["config"]["table_sha256"] and record["config"]["provenance"]["command"]
    assert any("max_epochs=3" in warning for warning in record["warnings"])  # cut short: said and kept
    assert main(["fit", "--config", str(tmp_path / "model" / "fit.json"), "--out", str(tmp_path / "again")]) == 2
    assert "is the record of a run on a CSV file, whose path a rerun never takes from a record (it describes the " \
        "table only): give the file again with --data-file" in capsys.readouterr().err
    assert main(["fit", "--config", str(tmp_path / "model" / "fit.json"), "--data-file", str(tmp_path / "train.csv"),
                 "--out", str(tmp_path / "again"), "--quiet"]) == 0
    first, second = (MetaNeighborhoodsRegressor.load(tmp_path / name / "model") for name in ("model", "again"))
    np.testing.assert_array_equal(first.predict(new[["a", "b", "c"]]), second.predict(new[["a", "b", "c"]]))


def test_a_regress_record_gives_fit_its_settings_and_a_search_is_refused(files):
    tmp_path, _, _ = files
    record = json.loads((tmp_path / "model" / "fit.json").read_text())
    config = {key: value for key, value in record["config"].items() if key != "task"}
    regress = {"dataset": "train", "config": {**config, "folds": 5, "seeds": 3, "search": False, "max_rows": 40}}
    (tmp_path / "results.json").write_text(json.dumps(regress))
    assert main(["fit", "--config", str(tmp_path / "results.json"), "--data-file", str(tmp_path / "train.csv"),
                 "--out", str(tmp_path / "from_regress"), "--quiet"]) == 0
    again = json.loads((tmp_path / "from_regress" / "fit.json").read_text())
    assert again["config"]["estimator"] == record["config"]["estimator"]  # every setting, given or by default
    assert again["n"] == 80  # the final model takes every row, whatever rows the cross-validation ran on
    (tmp_path / "results.json").write_text(json.dumps({**regress, "config": {**regress["config"], "search": True}}))
    assert main(["fit", "--config", str(tmp_path / "results.json"), "--data-file", str(tmp_path / "train.csv"),
                 "--out", str(tmp_path / "searched"), "--quiet"]) == 2
    assert not (tmp_path / "searched").exists()


def test_a_fit_is_replaced_only_when_asked_and_leaves_no_stale_tensors(files, capsys):
    tmp_path, _, _ = files
    argv = ["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "y", "--out", str(tmp_path / "model"),
            *SMALL, "--seed", "1"]
    before = sorted(path.name for path in (tmp_path / "model").iterdir())
    assert main(argv) == 1 and "already holds a run" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "model").iterdir()) == before
    assert main([*argv, "--overwrite"]) == 0
    assert len(list((tmp_path / "model").glob("model.*.safetensors"))) == 1
    assert json.loads((tmp_path / "model" / "fit.json").read_text())["config"]["seed"] == 1


def test_fit_never_replaces_a_model_it_did_not_write(tmp_path, capsys):
    _table().drop(columns="label").to_csv(tmp_path / "train.csv", index=False)
    argv = ["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "y", *SMALL]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "model.json").write_text("{}")
    assert main([*argv, "--out", str(tmp_path / "mine"), "--overwrite"]) == 1
    assert "beside no record of a fit run" in capsys.readouterr().err
    assert (tmp_path / "mine" / "model.json").read_text() == "{}"
    for flags in ([], ["--overwrite"]):  # a tensor file of the model's name, beside no fit: someone else's
        folder = tmp_path / f"tensors{len(flags)}"
        folder.mkdir()
        (folder / "model.0123abcd.safetensors").write_text("mine")
        assert main([*argv, "--out", str(folder), *flags]) == 0
        assert (folder / "model.0123abcd.safetensors").read_text() == "mine"


def test_a_classifier_fit_predicts_labels_and_probabilities(tmp_path, capsys):
    table = _table()
    table.drop(columns="y").to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "label", "--task", "classification",
                 "--out", str(tmp_path / "model"), *SMALL]) == 0
    assert main(["predict", "--model", str(tmp_path / "model" / "model.json"), "--data-file",
                 str(tmp_path / "train.csv"), "--out", str(tmp_path / "p.csv"), "--probabilities", "--target",
                 "label", "--quiet"]) == 0
    written = pd.read_csv(tmp_path / "p.csv")
    expected = MetaNeighborhoodsClassifier(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]], table.label)
    assert list(written.columns) == ["prediction", "probability_0", "probability_1"]
    np.testing.assert_array_equal(written.prediction, expected.predict(table[["a", "b", "c"]]))
    np.testing.assert_allclose(written[["probability_0", "probability_1"]], expected.predict_proba(table[["a", "b",
                                                                                                         "c"]]),
                               rtol=1e-6)
    accuracy = float(np.mean(written.prediction == table.label))
    assert f"accuracy against --target label: {accuracy:.6g}" in capsys.readouterr().out


@pytest.mark.parametrize("labels, message", [
    (None, "classification needs class labels"),  # the regression target y
    ([0, 2**53 + 1, 2**53], "from 2**53 on"),  # as float64 one number: they would be one class
])
def test_a_target_that_holds_no_class_labels_is_refused_before_any_folder(tmp_path, capsys, labels, message):
    table = _table()
    if labels is not None:
        table["y"] = np.resize(labels, len(table))
    table.to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "y", "--task", "classification",
                 "--out", str(tmp_path / "model"), *SMALL]) == 1  # the data's problem, not the command line's
    error = capsys.readouterr().err
    assert message in error and "train.csv" in error and not (tmp_path / "model").exists()


@pytest.mark.parametrize("change, message", [
    (lambda frame: frame.drop(columns="b"), "has no column named 'b', a feature of the model"),
    (lambda frame: frame.assign(a=[np.nan, *frame.a[1:]]), "NaN/inf value(s) (first: feature 'a', file line 2"),
    (lambda frame: frame.assign(a=1e200), "whose squares overflow"),
])
def test_predict_names_what_is_wrong_with_the_file(files, capsys, change, message):
    tmp_path, _, new = files
    change(new).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "bad.csv"), "--out",
                 str(tmp_path / "p.csv"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert message in error and "bad.csv" in error and not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("out, flags, message", [
    ("p.csv", [], "already exists: replace it with --overwrite"),
    ("new.csv", ["--overwrite"], "is one of the files read"),
    ("model/model.json", ["--overwrite"], "is one of the files read"),
    ("model/fit.json", ["--overwrite"], "is one of the files read"),
    ("model/.lock", ["--overwrite"], "is one of the files read"),
    ("model/model.deadbeef.safetensors", [], "is named as the saved model's own files, which a fit into its folder "
                                             "removes"),  # a file the model's next save would remove
    ("model/.model.json.x.tmp", [], "is named as the saved model's own files"),
    ("model", ["--overwrite"], "is not a regular file"),
    ("elsewhere/", [], "names a folder"),
])
@pytest.mark.parametrize("model", ["model", "model/model.json", "model/model"])
def test_predict_replaces_no_file_it_reads_and_no_other_unless_asked(files, capsys, model, out, flags, message):
    tmp_path, _, _ = files
    (tmp_path / "p.csv").write_text("mine\n")
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert main(["predict", "--model", str(tmp_path / model), "--data-file", str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / out) + "/" * out.endswith("/"), "--quiet", *flags]) == 1
    assert message in capsys.readouterr().err
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_predict_reads_and_writes_decimal_commas(files, capsys):
    tmp_path, _, new = files
    new.to_csv(tmp_path / "europe.csv", sep=";", decimal=",", index=False)
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / "point.csv"), "--quiet"]) == 0
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "europe.csv"), "--out",
                 str(tmp_path / "comma.csv"), "--separator", "semicolon", "--decimal", "comma", "--quiet"]) == 0
    point = pd.read_csv(tmp_path / "point.csv").prediction
    assert "," in (tmp_path / "comma.csv").read_text().splitlines()[1]
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "comma.csv", sep=";", decimal=",").prediction, point)
    capsys.readouterr()
    assert main(["fit", "--data-file", str(tmp_path / "europe.csv"), "--target", "y", "--separator", "semicolon",
                 "--decimal", "comma", "--ignore-columns", "label", "--out", str(tmp_path / "eu"),
                 *SMALL[:-1]]) == 0  # its hint reads a file like the table's so
    assert f"predict --model {tmp_path / 'eu'} --data-file FILE --out predictions.csv --separator semicolon " \
        "--decimal comma\n" in capsys.readouterr().err


def test_a_model_saved_without_names_takes_the_columns_in_order_and_another_separator(tmp_path, capsys):
    table = _table()
    estimator = MetaNeighborhoodsRegressor(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]].to_numpy(), table.y)
    estimator.save(tmp_path / "saved")
    table[["a", "b", "c", "y"]].to_csv(tmp_path / "rows.csv", index=False, sep=";")
    assert main(["predict", "--model", str(tmp_path / "saved"), "--data-file", str(tmp_path / "rows.csv"), "--out",
                 str(tmp_path / "p.csv"), "--separator", "semicolon", "--target", "y", "--quiet"]) == 0
    written = pd.read_csv(tmp_path / "p.csv", sep=";")
    np.testing.assert_allclose(written.prediction, estimator.predict(table[["a", "b", "c"]].to_numpy()), rtol=1e-7)
    assert main(["predict", "--model", str(tmp_path / "saved"), "--data-file", str(tmp_path / "rows.csv"), "--out",
                 str(tmp_path / "q.csv"), "--separator", "semicolon", "--quiet"]) == 1
    assert "has 4 columns, the model takes 3 features" in capsys.readouterr().err
    table.assign(id=[f"r{i}" for i in range(len(table))])[["id", "a", "b", "c"]].to_csv(tmp_path / "ids.csv",
                                                                                       index=False, sep=";")
    assert main(["predict", "--model", str(tmp_path / "saved"), "--data-file", str(tmp_path / "ids.csv"), "--out",
                 str(tmp_path / "r.csv"), "--separator", "semicolon", "--keep-columns", "id", "--quiet"]) == 0
    kept = pd.read_csv(tmp_path / "r.csv", sep=";")  # the kept column is no feature of a model without names
    assert list(kept.id) == [f"r{i}" for i in range(len(table))]
    np.testing.assert_array_equal(kept.prediction, written.prediction)
    assert main(["predict", "--model", str(tmp_path / "saved"), "--data-file", str(tmp_path / "rows.csv"), "--out",
                 str(tmp_path / "q.csv"), "--separator", "semicolon", "--target", "y", "--probabilities"]) == 2
    assert "holds a regressor: it has no class probabilities" in capsys.readouterr().err


def test_predict_scores_one_target_only_and_writes_nothing_it_cannot_score(tmp_path, capsys):
    table = _table()
    both = MetaNeighborhoodsRegressor(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]], table[["y", "label"]])
    both.save(tmp_path / "both")
    table.to_csv(tmp_path / "rows.csv", index=False)
    argv = ["predict", "--model", str(tmp_path / "both"), "--data-file", str(tmp_path / "rows.csv"), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "p.csv")]) == 0
    written = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(written[["prediction_0", "prediction_1"]], both.predict(table[["a", "b", "c"]]))
    assert main([*argv, "--out", str(tmp_path / "q.csv"), "--target", "y"]) == 2
    assert "predicts 2 targets" in capsys.readouterr().err and not (tmp_path / "q.csv").exists()


def test_predict_refuses_a_model_that_is_not_there_or_not_an_estimator(tmp_path, capsys):
    _table().to_csv(tmp_path / "rows.csv", index=False)
    argv = ["--data-file", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "p.csv"), "--quiet"]
    assert main(["predict", "--model", str(tmp_path / "nothing"), *argv]) == 1
    assert "is neither a fit's folder nor a saved model" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"format": "meta-neighborhoods-checkpoint", "version": 1}))
    assert main(["predict", "--model", str(tmp_path / "other.json"), *argv]) == 1
    assert "other" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()
    (tmp_path / "listed.json").write_text(json.dumps({"format": "meta-neighborhoods-checkpoint", "version": 1,
                                                      "tensors": "listed.0123abcd.safetensors", "sha256": "0" * 64,
                                                      "estimator": ["MetaNeighborhoodsRegressor"]}))
    assert main(["predict", "--model", str(tmp_path / "listed"), *argv]) == 1
    assert "holds no estimator of this package" in capsys.readouterr().err
    (tmp_path / "writing").mkdir()
    with io.lock(tmp_path / "writing"):  # a fit still writing its folder: named, not a folder without a model
        assert main(["predict", "--model", str(tmp_path / "writing"), *argv]) == 1
    assert "writing is being written by process" in capsys.readouterr().err


def test_a_saved_model_naming_a_feature_twice_is_refused(tmp_path):
    from meta_neighborhoods import CheckpointError

    table = _table()
    MetaNeighborhoodsRegressor(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]], table.y).save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m.json").read_text())
    text = json.dumps(manifest).replace('["a", "b", "c"]', '["a", "a", "c"]')
    assert text != json.dumps(manifest)
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(CheckpointError, match="feature_names_in_ should name each of the 3 features once"):
        MetaNeighborhoodsRegressor.load(tmp_path / "m")


def test_a_column_left_out_of_the_fit_is_recorded_and_left_out_again(tmp_path, capsys):
    table = _table().drop(columns="label")
    table.insert(0, "id", [f"house {i}" for i in range(len(table))])
    table.to_csv(tmp_path / "train.csv", index=False)
    argv = ["fit", "--data-file", str(tmp_path / "train.csv"), *SMALL]
    assert main([*argv, "--target", "y", "--out", str(tmp_path / "m")]) == 1
    assert "column 'id'" in capsys.readouterr().err  # text: refused unless left out
    assert main([*argv, "--target", "y", "--ignore-columns", "id", "--out", str(tmp_path / "m")]) == 0
    record = json.loads((tmp_path / "m" / "fit.json").read_text())
    assert record["features"] == ["a", "b", "c"] and record["config"]["ignore_columns"] == ["id"]
    assert main(["fit", "--config", str(tmp_path / "m" / "fit.json"), "--data-file", str(tmp_path / "train.csv"),
                 "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "fit.json").read_text())["config"]["table_sha256"] == \
        record["config"]["table_sha256"]
    assert main(["fit", "--dataset", "gom", "--ignore-columns", "id", "--out", str(tmp_path / "g"), "--quiet"]) == 2
    assert "--ignore-columns only applies to --data-file" in capsys.readouterr().err
    table.drop(columns="id").to_csv(tmp_path / "plain.csv", index=False)  # the record's column is not in this file
    rerun = ["fit", "--config", str(tmp_path / "m" / "fit.json"), "--data-file", str(tmp_path / "plain.csv"),
             "--out", str(tmp_path / "plain")]
    assert main(rerun) == 1
    assert "ignore_columns ['id'] from " in capsys.readouterr().err  # the record's, named
    assert main([*rerun, "--ignore-columns", "none"]) == 0  # 'none' over the record's
    assert json.loads((tmp_path / "plain" / "fit.json").read_text())["config"]["table_sha256"] == \
        record["config"]["table_sha256"]


def test_a_fit_folder_is_read_whatever_file_lies_beside_it(files, capsys):
    tmp_path, _, _ = files
    (tmp_path / "model.json").write_text("{}")  # the user's own file, named as the folder
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / "p.csv"), "--quiet"]) == 0


def test_load_reads_a_checkpoint_beside_a_folder_of_its_name(tmp_path):
    table = _table()
    estimator = MetaNeighborhoodsRegressor(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]], table.y)
    (tmp_path / "results").mkdir()
    estimator.save(tmp_path / "results")
    loaded = MetaNeighborhoodsRegressor.load(tmp_path / "results")  # results.json, not results/model.json
    np.testing.assert_array_equal(loaded.predict(table[["a", "b", "c"]]), estimator.predict(table[["a", "b", "c"]]))


def test_predict_carries_columns_as_written_beside_its_predictions(files, capsys):
    tmp_path, table, new = files
    rows = new[["a", "b", "c"]].head(3).copy()
    codes = ["007", "NA", '"x, y"']  # as written, never read as a number, a missing value or two fields
    lines = ["code,a,b,c",
             *(",".join([code, *map(repr, map(float, row))]) for code, row in zip(codes, rows.to_numpy()))]
    (tmp_path / "codes.csv").write_text("\n".join([*lines[:2], "", *lines[2:]]) + "\n")  # a blank line: skipped
    argv = ["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "codes.csv"), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "p.csv"), "--keep-columns", "code"]) == 0
    written = pd.read_csv(tmp_path / "p.csv", dtype={"code": str}, keep_default_na=False)
    assert list(written.columns) == ["code", "prediction"] and list(written.code) == ["007", "NA", "x, y"]
    expected = MetaNeighborhoodsRegressor.load(tmp_path / "model").predict(rows)
    np.testing.assert_array_equal(written.prediction, expected)
    assert main([*argv, "--out", str(tmp_path / "q.csv"), "--keep-columns", "id"]) == 1
    assert "has no column named 'id'" in capsys.readouterr().err and not (tmp_path / "q.csv").exists()
    assert main([*argv, "--out", str(tmp_path / "q.csv"), "--keep-columns", "prediction"]) == 2
    assert "is the name of a column of predictions" in capsys.readouterr().err


def test_fit_final_passes_the_fits_warnings_on_to_its_caller_once_each(tmp_path):
    from meta_neighborhoods.datasets.csv_tables import load_csv_table
    from meta_neighborhoods.experiments.final_model import fit_final

    _table().drop(columns="label").to_csv(tmp_path / "train.csv", index=False)
    with pytest.warns(Warning) as caught:
        record = fit_final(load_csv_table(tmp_path / "train.csv", "y"), tmp_path / "m", progress=False,
                           estimator_params=SETTINGS)
    messages = [str(warning.message) for warning in caught]
    assert messages == record["warnings"] and any("max_epochs=3" in message for message in messages)


def _species(rows: int = 90) -> pd.DataFrame:
    """A table whose classes are named by text, written with blanks around some labels."""
    table = _table(rows).drop(columns=["y", "label"])
    table["species"] = np.where(table.a > 0.3, " setosa", np.where(table.b > 0, "versicolor ", "virginica"))
    return table


def test_class_labels_of_text_are_fit_predicted_scored_and_rerun(tmp_path, capsys):
    table = _species()
    table.to_csv(tmp_path / "train.csv", index=False)
    fit = ["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "species", "--task", "classification"]
    assert main([*fit, "--out", str(tmp_path / "model"), *SMALL]) == 0
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "train.csv"), "--out",
                 str(tmp_path / "p.csv"), "--probabilities", "--target", "species", "--quiet"]) == 0
    labels = table.species.str.strip()
    expected = MetaNeighborhoodsClassifier(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]], labels)
    written = pd.read_csv(tmp_path / "p.csv")
    classes = ["setosa", "versicolor", "virginica"]
    assert list(written.columns) == ["prediction", *(f"probability_{label}" for label in classes)]
    np.testing.assert_array_equal(written.prediction, expected.predict(table[["a", "b", "c"]]))
    assert f"accuracy against --target species: {np.mean(written.prediction == labels):.6g}" in capsys.readouterr().out
    record = json.loads((tmp_path / "model" / "fit.json").read_text())
    assert record["classes"] == classes and MetaNeighborhoodsClassifier.load(tmp_path / "model").classes_.tolist() == \
        classes
    assert main(["fit", "--config", str(tmp_path / "model" / "fit.json"), "--data-file", str(tmp_path / "train.csv"),
                 "--out", str(tmp_path / "again"), "--quiet"]) == 0  # the recorded digest holds the labels too
    again = MetaNeighborhoodsClassifier.load(tmp_path / "again")
    np.testing.assert_array_equal(again.predict_proba(table[["a", "b", "c"]]),
                                  expected.predict_proba(table[["a", "b", "c"]]))
    table.assign(species=table.species.replace("virginica", "virginia")).to_csv(tmp_path / "renamed.csv", index=False)
    assert main(["fit", "--config", str(tmp_path / "model" / "fit.json"), "--data-file", str(tmp_path / "renamed.csv"),
                 "--out", str(tmp_path / "renamed"), "--quiet"]) == 2  # renamed classes are another table
    assert "is not the table of digest" in capsys.readouterr().err


def test_integers_written_plainly_are_numbers_and_other_labels_stay_as_written(tmp_path):
    from meta_neighborhoods.datasets.csv_tables import load_csv_table

    table = _table().drop(columns="y")
    table.to_csv(tmp_path / "train.csv", index=False)
    numbers, labels = (load_csv_table(tmp_path / "train.csv", "label", labels=flag) for flag in (False, True))
    assert labels.classes is None and labels.sha256() == numbers.sha256()  # a record of before text labels reruns
    for written, classes in ((["007", "7", "010"], ("007", "010", "7")), (["1.0", "0.0"], ("0.0", "1.0")),
                             ([True, False], ("False", "True")), (["1e3", "1000"], ("1000", "1e3"))):
        table.assign(label=np.resize(written, len(table))).to_csv(tmp_path / "written.csv", index=False)
        assert load_csv_table(tmp_path / "written.csv", "label", labels=True).classes == classes


def test_every_field_the_numbers_read_as_missing_is_a_missing_label():
    from pandas._libs.parsers import STR_NA_VALUES  # read_csv's own, which read_numeric reads as missing too

    from meta_neighborhoods.datasets.text_tables import MISSING, _NA_MARKERS, text_numbers

    assert MISSING == STR_NA_VALUES | set(_NA_MARKERS)
    np.testing.assert_array_equal(text_numbers(np.array(["1", " 2 ", "True", "false", "?", "x", "1e3"], dtype=object)),
                                  [1, 2, 1, 0, np.nan, np.nan, 1000])


def test_a_target_of_text_is_said_to_be_class_labels_where_it_may_be(tmp_path, capsys):
    _species().to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "species", "--out",
                 str(tmp_path / "model"), *SMALL]) == 1
    assert "is not numeric" in (error := capsys.readouterr().err) and "--task classification" in error
    _species().assign(a="text").to_csv(tmp_path / "feature.csv", index=False)  # a feature's text: no class labels
    assert main(["fit", "--data-file", str(tmp_path / "feature.csv"), "--target", "species", "--task",
                 "classification", "--out", str(tmp_path / "model"), *SMALL]) == 1
    assert "column 'a' of" in (error := capsys.readouterr().err) and "--task" not in error


def test_a_target_that_holds_no_class_of_the_model_is_not_scored_zero(tmp_path, capsys):
    table = _species()
    table.to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "species", "--task",
                 "classification", "--out", str(tmp_path / "model"), *SMALL]) == 0
    table.assign(species=table.species.str.strip().str.upper()).to_csv(tmp_path / "upper.csv", index=False)
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "upper.csv"), "--out",
                 str(tmp_path / "p.csv"), "--target", "species"]) == 0
    first, said = table.species.str.strip().str.upper()[0], capsys.readouterr()
    assert f"--target species holds no class of the model ({first!r}, ...; its classes: setosa, versicolor, " \
        "virginica), so nothing is scored: is it the column of the labels" in said.err
    assert "accuracy" not in said.out and len(pd.read_csv(tmp_path / "p.csv")) == len(table)


def test_a_model_of_boolean_classes_scores_labels_written_true_and_false(tmp_path, capsys):
    table = _table().drop(columns="y")
    MetaNeighborhoodsClassifier(random_state=0, **SETTINGS).fit(table[["a", "b", "c"]], table.label.astype(bool)).save(
        tmp_path / "booleans")
    table.assign(label=table.label.astype(bool)).to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", "--model", str(tmp_path / "booleans"), "--data-file", str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / "p.csv"), "--target", "label", "--quiet"]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv").prediction
    said = capsys.readouterr()
    assert f"accuracy against --target label: {np.mean(predicted == table.label.astype(bool)):.6g}" in said.out
    assert "never saw" not in said.err


def test_classes_that_the_rows_drawn_lack_are_warned_of(tmp_path, capsys):
    _species().assign(species=["rare", *["common", "usual"] * 44, "common"]).to_csv(tmp_path / "train.csv",
                                                                                   index=False)
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "species", "--task",
                 "classification", "--max-rows", "20", "--out", str(tmp_path / "model"), *SMALL]) == 0
    assert "hold 2 of the table's 3 classes: the model never predicts 'rare'" in capsys.readouterr().err
    assert any("the model never predicts 'rare'" in warning  # kept with the fit's own
               for warning in json.loads((tmp_path / "model" / "fit.json").read_text())["warnings"])


@pytest.mark.parametrize("species, message", [
    (["setosa", "NA"], "missing class label(s) (first 'NA', on file line 3 of"),
    (["setosa", ""], "missing class label(s) (first '', on file line 3 of"),
    (["setosa", "?"], "missing class label(s) (first '?', on file line 3 of"),  # as the numbers read it
    (["1", "?"], "missing class label(s) (first '?', on file line 3 of"),
    (["setosa"], "holds one class ('setosa'): there is nothing to predict"),
])
def test_missing_labels_and_a_single_class_are_refused_before_any_folder(tmp_path, capsys, species, message):
    _species().assign(species=np.resize(species, 90)).to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "species", "--task",
                 "classification", "--out", str(tmp_path / "model"), *SMALL]) == 1
    error = capsys.readouterr().err
    assert message in error and "train.csv" in error and not (tmp_path / "model").exists()


def test_labels_are_scored_as_the_model_names_its_classes(tmp_path, capsys):
    table = _table().drop(columns="y")
    text = table.assign(label=np.resize(["1", "2", "x"], len(table)))  # classes of text, some writing numbers
    text.to_csv(tmp_path / "text.csv", index=False)
    table.to_csv(tmp_path / "numbers.csv", index=False)
    for name in ("text", "numbers"):
        assert main(["fit", "--data-file", str(tmp_path / f"{name}.csv"), "--target", "label", "--task",
                     "classification", "--out", str(tmp_path / name), *SMALL]) == 0
    table.assign(label=table.label + 1).to_csv(tmp_path / "ones.csv", index=False)  # 1 and 2 only: numbers
    table.assign(label=table.label.astype(float)).to_csv(tmp_path / "floats.csv", index=False)  # 0.0 and 1.0
    for model, data in (("text", "ones"), ("numbers", "floats")):
        assert main(["predict", "--model", str(tmp_path / model), "--data-file", str(tmp_path / f"{data}.csv"),
                     "--out", str(tmp_path / f"{model}_p.csv"), "--target", "label", "--quiet"]) == 0
        predicted = pd.read_csv(tmp_path / f"{model}_p.csv", dtype=str).prediction
        truth = pd.read_csv(tmp_path / f"{data}.csv", dtype=str).label.replace({"0.0": "0", "1.0": "1"})
        said = capsys.readouterr()
        assert f"accuracy against --target label: {np.mean(predicted == truth):.6g}" in said.out
        assert "never saw" not in said.err


def test_a_target_that_cannot_be_scored_is_named_before_anything_is_written(files, capsys):
    tmp_path, _, new = files
    new.assign(y=[*new.y[:2], np.inf, *new.y[3:]]).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "bad.csv"), "--out",
                 str(tmp_path / "p.csv"), "--target", "y", "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "the target has 1 NaN/inf value(s) (first on file line 4 of" in error and "bad.csv" in error
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_predict_scores_the_rows_that_hold_a_target_and_predicts_every_row(tmp_path, capsys, task):
    table = _species() if task == "classification" else _table().drop(columns="label")
    target = "species" if task == "classification" else "y"
    table.to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", target, "--task", task, "--out",
                 str(tmp_path / "model"), *SMALL]) == 0
    truth = table[target].astype(str).str.strip() if task == "classification" else table[target]
    new = table.astype({target: object})
    new.loc[[2, 5, 6], target] = ["", "NA", "?"]  # new rows beside labelled ones
    new.to_csv(tmp_path / "new.csv", index=False)
    predict = ["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "new.csv"), "--target",
               target]
    assert main([*predict, "--out", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv").prediction.to_numpy()
    assert len(predicted) == len(table)
    kept = np.setdiff1d(np.arange(len(table)), [2, 5, 6])
    score = np.mean(predicted[kept] == truth[kept]) if task == "classification" else \
        np.mean((predicted[kept] - truth[kept]) ** 2)
    said = capsys.readouterr()
    assert f"against --target {target} on the {len(kept)} rows that hold one: {score:.6g}" in said.out
    assert f"--target {target} has no value on 3 of {len(table)} rows: the others are scored" in said.err
    new.assign(**{target: ""}).to_csv(tmp_path / "none.csv", index=False)
    assert main([*predict[:4], str(tmp_path / "none.csv"), *predict[5:], "--out", str(tmp_path / "q.csv")]) == 0
    said = capsys.readouterr()
    assert "against" not in said.out and "nothing is scored" in said.err and (tmp_path / "q.csv").exists()


def test_a_model_asked_for_by_a_path_that_holds_none_is_told_where_one_is(files, capsys, monkeypatch):
    tmp_path, _, _ = files
    (tmp_path / "run").mkdir()  # as regress leaves it: no model
    for model, message in (("model/fit.json", "is the record of a fit: give its folder"),
                           ("run", "is a folder that holds no saved model (model.json)")):
        assert main(["predict", "--model", str(tmp_path / model), "--data-file", str(tmp_path / "new.csv"), "--out",
                     str(tmp_path / "p.csv"), "--quiet"]) == 1
        assert message in capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "model")
    assert MetaNeighborhoodsRegressor.load(".").n_features_in_ == 3  # the folder fit wrote, named as "."
    monkeypatch.chdir(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="is a folder that holds no saved model"):
        MetaNeighborhoodsRegressor.load(".")


def test_a_target_of_many_classes_of_a_row_or_two_is_warned_of(tmp_path, capsys):
    table = _table().drop(columns="y")
    table.assign(label=np.arange(len(table)) // 2).to_csv(tmp_path / "train.csv", index=False)  # 40 classes of 2
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "label", "--task", "classification",
                 "--out", str(tmp_path / "model"), *SMALL]) == 0
    assert "40 classes among 80 rows, most of a row or two" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_export_writes_a_fits_estimator_as_a_graph_that_answers_as_it_does(tmp_path, capsys, task):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime: pip install '.[export]'")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript: pip install '.[export]'")
    table = _species() if task == "classification" else _table().drop(columns="label")
    table.to_csv(tmp_path / "train.csv", index=False)
    target = "species" if task == "classification" else "y"
    assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", target, "--task", task, "--out",
                 str(tmp_path / "model"), *SMALL]) == 0
    before = {path: path.read_bytes() for path in (tmp_path / "model").iterdir()}
    capsys.readouterr()
    for out in ("model/model.json", "model/fit.json"):
        assert main(["export", "--run", str(tmp_path / "model"), "--out", str(tmp_path / out), "--overwrite"]) == 1
        assert "is one of the files read" in (error := capsys.readouterr().err) and len(error.splitlines()) == 1
    assert main(["export", "--run", str(tmp_path / "model"), "--out", str(tmp_path / "model.onnx"), "--quiet"]) == 0
    said = capsys.readouterr()
    answers = "the classifier's class probabilities" if task == "classification" else "the regressor's predictions"
    assert f"output 'output' = {answers}" in said.out and "max |onnxruntime - estimator|" in said.out
    assert said.err == ""
    assert main(["export", "--run", str(tmp_path / "model"), "--out", str(tmp_path / "model.pt"), "--quiet"]) == 0
    assert f"{tmp_path / 'model.pt'}: an ONNX graph is written there, whatever its name says" in \
        capsys.readouterr().err
    assert {path: path.read_bytes() for path in (tmp_path / "model").iterdir()} == before
    estimator = (MetaNeighborhoodsClassifier if task == "classification" else MetaNeighborhoodsRegressor).load(
        tmp_path / "model")
    rows = table[["a", "b", "c"]]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"input": rows.to_numpy(dtype=np.float32)})
    expected = estimator.predict_proba(rows) if task == "classification" else estimator.predict(rows)
    np.testing.assert_allclose(output.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)
    assert main(["export", "--run", str(tmp_path / "model"), "--out", str(tmp_path / "model.onnx")]) == 1
    assert "already exists" in capsys.readouterr().err
    estimator.save(tmp_path / "saved")  # a checkpoint save wrote, beside no fit.json
    assert main(["export", "--run", str(tmp_path / "saved"), "--out", str(tmp_path / "saved.onnx"), "--quiet"]) == 0
    (output,) = ort.InferenceSession(str(tmp_path / "saved.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": rows.to_numpy(dtype=np.float32)})
    np.testing.assert_allclose(output.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


def test_records_models_and_columns_given_for_one_another_are_named(files, capsys):
    """A fit.json where a regress run's record is asked for, a run's record or folder where a model is, a feature
    named twice, a column of text: each refused in one line that says what to give instead."""
    tmp_path, table, _ = files
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{}")
    (tmp_path / "ablation.json").write_text("{}")
    table.assign(kind="red").to_csv(tmp_path / "colored.csv", index=False)
    table.assign(none="red").to_csv(tmp_path / "none.csv", index=False)  # --ignore-columns none leaves out nothing
    table.rename(columns={"b": "a"}).to_csv(tmp_path / "twice.csv", index=False)
    for argv, status, message in (
            (["regress", "--config", str(tmp_path / "model" / "fit.json"), "--data-file", str(tmp_path / "train.csv"),
              "--out", str(tmp_path / "r")], 2, "the fit.json of a fit, not the results.json of a regress run"),
            (["predict", "--model", str(tmp_path / "run" / "results.json"), "--data-file", str(tmp_path / "new.csv"),
              "--out", str(tmp_path / "p.csv")], 1, "is the record of a regress run, which keeps no model"),
            (["predict", "--model", str(tmp_path / "ablation.json"), "--data-file", str(tmp_path / "new.csv"),
              "--out", str(tmp_path / "p.csv")], 1, "the record of an ablate run, which keeps no model: fit --config "
                                                  "takes a regress run's results.json"),
            (["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "m.onnx")], 1,
             f"results.json is the record of a regress run, which keeps no model: meta-neighborhoods fit --config "
             f"{tmp_path / 'run' / 'results.json'} fits one"),
            (["export", "--run", str(tmp_path / "model" / "fit.json"), "--out", str(tmp_path / "m.onnx")], 1,
             "is the record of a fit: give its folder"),
            (["fit", "--data-file", str(tmp_path / "twice.csv"), "--target", "y", "--out", str(tmp_path / "f")], 1,
             "more than one feature is named 'a'"),
            (["fit", "--data-file", str(tmp_path / "colored.csv"), "--target", "y", "--out", str(tmp_path / "f")], 1,
             "(or leave it out: --ignore-columns 'kind')"),
            (["fit", "--data-file", str(tmp_path / "none.csv"), "--target", "y", "--out", str(tmp_path / "f")], 1,
             "(or rename the column to leave it out: --ignore-columns none alone means no column)")):
        assert main([*argv, "--quiet"]) == status
        assert message in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("r", "p.csv", "m.onnx", "f"))


@pytest.mark.parametrize("labels, said", [
    ([3, 7], "2 distinct whole numbers, read as a regression's target; if they are class labels, give --task "
             "classification"),
    ([False, True], "2 distinct whole numbers (0 and 1, as True and False are read), read as"),
    ([1, 2, 3], None),  # three: said at INFO, which --quiet hides
])
def test_a_target_of_a_few_integers_read_as_a_regressions_is_said_to_be_maybe_labels(tmp_path, capsys, labels,
                                                                                     said):
    table = _table().drop(columns="y")
    table.assign(label=np.resize(labels, len(table))).to_csv(tmp_path / "train.csv", index=False)
    for task, shown in (([], said is not None), (["--task", "regression"], False)):  # asked for: not said
        assert main(["fit", "--data-file", str(tmp_path / "train.csv"), "--target", "label", *task, "--out",
                     str(tmp_path / f"m{len(task)}"), *SMALL]) == 0  # --quiet: a yes/no target is warned of
        err = capsys.readouterr().err
        assert ("distinct whole numbers" in err) == shown and (not shown or said in err)


def test_a_name_from_a_damaged_model_file_cannot_break_the_error_line_nor_reach_the_terminal(files, capsys):
    """A fitted attribute named with a line break and a terminal escape (the file is untrusted) is said escaped."""
    tmp_path, _, _ = files
    record = tmp_path / "model" / "model.json"
    saved = json.loads(record.read_text())
    saved["fitted"]["x\n\x1b[31mFAKE: all good"] = 1
    record.write_text(json.dumps(saved))
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / "p.csv"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "\x1b" not in error and "x\\n\\x1b[31mFAKE: all good" in error
    from meta_neighborhoods.cli import _one_line

    assert _one_line("x" * 2500) == "x" * 2000 + "... (500 more characters)"  # a list of 20,000 columns, say
    assert _one_line("shot 10.00\u202fAM ± é\u200d\u202e") == "shot 10.00\u202fAM ± é\u200d\\u202e"  # a macOS name

def test_predict_replaces_no_file_written_while_it_ran_unless_asked(files, capsys, monkeypatch):
    from meta_neighborhoods.experiments import final_model

    tmp_path, _, _ = files
    named = final_model._named

    def and_a_file_appears(*args):  # after predict checked --out, before it writes
        (tmp_path / "p.csv").write_text("mine\n")
        return named(*args)

    monkeypatch.setattr(final_model, "_named", and_a_file_appears)
    command = ["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "new.csv"), "--out",
               str(tmp_path / "p.csv"), "--quiet"]
    assert main(command) == 1
    assert "was written by something else while this ran" in capsys.readouterr().err
    assert (tmp_path / "p.csv").read_text() == "mine\n"
    assert main([*command, "--overwrite"]) == 0 and "prediction" in (tmp_path / "p.csv").read_text()


def test_predict_refuses_a_dangling_link_at_out_before_any_work(files, capsys):
    """A review: a link to nowhere passed the check of --out, and was refused only once every row was predicted, as
    a file written meanwhile."""
    tmp_path, _, _ = files
    (tmp_path / "p.csv").symlink_to(tmp_path / "nowhere.csv")
    assert main(["predict", "--model", str(tmp_path / "model"), "--data-file", str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / "p.csv"), "--quiet"]) == 1
    assert "p.csv already exists: replace it with --overwrite" in capsys.readouterr().err
    assert (tmp_path / "p.csv").is_symlink() and not (tmp_path / "nowhere.csv").exists()
