"""The README's Python examples run as written (on small random tables for the data they leave to the reader)."""

import re
import shlex
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


def _readme_commands() -> list[str]:
    """Every ``meta-neighborhoods ...`` command of the README: in backticks, or a line of a shell block."""
    text = README.read_text()
    commands, fenced = re.findall(r"`(meta-neighborhoods [^`]+)`", text), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced and line.strip() in ("```sh", "```bash")
        elif fenced and line.startswith("meta-neighborhoods "):
            commands.append(re.split(r"\s#\s", line)[0].strip())
    return commands


def test_readme_commands_parse():
    """A command copied from the README must not fail on its options (one lacked the --out spiral requires);
    usage lines with placeholders ([--seed N], DIR, ...) are left out."""
    from meta_neighborhoods.cli import build_parser

    commands = [c for c in _readme_commands() if not re.search(r"[\[\]<>|]|\.\.\.|\bDIR\b", c)]
    assert len(commands) >= 15
    for command in commands:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit as error:
            assert error.code == 0 and command.endswith("--help"), command


def test_the_readme_names_every_image_data_set_classify_reads():
    from meta_neighborhoods.datasets.images import IMAGE_DATASETS

    text = README.read_text()
    assert [name for name in IMAGE_DATASETS if f"`{name}`" not in text] == []
