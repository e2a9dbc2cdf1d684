"""One connection's editor state: its settings, and each open document's checked
references (found in the text, then opened through the daemon, so that hovers and
lenses find them warm). A document is checked on open, change (once typing pauses),
save, a watched file's change and a settings change; diagnostics are published
after each check."""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import to_fs_path
from pygls.workspace.position_codec import ServerTextPosition

from .. import errors
from ..daemon import OpenOptions
from .references import Reference, find
from .settings import SECTION, Settings

log = logging.getLogger("sbexportd.serve.editor")

WATCH_GLOB = "**/*.{zip,pkl}"
CLIENT_TIMEOUT = 10.0  # seconds to wait for the client's answer to workspace/configuration & co
MISSING_HINT = ("the path is resolved relative to this document's folder, then to each workspace folder; "
                "check the spelling, or create the file")


@dataclass(frozen=True)
class Checked:
    ref: Reference
    model_id: str | None  # a readable model, open in the daemon for this connection
    error: errors.ServeError | None  # why it cannot be used


@dataclass
class DocState:
    uri: str
    version: int | None
    lines: Sequence[str]
    checked: list[Checked]
    stamps: dict[Path, Any]
    codec: Any

    def range(self, ref: Reference) -> types.Range:
        return _client_range(self.codec, self.lines, ref)

    def stale(self) -> bool:
        return any(_stamp(p) != s for p, s in self.stamps.items())


class Editor:
    def __init__(self, server):
        self.server = server
        self.daemon = server.daemon
        self.settings = Settings()
        self._settings_ready = asyncio.Event()
        self._docs: dict[str, DocState] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._markdown: dict[str, tuple[Any, str, str]] = {}  # modelId -> (entry, vecnormalize setting, text)
        self._tokens = itertools.count(1)
        self._shown_problems: tuple[str, ...] = ()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """On `initialized`: pull the settings, ask the client to watch model files."""
        try:
            if client_supports(self.server, "workspace", "configuration"):
                await self._pull_settings()
            if client_supports(self.server, "workspace", "did_change_watched_files", "dynamic_registration"):
                reg = types.Registration(
                    id="sbexportd-model-files", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                    register_options=types.DidChangeWatchedFilesRegistrationOptions(
                        watchers=[types.FileSystemWatcher(glob_pattern=WATCH_GLOB)]))
                await asyncio.wait_for(self.server.client_register_capability_async(
                    types.RegistrationParams(registrations=[reg])), CLIENT_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - a client that does not answer: defaults, no watching
            log.warning("editor set-up incomplete: %r", e)
        finally:
            self._settings_ready.set()

    async def configuration_changed(self, settings: Any) -> None:
        if isinstance(settings, dict) and SECTION in settings:
            self._apply(Settings.parse(settings[SECTION]))
        elif client_supports(self.server, "workspace", "configuration"):
            await self._pull_settings()  # the pull model: the notification only says "changed"
        else:
            return
        self._settings_ready.set()
        self._markdown.clear()
        for uri in list(self._docs):
            self.check(uri)

    async def _pull_settings(self) -> None:
        params = types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        try:
            result = await asyncio.wait_for(self.server.workspace_configuration_async(params), CLIENT_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            log.warning("workspace/configuration failed: %r", e)
            return
        self._apply(Settings.parse(result[0] if result else None))

    def _apply(self, settings: Settings) -> None:
        self.settings = settings
        if settings.problems and settings.problems != self._shown_problems:
            self.server.window_show_message(types.ShowMessageParams(
                type=types.MessageType.Warning, message="sbexportd settings: " + "; ".join(settings.problems)))
        self._shown_problems = settings.problems

    # -- checking documents ----------------------------------------------------------------
    def check(self, uri: str, delay: float = 0.0) -> None:
        old = self._tasks.get(uri)
        if old is not None and not old.done():
            old.cancel()  # superseded; a model load it started goes on and stays cached
        self._tasks[uri] = asyncio.ensure_future(self._check(uri, delay))

    def forget(self, uri: str) -> None:
        task = self._tasks.pop(uri, None)
        if task is not None and not task.done():
            task.cancel()
        if self._docs.pop(uri, None) is not None:
            self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    def files_changed(self, uris: list[str]) -> None:
        """A model or statistics file changed on disk: check again the documents that
        mention a file (the daemon reloads only what really changed)."""
        for uri, state in list(self._docs.items()):
            if state.checked:
                self.check(uri)

    async def checked(self, uri: str, recheck_stale: bool = False) -> DocState | None:
        """The document's checked references, once its latest check has finished."""
        for _ in range(10):
            task = self._tasks.get(uri)
            if task is None:
                if uri in self._docs or not self._is_open(uri):
                    break
                self.check(uri)
                continue
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled() and task is not self._tasks.get(uri):
                    continue  # superseded by a newer check: wait for that one
                raise
            except Exception:  # noqa: BLE001 - logged by _check
                pass
            if task is self._tasks.get(uri):
                break
        state = self._docs.get(uri)
        if recheck_stale and state is not None and state.stale():  # for clients that do not watch files
            self.check(uri)
            return await self.checked(uri)
        return state

    async def _check(self, uri: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            await asyncio.wait_for(self._settings_ready.wait(), CLIENT_TIMEOUT)
        except TimeoutError:  # a client that never sends `initialized`: defaults
            self._settings_ready.set()
        try:
            doc = self.server.workspace.get_text_document(uri)
            lines, version = doc.lines, doc.version
            allowed = self.daemon.roots.allows if self.daemon.roots else None
            refs = await self.daemon.run(self.daemon.work, find, lines, _doc_dir(doc), self.roots(), allowed)
            vn = self.settings.vecnormalize_option(self.base_folder(uri))
            by_path: dict[tuple[Path, bool], asyncio.Future] = {}
            for ref in refs:
                if ref.exists and (ref.path, ref.is_vecnormalize) not in by_path:
                    by_path[(ref.path, ref.is_vecnormalize)] = asyncio.ensure_future(
                        self._check_file(ref.path, ref.is_vecnormalize, vn))
            checked = []
            for ref in refs:
                if not ref.allowed:
                    checked.append(Checked(ref, None, self._refused(ref)))
                elif not ref.exists:
                    checked.append(Checked(ref, None, _missing(ref)))
                else:
                    mid, err = await by_path[(ref.path, ref.is_vecnormalize)]
                    checked.append(Checked(ref, mid, err))
            stamps = {p: _stamp(p) for ref in refs for p in (ref.tried if not ref.exists else (ref.path,))
                      if allowed is None or allowed(p)}  # (nothing outside --root is looked at)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not end the connection
            log.exception("checking %s failed", uri)
            return
        before = self._docs.get(uri)
        state = DocState(uri, version, lines, checked, stamps, self.server.workspace.position_codec)
        self._docs[uri] = state
        self._publish(state)
        if (before is not None and _summary(before) != _summary(state)
                and client_supports(self.server, "workspace", "code_lens", "refresh_support")):
            self.server.workspace_code_lens_refresh(None)

    async def _check_file(self, path: Path, is_vecnormalize: bool, vn: str | None):
        try:
            roots = self.daemon.roots  # (serve --root: a document names files as a client's params do)
            roots.check(path, "the file")
            if vn not in (None, "auto") and not is_vecnormalize:
                roots.check(vn, "the sbexportd.vecnormalize setting")
            if is_vecnormalize:  # (the config.yml beside an obs_rms.pkl: inside the roots too)
                from ...read import read_vecnormalize
                await self.daemon.run(self.daemon.work, partial(read_vecnormalize, path, confine=roots.confine))
                return None, None
            result = await self.daemon.open(self.server.conn.id, OpenOptions.make(str(path), vn))
            return result["modelId"], None
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the typed error becomes the diagnostic
            err = errors.map_exception(e)
            return None, err if isinstance(err, errors.ServeError) else errors.ServeError(
                errors.ERROR, str(err), "internal")

    def _refused(self, ref: Reference) -> errors.ServeError:
        """path_not_allowed for a reference outside --root, as sbexport/open answers it."""
        err = errors.map_exception(self.daemon.roots.refusal(ref.path, "the file"))
        assert isinstance(err, errors.ServeError)
        return err

    def _publish(self, state: DocState) -> None:
        diags = []
        for c in state.checked:
            if c.error is None:
                continue
            kind = c.error.data.get("kind", "error")
            hint = c.error.data.get("hint")
            diags.append(types.Diagnostic(
                range=state.range(c.ref), message=c.error.message + (f"\n{hint}" if hint else ""),
                severity=types.DiagnosticSeverity.Warning if kind == "file_not_found"
                else types.DiagnosticSeverity.Error,
                code=kind, source="sbexportd", data={"file": str(c.ref.path), "hint": hint}))
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=state.uri, version=state.version, diagnostics=diags))

    # -- what features need ----------------------------------------------------------------------
    async def model_markdown(self, model_id: str, render) -> str:
        entry = await self.daemon.use(model_id)
        setting = self.settings.vecnormalize
        cached = self._markdown.get(model_id)
        if cached is not None and cached[0] is entry and cached[1] == setting:
            return cached[2]
        text = render(entry.model.inspect(), setting)
        self._markdown[model_id] = (entry, setting, text)
        return text

    def server_position(self, uri: str, position: types.Position) -> ServerTextPosition:
        doc = self.server.workspace.get_text_document(uri)
        return doc.position_from_client_units(position)

    def roots(self) -> list[Path]:
        ws = self.server.workspace
        uris = [f.uri for f in ws.folders.values()] or ([ws.root_uri] if ws.root_uri else [])
        return [Path(p) for p in (to_fs_path(u) for u in uris) if p]

    def base_folder(self, uri: str) -> Path | None:
        """The workspace folder holding the document, else the document's folder."""
        path = to_fs_path(uri)
        if not path:
            return None
        doc = Path(path)
        inside = [r for r in self.roots() if r == doc or r in doc.parents]
        return max(inside, key=lambda r: len(r.parts)) if inside else doc.parent

    def export_folder(self, uri: str, model: Path) -> Path:
        folder = Path(os.path.expanduser(self.settings.output_folder))
        if not folder.is_absolute():
            folder = (self.base_folder(uri) or model.parent) / folder
        return folder / model.stem

    def new_token(self) -> str:
        return f"sbexportd-{self.server.conn.id}-{next(self._tokens)}"

    def _is_open(self, uri: str) -> bool:
        try:
            return uri in self.server.workspace.text_documents
        except RuntimeError:  # not initialized
            return False


def document_references(server, uri: str) -> tuple[DocState, list[Reference]]:
    """The references in the document's current text, without reading any model.
    Only an open document has a text: for any other URI pygls would read the file
    from disk (any file, unbounded, on the event loop: a FIFO there stops the
    daemon; outside --root too), so it has none."""
    if not server.editor._is_open(uri):
        return DocState(uri, None, [], [], {}, server.workspace.position_codec), []
    doc = server.workspace.get_text_document(uri)
    lines = doc.lines
    roots = server.editor.daemon.roots
    refs = find(lines, _doc_dir(doc), server.editor.roots(), roots.allows if roots else None)
    return DocState(uri, doc.version, lines, [], {}, server.workspace.position_codec), refs


def client_supports(server, *path: str) -> bool:
    try:
        caps = server.client_capabilities
    except AttributeError:  # before initialize
        return False
    for name in path:
        caps = getattr(caps, name, None)
        if caps is None:
            return False
    return bool(caps)


def _client_range(codec, lines: Sequence[str], ref: Reference) -> types.Range:
    return types.Range(start=codec.position_to_client_units(lines, ServerTextPosition(ref.line, ref.start)),
                       end=codec.position_to_client_units(lines, ServerTextPosition(ref.line, ref.end)))


def _doc_dir(doc) -> Path | None:
    return Path(doc.path).parent if doc.path else None


def _missing(ref: Reference) -> errors.ServeError:
    tried = ", ".join(str(p) for p in ref.tried)
    return errors.ServeError(errors.FILE_NOT_FOUND, f"{ref.text}: no such file (looked for {tried})",
                             "file_not_found", file=str(ref.path), hint=MISSING_HINT)


def _stamp(path: Path):
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def _summary(state: DocState) -> list:
    return [(c.ref.path, c.model_id, None if c.error is None else c.error.data.get("kind")) for c in state.checked]
