"""Every ```python block of docs/targets/*.md runs, against a fresh export.

One interpreter per page; its blocks run in order in one namespace (a block may use
what an earlier one defined), each with these variables set first:

    EXPORT_DIR    pathlib.Path of the export of the page's target: <root>/<stem> for
                  docs/targets/<stem>.md when <stem> is a target name, else <root>,
                  an export of every target (`--to all`)
    EXPORT_ROOT   <root>, the export's --out folder
    MODEL_FILE    pathlib.Path of the SB2 file exported
    OBS           a NumPy batch of 5 observations (the model's input dtype)

The model is the fixture DEFAULT_FIXTURE unless an HTML comment right before the
block says otherwise:

    <!-- doc-test: fixture=ppo2_mlplstm_vec_box -->
    <!-- doc-test: skip -->

Blocks in other languages (sh, js, java, cpp, c ...) are not run. docs/export.md
documents this convention for the pages' authors.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from sbexportd.export import export
from sbexportd.export.conventions import sample_observations
from sbexportd.export.targets import TARGETS

from conftest import FIXTURES, ROOT

DOCS = ROOT / "docs" / "targets"
DEFAULT_FIXTURE = "ppo2_mlp_vec_discrete"
PAGES = sorted(DOCS.glob("*.md")) if DOCS.is_dir() else []
FENCE = re.compile(r"^(?P<ticks>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"^<!--\s*doc-test:\s*(?P<what>.*?)\s*-->$")


@dataclass
class Block:
    page: Path
    line: int            # 1-based line of the block's first code line
    code: str
    fixture: str = DEFAULT_FIXTURE
    skip: bool = False


def python_blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        ticks, lang = m.group("ticks"), m.group("lang").lower()
        end = i + 1
        while end < len(lines) and not (lines[end].startswith(ticks) and lines[end].strip() == ticks[0] * len(lines[end].strip())):
            end += 1
        if lang in ("python", "py", "python3"):
            block = Block(page, i + 2, textwrap.dedent("\n".join(lines[i + 1:end])) + "\n")
            prev = i - 1
            while prev >= 0 and not lines[prev].strip():
                prev -= 1
            marker = MARKER.match(lines[prev].strip()) if prev >= 0 else None
            if marker:
                for word in marker.group("what").split():
                    if word == "skip":
                        block.skip = True
                    elif word.startswith("fixture="):
                        block.fixture = word.split("=", 1)[1]
                    else:
                        raise ValueError(f"{page}:{prev + 1}: unknown doc-test directive {word!r}")
            blocks.append(block)
        i = end + 1
    return blocks


_EXPORTS: dict[tuple[str, str], Path] = {}


def export_for(fixture: str, stem: str, root: Path) -> tuple[Path, Path, Path]:
    """(EXPORT_DIR, EXPORT_ROOT, MODEL_FILE) for a fixture and a page, exported once."""
    to = stem if stem in TARGETS else "all"
    folder = FIXTURES / fixture
    model_file = folder / "model.zip"
    assert model_file.is_file(), f"no fixture {fixture!r} (docs/targets pages name fixtures of tests/fixtures)"
    if (fixture, to) not in _EXPORTS:
        vn = folder / "vecnormalize.pkl"
        model = sbexportd.load(model_file, vn if vn.is_file() else None)
        out = root / f"{fixture}-{to}"
        export(model, to, out)
        _EXPORTS[(fixture, to)] = out
    out = _EXPORTS[(fixture, to)]
    return (out / to if to != "all" else out), out, model_file


RUNNER = textwrap.dedent('''
    import json, sys, traceback
    from pathlib import Path
    import numpy as np

    plan = json.loads(Path(sys.argv[1]).read_text())
    namespace = {"__name__": "__doc_snippets__"}
    for block in plan:
        namespace.update(EXPORT_DIR=Path(block["export_dir"]), EXPORT_ROOT=Path(block["export_root"]),
                         MODEL_FILE=Path(block["model_file"]), OBS=np.load(block["obs"]))
        try:
            exec(compile(block["code"], block["where"], "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"DOC SNIPPET FAILED: {block['where']}", file=sys.stderr)
            sys.exit(1)
        print(f"DOC SNIPPET OK: {block['where']}", flush=True)
''')


@pytest.fixture(scope="module")
def export_root(tmp_path_factory):
    return tmp_path_factory.mktemp("doc-exports")


def test_pages_exist():
    assert (DOCS / "pytorch.md").is_file() and (DOCS / "portable.md").is_file() and (DOCS / "params.md").is_file()


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_snippets_run(page, export_root, tmp_path):
    blocks = [b for b in python_blocks(page) if not b.skip]
    if not blocks:
        pytest.skip(f"{page.name} has no python blocks")
    plan = []
    for b in blocks:
        export_dir, out, model_file = export_for(b.fixture, page.stem, export_root)
        obs_file = export_root / f"obs-{b.fixture}.npy"
        if not obs_file.exists():
            vn = FIXTURES / b.fixture / "vecnormalize.pkl"
            spec = sbexportd.load(model_file, vn if vn.is_file() else None).spec
            np.save(obs_file, sample_observations(spec, 5, 1))
        plan.append({"code": b.code, "where": f"{page.relative_to(ROOT)}:{b.line}", "export_dir": str(export_dir),
                     "export_root": str(out), "model_file": str(model_file), "obs": str(obs_file)})
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "runner.py").write_text(RUNNER)
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "plan.json")], cwd=work,
                          env=env, capture_output=True, text=True, timeout=900)
    ran = proc.stdout.count("DOC SNIPPET OK: ")
    assert proc.returncode == 0, (f"{ran} of {len(blocks)} blocks ran; then\n" + proc.stderr[-4000:])
    assert ran == len(blocks)


def test_block_parser(tmp_path):
    page = tmp_path / "example.md"
    page.write_text(textwrap.dedent('''
        # Example

        ```python
        a = 1
        ```

        ```sh
        echo not python
        ```

        <!-- doc-test: fixture=ppo2_mlplstm_vec_box -->

        ```python
        b = a + 1
        ```

        <!-- doc-test: skip -->
        ````python
        this is not run
        ```
        still inside
        ````

        ```js
        const c = 3;
        ```
    '''))
    blocks = python_blocks(page)
    assert [b.code for b in blocks] == ["a = 1\n", "b = a + 1\n", "this is not run\n```\nstill inside\n"]
    assert [b.fixture for b in blocks] == [DEFAULT_FIXTURE, "ppo2_mlplstm_vec_box", DEFAULT_FIXTURE]
    assert [b.skip for b in blocks] == [False, False, True]
    assert blocks[0].line == 5
