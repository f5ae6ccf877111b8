"""The README's Python examples run as written (on small random tables for the data they leave to the reader)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write files
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    rng = np.random.default_rng(0)
    namespace = {"X_train": rng.normal(size=(120, 5)), "y_train": rng.normal(size=120),
                 "X_test": rng.normal(size=(10, 5))}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["y_pred"].shape == (10,)
    np.testing.assert_array_equal(namespace["same"].predict(namespace["X_test"]),
                                  namespace["regressor"].predict(namespace["X_test"]))
    np.testing.assert_allclose(namespace["y_onnx"], namespace["regressor"].predict(namespace["X_test"]), atol=1e-5)
