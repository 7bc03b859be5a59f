"""The README's quickstart runs as written."""

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs(tmp_path):
    pytest.importorskip("transformers")
    code = re.search(r"## Quickstart\s+```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 14
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(code, "README quickstart", "exec"), scope)
    finally:
        os.chdir(cwd)
    assert (tmp_path / "out" / "adapter.json").exists()
    assert (tmp_path / "out_peft" / "adapter_config.json").exists()
    assert not list(scope["rankwise"].core.api.hosts(scope["merged"]))
