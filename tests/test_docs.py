"""numpydoc on the public estimators: every section a user looks for, and scikit-learn's HTML shows each parameter."""

import pytest

from meta_neighborhoods import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor

validate = pytest.importorskip("numpydoc.validate").validate

METHODS = {MetaNeighborhoodsRegressor: ["fit", "predict", "score", "save", "load", "export_onnx"],
           MetaNeighborhoodsClassifier: ["fit", "predict", "predict_proba", "score", "save", "load", "export_onnx"]}
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
