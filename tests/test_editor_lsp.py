"""The editor features (sbexportd/serve/editor) against a real `sbexportd serve --stdio`,
driven by pygls' own LanguageClient as an editor would: hover, document links, code
lenses and running them, diagnostics on open / change / save / watched-file changes,
settings pulled (workspace/configuration) and pushed (didChangeConfiguration),
server-created $/progress. Expected texts come from sbexportd's own inspect and typed
errors, never typed in."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from lsprotocol import types as T
from pygls.lsp.client import LanguageClient

import sbexportd
from sbexportd.errors import SbExportError
from sbexportd.serve.editor.references import find
from sbexportd.serve.editor.samples import sample_observation
from sbexportd.serve.editor.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TIMEOUT = 60


class Editor:
    """One editor session: a daemon on stdio, a workspace folder, what the server sent."""

    def __init__(self, workspace: Path, settings: dict | None = None, pull: bool = True,
                 watch: bool = True, progress: bool = True, args: tuple[str, ...] = ()):
        self.workspace, self.settings, self.args = workspace, settings or {}, args
        self.client = LanguageClient("sbexportd-tests", "1")
        self.diagnostics: dict[str, list[T.PublishDiagnosticsParams]] = {}
        self.progress: list[tuple] = []
        self.created: list = []
        self.registrations: list = []
        self.messages: list[str] = []
        self.config_requests = 0
        self.changed = asyncio.Event()
        caps = T.ClientCapabilities(
            workspace=T.WorkspaceClientCapabilities(
                configuration=pull,
                did_change_watched_files=T.DidChangeWatchedFilesClientCapabilities(dynamic_registration=watch)),
            window=T.WindowClientCapabilities(work_done_progress=progress))
        self.capabilities = caps
        c = self.client

        @c.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diag(ls, p):
            self.diagnostics.setdefault(p.uri, []).append(p)
            self.changed.set()

        @c.feature(T.WORKSPACE_CONFIGURATION)
        def _conf(ls, p):
            self.config_requests += 1
            return [self.settings.get(item.section) for item in p.items]

        @c.feature(T.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def _create(ls, p):
            self.created.append(p.token)

        @c.feature(T.PROGRESS)
        def _progress(ls, p):
            self.progress.append((p.token, p.value))

        @c.feature(T.CLIENT_REGISTER_CAPABILITY)
        def _register(ls, p):
            self.registrations.extend(p.registrations)

        @c.feature(T.WINDOW_SHOW_MESSAGE)
        def _message(ls, p):
            self.messages.append(p.message)

    async def __aenter__(self) -> Editor:
        await self.client.start_io(sys.executable, "-m", "sbexportd.cli", "serve", "--stdio", *self.args,
                                   cwd=str(ROOT))
        self._stderr = asyncio.ensure_future(self.client._server.stderr.read())
        ws = self.workspace.as_uri()
        await self.client.initialize_async(T.InitializeParams(
            capabilities=self.capabilities, root_uri=ws, workspace_folders=[T.WorkspaceFolder(uri=ws, name="ws")]))
        self.client.initialized(T.InitializedParams())
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), TIMEOUT)
            self.client.exit(None)
        finally:
            await asyncio.wait_for(self.client.stop(), TIMEOUT)

    @property
    def pid(self) -> int:
        return self.client._server.pid

    def open(self, path: Path, text: str, language: str = "python") -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        uri = path.as_uri()
        self.client.text_document_did_open(T.DidOpenTextDocumentParams(
            text_document=T.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))
        return uri

    async def wait_diagnostics(self, uri: str, predicate=lambda p: True, after: int = 0) -> T.PublishDiagnosticsParams:
        async def wait():
            while True:
                got = self.diagnostics.get(uri, [])[after:]
                for p in got:
                    if predicate(p):
                        return p
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(wait(), TIMEOUT)

    async def hover(self, uri: str, line: int, character: int) -> T.Hover | None:
        return await self.client.text_document_hover_async(T.HoverParams(
            text_document=T.TextDocumentIdentifier(uri=uri), position=T.Position(line=line, character=character)))

    async def lenses(self, uri: str) -> list[T.CodeLens]:
        return list(await self.client.text_document_code_lens_async(
            T.CodeLensParams(text_document=T.TextDocumentIdentifier(uri=uri))) or [])

    async def run(self, command: T.Command):
        return await self.client.workspace_execute_command_async(
            T.ExecuteCommandParams(command=command.command, arguments=command.arguments))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 240))


def copy_fixture(case: str, dest: Path, name: str = "model.zip") -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / case / name, dest)
    return dest


def loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


# -- references in the text: every language the issue names --------------------------------------
@pytest.mark.parametrize("line,expected", [
    ('model = PPO2.load("agents/cartpole.zip")', "agents/cartpole.zip"),                 # Python
    ("model = PPO2.load('agents/cartpole.pkl', env=env)", "agents/cartpole.pkl"),        # Python, single quotes
    ("model_path: agents/ppo2/CartPole-v1.zip", "agents/ppo2/CartPole-v1.zip"),          # YAML, bare
    ('  "model": "../models/my agent.zip",', "../models/my agent.zip"),                  # JSON, a space inside
    ('Path model = Paths.get("/opt/models/a2c.zip");', "/opt/models/a2c.zip"),            # Java, absolute
    ("const m = await client.open({path: `models/dqn.pkl`});", "models/dqn.pkl"),        # JavaScript template
    ("See [the agent](models/sac.zip) for details.", "models/sac.zip"),                  # Markdown link
    ("sbexportd inspect ~/agents/td3.zip --json", "~/agents/td3.zip"),                   # shell, home
])
def test_references_are_found_in_every_language(tmp_path, line, expected):
    refs = find([line + "\n"], tmp_path, [])
    assert [r.text for r in refs] == [expected]
    r = refs[0]
    assert line[r.start:r.end] == expected or (expected.startswith("~") is False and expected in line)


@pytest.mark.parametrize("line", [
    'url = "https://example.com/agent.zip"',   # a URL is not a local file
    "archive.zipper = 1",                      # not an extension
    "import zipfile, pickle  # .pkl files",   # no name before the extension
    'model.save(f"{log_dir}/ppo2.zip")',      # templates are made at run time
    'cp "$DIR/agent.zip" .',
    "paths = glob('runs/*.pkl')",
    "name = '%s.zip' % env_id",
])
def test_non_references_are_ignored(tmp_path, line):
    assert find([line], tmp_path, []) == []


def test_relative_paths_resolve_to_the_document_then_the_workspace(tmp_path):
    ws, doc_dir = tmp_path / "ws", tmp_path / "ws" / "scripts"
    copy_fixture("ppo2_mlp_vec_discrete", ws / "agents" / "a.zip")
    copy_fixture("ppo2_mlp_vec_discrete", doc_dir / "agents" / "b.zip")
    refs = find(['load("agents/a.zip")\n', 'load("agents/b.zip")\n', 'load("agents/c.zip")\n'], doc_dir, [ws])
    assert [r.path for r in refs[:2]] == [ws / "agents" / "a.zip", doc_dir / "agents" / "b.zip"]
    assert [r.exists for r in refs] == [True, True, False]
    assert refs[2].tried == (doc_dir / "agents" / "c.zip", ws / "agents" / "c.zip")


def test_settings_parse_and_report_problems():
    s = Settings.parse({"export": {"targets": ["onnx", "onx"], "outputFolder": 3, "overwrite": True},
                        "vecnormalize": "none"})
    assert s.targets == ("onnx",) and s.output_folder == "exported" and s.overwrite and s.vecnormalize == "none"
    assert any("onx" in p for p in s.problems) and any("outputFolder" in p for p in s.problems)
    assert Settings.parse({"export.targets": "portable,params"}).targets == ("portable", "params")
    assert Settings.parse(None) == Settings()


@pytest.mark.parametrize("case", ["a2c_cnn_img_discrete", "her_dqn_bitflip", "ppo2_mlp_vecnormalize",
                                  "ppo2_mlp_mdobs_discrete"])
def test_sample_observation_is_accepted_by_predict(case):
    model = sbexportd.load(FIXTURES / case / "model.zip")
    sample = sample_observation(model.spec)
    if isinstance(sample, dict) and "data" in sample:  # base64, as the daemon takes it
        import base64
        sample = np.frombuffer(base64.b64decode(sample["data"]), sample["dtype"]).reshape(sample["shape"])
    out = model.predict(sample)
    assert "actions" in out


# -- the features, through a real daemon ----------------------------------------------------------------
def test_hover_links_lenses_and_diagnostics(tmp_path):
    ws = tmp_path / "ws"
    agent = copy_fixture("ppo2_mlp_vecnormalize", ws / "agents" / "agent.zip")
    shutil.copy(FIXTURES / "ppo2_mlp_vecnormalize" / "vecnormalize.pkl", agent.parent / "vecnormalize.pkl")
    text = ("from stable_baselines import PPO2\n"
            'model = PPO2.load("agents/agent.zip")\n'
            'other = PPO2.load("agents/missing.zip")\n')

    async def go():
        settings = {"sbexportd": {"export": {"targets": ["portable"], "outputFolder": "out"}}}
        async with Editor(ws, settings=settings) as ed:
            uri = ed.open(ws / "train.py", text)
            diags = await ed.wait_diagnostics(uri)
            assert [d.code for d in diags.diagnostics] == ["file_not_found"]
            d = diags.diagnostics[0]
            assert d.severity == T.DiagnosticSeverity.Warning and d.source == "sbexportd"
            assert (d.range.start.line, d.range.start.character) == (2, text.splitlines()[2].index("agents/missing"))
            assert str(ws / "agents" / "missing.zip") in d.message

            hover = await ed.hover(uri, 1, 25)
            info = sbexportd.load(agent, vecnormalize="auto").inspect()
            md = hover.contents.value
            assert hover.contents.kind == T.MarkupKind.Markdown
            for expected in (info["algorithm"].upper(), info["policy"]["class"], info["action_space"]["type"],
                             *[layer["name"] for layer in info["layers"]], *info["preprocessing"]):
                assert expected in md, (expected, md)
            assert "**VecNormalize** applied" in md
            assert (hover.range.start.line, hover.range.start.character) == (1, text.splitlines()[1].index("agents/"))
            assert await ed.hover(uri, 0, 5) is None
            missing_hover = await ed.hover(uri, 2, 25)
            assert "no such file" in missing_hover.contents.value

            links = await ed.client.text_document_document_link_async(
                T.DocumentLinkParams(text_document=T.TextDocumentIdentifier(uri=uri)))
            assert [link.target for link in links] == [agent.as_uri()]

            lenses = await ed.lenses(uri)
            assert [(lens.range.start.line, lens.command.title, lens.command.command) for lens in lenses] == [
                (1, "Inspect", "sbexport.inspect"), (1, "Export...", "sbexport.export"),
                (1, "Predict sample", "sbexport.predict")]
            inspect, export, predict = (lens.command for lens in lenses)
            result = await ed.run(inspect)
            assert result["algorithm"] == info["algorithm"] and result["vecnormalize"]["applied"] is True
            assert export.arguments[0]["to"] == ["portable"]
            assert export.arguments[0]["out"] == str(ws / "out" / "agent")
            result = await ed.run(export)
            manifest = json.loads((ws / "out" / "agent" / "portable" / "manifest.json").read_text())
            assert manifest["target"] == "portable"
            assert result["results"][0]["target"] == "portable"
            # server-created progress: created, then begin ... end on that token
            assert len(ed.created) == 1
            kinds = [v["kind"] for tok, v in ed.progress if tok == ed.created[0]]
            assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
            result = await ed.run(predict)
            obs = np.asarray(predict.arguments[0]["obs"], np.float32)
            want = sbexportd.load(agent, vecnormalize="auto").predict(obs)
            assert result["outputs"]["actions"] == int(want["actions"])
            np.testing.assert_allclose(result["outputs"]["probs"], want["probs"], rtol=1e-6)
            # hover and lenses read no TensorFlow and no torch
            maps = loaded_libraries(ed.pid)
            assert "tensorflow" not in maps and "libtorch" not in maps
    run(go())


def test_diagnostics_follow_edits_saves_and_files_on_disk(tmp_path):
    ws = tmp_path / "ws"
    broken = ws / "agents" / "broken.zip"
    data = (FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip").read_bytes()
    broken.parent.mkdir(parents=True)
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(SbExportError) as typed:
        sbexportd.load(broken)
    text = 'a = "agents/broken.zip"\n'

    async def go():
        async with Editor(ws) as ed:
            uri = ed.open(ws / "cfg.py", text)
            p = await ed.wait_diagnostics(uri)
            assert [r.register_options["watchers"][0]["globPattern"] for r in ed.registrations] == ["**/*.{zip,pkl}"]
            d = p.diagnostics[0]
            assert d.code == typed.value.code and d.severity == T.DiagnosticSeverity.Error
            assert d.message.startswith(str(typed.value))  # the typed error's message, then its hint
            assert len(d.message.splitlines()) == 2

            # an edit that names a missing file (incremental change)
            n = len(ed.diagnostics[uri])
            line = text.splitlines()[0]
            ed.client.text_document_did_change(T.DidChangeTextDocumentParams(
                text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[T.TextDocumentContentChangePartial(
                    range=T.Range(start=T.Position(line=0, character=line.index("broken")),
                                  end=T.Position(line=0, character=line.index("broken") + 6)), text="later")]))
            p = await ed.wait_diagnostics(uri, after=n)
            assert p.version == 2 and [d.code for d in p.diagnostics] == ["file_not_found"]

            # the file appears on disk: the watcher's notification clears the diagnostic
            n = len(ed.diagnostics[uri])
            shutil.copy(FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip", ws / "agents" / "later.zip")
            ed.client.workspace_did_change_watched_files(T.DidChangeWatchedFilesParams(changes=[
                T.FileEvent(uri=(ws / "agents" / "later.zip").as_uri(), type=T.FileChangeType.Created)]))
            p = await ed.wait_diagnostics(uri, after=n)
            assert p.diagnostics == [] or list(p.diagnostics) == []

            # broken on disk again, noticed on save
            n = len(ed.diagnostics[uri])
            (ws / "agents" / "later.zip").write_bytes(b"not a model")
            ed.client.text_document_did_save(T.DidSaveTextDocumentParams(
                text_document=T.TextDocumentIdentifier(uri=uri)))
            p = await ed.wait_diagnostics(uri, after=n)
            assert [d.code for d in p.diagnostics] == ["not_a_model_file"]

            # closing the document clears its diagnostics
            n = len(ed.diagnostics[uri])
            ed.client.text_document_did_close(T.DidCloseTextDocumentParams(
                text_document=T.TextDocumentIdentifier(uri=uri)))
            p = await ed.wait_diagnostics(uri, after=n)
            assert list(p.diagnostics) == []
    run(go())


def test_root_confines_the_files_documents_name(tmp_path):
    """serve --root: a model a document names outside the roots is not read; its
    diagnostic says path_not_allowed, as sbexport/open would answer (-33021)."""
    ws = tmp_path / "ws"
    inside = ws / "agents" / "mlp.zip"
    inside.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip", inside)
    outside = FIXTURES / "a2c_cnn_img_discrete" / "model.zip"
    text = f'a = "agents/mlp.zip"\nb = "{outside}"\n'

    async def go():
        async with Editor(ws, args=("--root", str(ws))) as ed:
            uri = ed.open(ws / "cfg.py", text)
            p = await ed.wait_diagnostics(uri)
            assert [(d.range.start.line, d.code) for d in p.diagnostics] == [(1, "path_not_allowed")]
            assert "--root" in p.diagnostics[0].message
            hover = await ed.hover(uri, 0, 8)
            assert hover is not None and "PPO2" in hover.contents.value  # the model inside is read
    run(go())


def test_root_keeps_documents_from_looking_outside(tmp_path):
    """serve --root: a document cannot learn which files exist outside the roots (a
    path there gets path_not_allowed whether or not it exists, and no link), nor have
    a sidecar beside a file it names read from outside them (an obs_rms.pkl inside,
    whose config.yml leads out); a model symlinked from inside to outside is refused."""
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    (ws / "agents" / "stats").mkdir(parents=True)
    outside.mkdir()
    zoo = FIXTURES / "ppo2_mlp_vecnormalize"
    shutil.copy(zoo / "model.zip", outside / "there.zip")
    shutil.copy(zoo / "obs_rms.pkl", ws / "agents" / "stats" / "obs_rms.pkl")
    (outside / "config.yml").write_text("normalize: \"{'norm_obs': True, 'clip_obs': 5.0}\"\n")
    (ws / "agents" / "stats" / "config.yml").symlink_to(outside / "config.yml")
    (ws / "agents" / "link.zip").symlink_to(outside / "there.zip")
    text = (f'a = "{outside / "there.zip"}"\nb = "{outside / "nowhere.zip"}"\n'
            'c = "agents/stats/obs_rms.pkl"\nd = "agents/link.zip"\n')

    async def go():
        async with Editor(ws, args=("--root", str(ws))) as ed:
            uri = ed.open(ws / "cfg.py", text)
            p = await ed.wait_diagnostics(uri)
            assert [(d.range.start.line, d.code) for d in p.diagnostics] == [
                (0, "path_not_allowed"), (1, "path_not_allowed"), (2, "path_not_allowed"), (3, "path_not_allowed")]
            assert "config.yml" in p.diagnostics[2].message  # the sidecar is named, not where it leads
            assert all(str(outside) not in d.message for d in p.diagnostics[2:])
            links = await ed.client.text_document_document_link_async(
                T.DocumentLinkParams(text_document=T.TextDocumentIdentifier(uri=uri)))
            assert [link.range.start.line for link in links] == [2]  # the one file inside: nothing outside
            # a document the client did not open has no text: it is not read from disk (outside the
            # roots, or a FIFO that would stop the daemon)
            (outside / "notes.md").write_text(f"see {ws / 'agents' / 'stats' / 'obs_rms.pkl'}\n")
            os.mkfifo(ws / "pipe.md")
            for unopened in (outside / "notes.md", ws / "pipe.md"):
                links = await asyncio.wait_for(ed.client.text_document_document_link_async(
                    T.DocumentLinkParams(text_document=T.TextDocumentIdentifier(uri=unopened.as_uri()))), 20)
                assert list(links or ()) == [], unopened
        async with Editor(ws) as ed:  # without roots: as before, every file read and linked
            uri = ed.open(ws / "cfg.py", text)
            p = await ed.wait_diagnostics(uri)
            assert [(d.range.start.line, d.code) for d in p.diagnostics] == [(1, "file_not_found")]
            hover = await ed.hover(uri, 2, 8)
            assert hover is not None and "clip_obs 5," in hover.contents.value  # from the config outside
    run(go())


def test_a_long_editing_session_keeps_the_daemon_small(tmp_path):
    """Every keystroke is a didChange: the daemon keeps nothing per notification (pygls
    2.1 kept each one's finished future: ~1.9 KB a keystroke, ~11 MB here)."""
    ws = tmp_path / "ws"
    n = 6000

    async def rss(ed) -> int:
        status = await ed.client.workspace_execute_command_async(
            T.ExecuteCommandParams(command="sbexport.status", arguments=[{}]))
        return status["rssBytes"]

    async def go():
        async with Editor(ws) as ed:
            uri = ed.open(ws / "a.py", 'm = "agents/a0.zip"\n')
            await ed.wait_diagnostics(uri)
            before = await rss(ed)
            for i in range(1, n + 1):  # retype the digit: a0 -> a1 -> ... -> a9 -> a0
                ed.client.text_document_did_change(T.DidChangeTextDocumentParams(
                    text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=i + 1),
                    content_changes=[T.TextDocumentContentChangePartial(
                        range=T.Range(start=T.Position(line=0, character=13), end=T.Position(line=0, character=14)),
                        text=str(i % 10))]))
                if i % 500 == 0:
                    await rss(ed)  # let the daemon keep up, as typing would
            p = await ed.wait_diagnostics(uri, lambda p: p.version == n + 1)
            assert [d.message.split(":")[0] for d in p.diagnostics] == [f"agents/a{n % 10}.zip"]
            grown = await rss(ed) - before
            assert grown < 3 << 20, f"{n} didChange grew the daemon by {grown / 2**20:.1f} MiB"
    run(go())


def test_lenses_notice_a_changed_file_without_a_watcher(tmp_path):
    """Neovim 0.7 watches no files: a code lens request re-checks references whose
    file changed on disk since the last check."""
    ws = tmp_path / "ws"

    async def go():
        async with Editor(ws, watch=False) as ed:
            assert ed.registrations == []
            uri = ed.open(ws / "a.py", 'm = "agents/new.zip"\n')
            await ed.wait_diagnostics(uri, lambda p: len(p.diagnostics) == 1)
            assert await ed.lenses(uri) == []
            copy_fixture("dqn_mlp_vec_discrete", ws / "agents" / "new.zip")
            assert [lens.command.title for lens in await ed.lenses(uri)] == ["Inspect", "Export...", "Predict sample"]
            assert list(ed.diagnostics[uri][-1].diagnostics) == []
    run(go())


def test_settings_pushed_pulled_and_applied(tmp_path):
    ws = tmp_path / "ws"
    agent = copy_fixture("ppo2_mlp_vecnormalize", ws / "agent.zip")
    shutil.copy(FIXTURES / "ppo2_mlp_vecnormalize" / "vecnormalize.pkl", ws / "vecnormalize.pkl")

    async def go():
        # pushed (no workspace/configuration support): didChangeConfiguration's settings
        async with Editor(ws, pull=False, progress=False) as ed:
            uri = ed.open(ws / "a.yaml", "model: agent.zip\n", "yaml")
            await ed.wait_diagnostics(uri)
            assert ed.config_requests == 0
            export = (await ed.lenses(uri))[1].command.arguments[0]
            assert export["to"] == ["onnx"] and export["out"] == str(ws / "exported" / "agent")  # the defaults
            assert "**VecNormalize** applied" in (await ed.hover(uri, 0, 9)).contents.value  # "auto"
            ed.client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings={"sbexportd": {
                "vecnormalize": "none", "export": {"targets": ["params", "bogus"], "outputFolder": "/tmp/x"}}}))
            for _ in range(200):
                if ed.messages:
                    break
                await asyncio.sleep(0.05)
            assert "bogus" in ed.messages[0]
            hover = (await ed.hover(uri, 0, 9)).contents.value
            assert "**not applied**" in hover and str(agent.parent / "vecnormalize.pkl") in hover
            export = (await ed.lenses(uri))[1].command
            assert export.arguments[0]["to"] == ["params"] and export.arguments[0]["out"] == "/tmp/x/agent"
            # no progress capability: no token created, the command still answers
            mid = export.arguments[0]["modelId"]
            assert (await ed.run(T.Command(title="", command="sbexport.inspect", arguments=[{"modelId": mid}]))
                    )["vecnormalize"]["applied"] is False
            assert ed.created == []

        # pulled: workspace/configuration on initialized and again on a bare didChangeConfiguration
        settings = {"sbexportd": {"export": {"targets": ["portable"]}}}
        async with Editor(ws, settings=settings) as ed:
            uri = ed.open(ws / "a.json", '{"model": "agent.zip"}\n', "json")
            await ed.wait_diagnostics(uri)
            assert ed.config_requests == 1
            assert (await ed.lenses(uri))[1].command.arguments[0]["to"] == ["portable"]
            settings["sbexportd"] = {"export": {"targets": ["tfjs"]}}
            ed.client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings=None))
            for _ in range(200):
                if (await ed.lenses(uri))[1].command.arguments[0]["to"] == ["tfjs"]:
                    break
                await asyncio.sleep(0.05)
            assert ed.config_requests == 2
            assert (await ed.lenses(uri))[1].command.arguments[0]["to"] == ["tfjs"]
    run(go())
