"""Every ```python block of docs/targets/*.md runs, against a fresh export; so does
every ```javascript / ```js block (in Node) and every ```sh block whose first line is a
`# run:` comment (in bash).

Python: one interpreter per page; its blocks run in order in one namespace (a block may use
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

JavaScript: each block is a complete ES module, run alone with `node` from a scratch
folder whose node_modules resolves "@tensorflow/tfjs", "onnxruntime-node" (and every
other package of clients/node/node_modules) and "sbexportd-client" (clients/node).
Its environment has EXPORT_DIR, EXPORT_ROOT, MODEL_FILE (paths, as strings) and OBS
(the same 5 observations, as JSON nested arrays).

Shell: each `# run:` block runs alone with `bash -e` in the repository's root, the
same environment variables set, TMPDIR a scratch folder and this Python's bin folder
first on PATH (`python` is the one sbexportd is installed in). Other ```sh blocks,
and blocks in other languages (java, cpp, c, text, json ...), are not run.

The HTML comments above apply to JavaScript and shell blocks too. A JavaScript block
is skipped (with the reason) when node or clients/node/node_modules is missing; a
shell block that calls make when make or a C compiler is missing, one that calls node
when node is. docs/export.md documents these conventions for the pages' authors.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES, ROOT
from sbexportd.export import export
from sbexportd.export.conventions import sample_observations
from sbexportd.export.targets import TARGETS

DOCS = ROOT / "docs" / "targets"
DEFAULT_FIXTURE = "ppo2_mlp_vec_discrete"
PAGES = sorted(DOCS.glob("*.md")) if DOCS.is_dir() else []
FENCE = re.compile(r"^(?P<ticks>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"^<!--\s*doc-test:\s*(?P<what>.*?)\s*-->$")


PYTHON, JS, SH = "python", "js", "sh"
LANGS = {"python": PYTHON, "py": PYTHON, "python3": PYTHON, "javascript": JS, "js": JS, "mjs": JS,
         "sh": SH, "bash": SH, "shell": SH}
RUN_MARK = re.compile(r"^#\s*run:")
NODE_MODULES = ROOT / "clients" / "node" / "node_modules"
# Blocks of pages outside this test's care that cannot run as written yet: the page's
# author fixes the block (or marks it `<!-- doc-test: skip -->`) and removes it here.
PENDING: dict = {}


@dataclass
class Block:
    page: Path
    line: int            # 1-based line of the block's first code line
    code: str
    fixture: str = DEFAULT_FIXTURE
    skip: bool = False
    lang: str = PYTHON


def python_blocks(page: Path) -> list[Block]:
    return [b for b in code_blocks(page) if b.lang == PYTHON]


def code_blocks(page: Path) -> list[Block]:
    """The blocks this test runs: python, javascript / js, and sh whose first line is `# run:`."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        ticks, lang = m.group("ticks"), m.group("lang").lower()
        end = i + 1
        while end < len(lines) and not (lines[end].startswith(ticks)
                                        and lines[end].strip() == ticks[0] * len(lines[end].strip())):
            end += 1
        kind = LANGS.get(lang)
        code = textwrap.dedent("\n".join(lines[i + 1:end])) + "\n"
        if kind == SH and not RUN_MARK.match(code.lstrip()):
            kind = None
        if kind:
            block = Block(page, i + 2, code, lang=kind)
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


def observations_for(fixture: str, model_file: Path, root: Path) -> Path:
    """The .npy file of the 5 observations blocks get as OBS."""
    obs_file = root / f"obs-{fixture}.npy"
    if not obs_file.exists():
        vn = FIXTURES / fixture / "vecnormalize.pkl"
        spec = sbexportd.load(model_file, vn if vn.is_file() else None).spec
        np.save(obs_file, sample_observations(spec, 5, 1))
    return obs_file


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
        obs_file = observations_for(b.fixture, model_file, export_root)
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


OTHER_BLOCKS = [b for page in PAGES for b in code_blocks(page) if b.lang != PYTHON]


def _missing_tools(block: Block) -> str | None:
    """Why this machine cannot run the block, or None."""
    node_ok = shutil.which("node") is not None
    if block.lang == JS:
        if not node_ok:
            return "node not found: the page's JavaScript is NOT tested"
        if not all((NODE_MODULES / m).is_dir() for m in ("@tensorflow/tfjs", "onnxruntime-node")):
            return ("clients/node/node_modules missing (make install runs npm ci --ignore-scripts): "
                    "the page's JavaScript is NOT tested")
        return None
    if shutil.which("bash") is None:
        return "bash not found: the page's shell blocks are NOT tested"
    if re.search(r"\bmake\b", block.code) and (shutil.which("make") is None
                                               or not (shutil.which("gcc") or shutil.which("cc"))):
        return "make or a C compiler (gcc, cc) not found: this build is NOT tested"
    if re.search(r"\bnode\b", block.code) and not node_ok:
        return "node not found: this block is NOT tested"
    return None


def _node_folder(root: Path) -> Path:
    """A scratch folder whose node_modules resolves clients/node's packages and the
    client itself as "sbexportd-client" (symlinks: Node follows them to their real
    paths, from where their own dependencies resolve)."""
    folder = root / "node"
    modules = folder / "node_modules"
    if not modules.is_dir():
        modules.mkdir(parents=True)
        for entry in NODE_MODULES.iterdir():
            if not entry.name.startswith("."):
                (modules / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        (modules / "sbexportd-client").symlink_to(ROOT / "clients" / "node", target_is_directory=True)
    return folder


@pytest.mark.parametrize("block", OTHER_BLOCKS,
                         ids=[f"{b.page.name}:{b.line}:{b.lang}" for b in OTHER_BLOCKS])
def test_block_runs(block, export_root, tmp_path):
    if block.skip:
        pytest.skip("marked <!-- doc-test: skip -->")
    pending = PENDING.get((block.page.name, block.lang))
    if pending:
        pytest.skip(f"{block.page.name}'s {block.lang} blocks are not runnable yet: {pending}")
    why = _missing_tools(block)
    if why:
        pytest.skip(why)
    export_dir, out, model_file = export_for(block.fixture, block.page.stem, export_root)
    obs = np.load(observations_for(block.fixture, model_file, export_root))
    where = f"{block.page.relative_to(ROOT)}:{block.line}"
    env = {**os.environ, "EXPORT_DIR": str(export_dir), "EXPORT_ROOT": str(out), "MODEL_FILE": str(model_file),
           "OBS": json.dumps(obs.tolist()), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if block.lang == JS:
        script = _node_folder(export_root) / f"{block.page.stem}-{block.line}.mjs"
        script.write_text(block.code)
        cmd, cwd = ["node", str(script)], script.parent
    else:
        script = tmp_path / "block.sh"
        script.write_text(block.code)
        env["TMPDIR"] = str(tmp_path)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        cmd, cwd = ["bash", "-e", str(script)], ROOT
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"{where} ({block.lang}) exited with {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-4000:]}")


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

        <!-- doc-test: fixture=ppo2_mlplstm_vec_box -->
        ```sh
        # run: this one runs
        echo yes
        ```

        ```text
        not run
        ```
    '''))
    every = code_blocks(page)
    assert [(b.lang, b.line) for b in every if b.lang != PYTHON] == [("js", 26), ("sh", 31)]
    assert every[-1].code == "# run: this one runs\necho yes\n" and every[-1].fixture == "ppo2_mlplstm_vec_box"
    blocks = python_blocks(page)
    assert [b.code for b in blocks] == ["a = 1\n", "b = a + 1\n", "this is not run\n```\nstill inside\n"]
    assert [b.fixture for b in blocks] == [DEFAULT_FIXTURE, "ppo2_mlplstm_vec_box", DEFAULT_FIXTURE]
    assert [b.skip for b in blocks] == [False, False, True]
    assert blocks[0].line == 5
