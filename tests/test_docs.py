"""The examples in docs/ run: every ```python block of a page, in order, in one namespace per page.

A block that cannot run here (it downloads weights, or shows a call on the user's own data) starts with a
`# not run: <why>` line. The pages show backend-agnostic code, so they run once, in the torch-backend run
(the fastest at eager execution).
"""

import re
from pathlib import Path

import keras
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(DOCS.glob("*.md"))


def blocks(page):
    return [code for code in BLOCK.findall(page.read_text()) if not code.startswith("# not run:")]


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="docs examples run once, in the torch-backend run")
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    namespace = {"__name__": f"docs.{page.stem}"}
    for number, code in enumerate(blocks(page), 1):
        try:
            exec(compile(code, f"{page.name} (block {number})", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{page.name}, python block {number} fails: {err!r}\n{code}") from err


def test_every_skipped_block_says_why():
    for page in PAGES:
        for code in BLOCK.findall(page.read_text()):
            if code.startswith("# not run"):
                assert re.match(r"# not run: \S", code), f"{page.name}: '# not run' without a reason:\n{code}"


def test_readme_models_table_is_generated():
    from keras_hyper.applications import catalog

    root = DOCS.parent
    readme = (root / "README.md").read_text()
    assert catalog.readme_with_table(readme, root) == readme, (
        "README.md's models table is stale: run `python -m keras_hyper.applications.catalog`"
    )
