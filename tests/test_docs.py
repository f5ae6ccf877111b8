"""numpydoc on the public estimators: every section a user looks for, and scikit-learn's HTML shows each parameter."""

import ast
import re

import pytest

from meta_neighborhoods import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor

validate = pytest.importorskip("numpydoc.validate").validate

METHODS = {MetaNeighborhoodsRegressor: ["fit", "partial_fit", "predict", "score", "save", "load", "export_onnx"],
           MetaNeighborhoodsClassifier: ["fit", "partial_fit", "predict", "predict_proba", "predict_log_proba", "score",
                                         "save", "load", "export_onnx"]}
NAMES = [f"meta_neighborhoods.{cls.__name__}" + (f".{m}" if m else "") for cls, ms in METHODS.items()
         for m in ["", *ms]]


@pytest.mark.parametrize("name", NAMES)
def test_numpydoc_finds_nothing_missing(name):
    assert validate(name)["errors"] == []


@pytest.mark.parametrize("cls", list(METHODS))
def test_every_parameter_is_documented(cls):
    documented = cls.__doc__
    assert all(f"\n    {name} : " in documented for name in cls().get_params()), "a parameter without its entry"


def test_the_html_representation_shows_every_parameter_s_documentation():
    html = MetaNeighborhoodsRegressor()._repr_html_()
    assert html.count('class="param-doc-description"') == len(MetaNeighborhoodsRegressor().get_params())
    assert "the number of induced neighbours" in html


@pytest.mark.parametrize("estimator", [MetaNeighborhoodsRegressor, MetaNeighborhoodsClassifier])
def test_every_default_the_docstring_states_is_the_signatures(estimator):
    """A default changed in the signature (or in config.ESTIMATOR) must not leave the documented one behind."""
    stated = dict(re.findall(r"^    (\w+) : [^\n]*?, default=([^\n]+)$", estimator.__doc__, flags=re.MULTILINE))
    params = estimator().get_params()
    assert set(params) <= set(stated)
    for name, value in params.items():
        assert ast.literal_eval(stated[name]) == value, name


@pytest.mark.filterwarnings("error")  # an example that warns teaches a fit to fix
@pytest.mark.parametrize("cls", list(METHODS))
def test_the_examples_of_the_estimators_docstrings_run_as_written(cls):
    """The class's and its methods' Examples sections, run (doctest): an example that drifted from the code would
    teach the wrong call."""
    import doctest

    tests = [t for t in doctest.DocTestFinder().find(cls, cls.__name__) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert tests and runner.summarize(verbose=False).failed == 0
