"""docs/methods.md is generated from the catalogue and must list every registered method."""

import importlib.util
from pathlib import Path

import rankwise

ROOT = Path(__file__).resolve().parents[1]


def _table():
    spec = importlib.util.spec_from_file_location("methods_table", ROOT / "benchmarks" / "methods_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_method_has_a_row_with_paper_formula_and_count():
    text = _table().render()
    for m in rankwise.methods():
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| `{m.name}` |"))
        assert m.paper and "arXiv" in m.paper, m.name
        if m.family == "adapter":
            assert m.formula and m.trainable and m.formula.replace("|", "\\|") in row, m.name


def test_docs_file_is_current():
    assert (ROOT / "docs" / "methods.md").read_text() == _table().render(), \
        "docs/methods.md is stale: run `python benchmarks/methods_table.py`"
