"""The documentation a newcomer reads first must stay true: the example settings file loads, and
it names every setting the loader knows."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from typing import Any

from tfa_middleware import load_settings

ROOT = Path(__file__).resolve().parent.parent
ENV = {"TFA_SECRET_KEY": "k" * 40, "SHOP_SECRET": "shop-secret"}


def _keys(tree: Any, path: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = f"{path}.{key}" if path else str(key)
            found.add(here)
            found |= _keys(value, here)
    return found


def test_the_example_settings_file_is_valid() -> None:
    settings = load_settings(ROOT / "config.yaml.example", environ=ENV)
    assert set(settings.interfaces) == {"admin", "customer"}


def test_the_example_settings_file_names_every_setting() -> None:
    described = load_settings(ROOT / "config.yaml.example", environ=ENV).describe()
    text = (ROOT / "config.yaml.example").read_text()
    named = set(re.findall(r"^\s*#?\s*([a-z0-9_]+):", text, flags=re.MULTILINE))
    missing = sorted(k for k in _keys(described) if k.rsplit(".", 1)[-1] not in named)
    # Interface names are the user's own; everything else must be documented by name.
    missing = [k for k in missing if not re.fullmatch(r"interfaces\.[a-z_]+", k)]
    assert missing == []


def test_the_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## ")]
    assert "make demo" in head
    assert "make test" in head


def test_the_readme_python_examples_parse() -> None:
    # The examples are copied into shops as they are: a typo in one is a shop's first error.
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) >= 5
    for block in blocks:
        ast.parse(textwrap.dedent(block))  # a block inside a list item is indented as a whole
