"""The LSP language features over model-file references, as thin pygls feature
functions: each finds the document's checked references (state.py) and shapes them
into the answer; reading and understanding go through the daemon's warm cache, so no
feature imports TensorFlow or torch."""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from lsprotocol import types

from ...read import read_vecnormalize
from .markdown import model_hover, problem_hover, vecnormalize_file_hover
from .samples import sample_observation
from .state import Checked, Editor, client_supports, document_references

log = logging.getLogger("sbexportd.serve.editor")

FEATURES: list[tuple[str, Any, Callable]] = []


def feature(name: str, options: Any = None):
    """Collected here, registered on each connection's server by register()."""
    def deco(fn):
        FEATURES.append((name, options, fn))
        return fn
    return deco


def register(server) -> None:
    server.editor = Editor(server)
    for name, options, fn in FEATURES:
        server.feature(name, options)(fn)


# -- lifecycle and synchronization ---------------------------------------------------------------
@feature(types.INITIALIZED)
async def initialized(ls, params: types.InitializedParams):
    await ls.editor.start()


@feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls, params: types.DidOpenTextDocumentParams):
    ls.editor.check(params.text_document.uri)


@feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls, params: types.DidChangeTextDocumentParams):
    ls.editor.check(params.text_document.uri, delay=0.2)  # typing: once it pauses


@feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
def did_save(ls, params: types.DidSaveTextDocumentParams):
    ls.editor.check(params.text_document.uri)


@feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls, params: types.DidCloseTextDocumentParams):
    ls.editor.forget(params.text_document.uri)


@feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def did_change_watched_files(ls, params: types.DidChangeWatchedFilesParams):
    ls.editor.files_changed([c.uri for c in params.changes])


@feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(ls, params: types.DidChangeConfigurationParams):
    await ls.editor.configuration_changed(params.settings)


# -- language features -------------------------------------------------------------------------------
@feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls, params: types.HoverParams) -> types.Hover | None:
    ed: Editor = ls.editor
    state = await ed.checked(params.text_document.uri)
    if state is None:
        return None
    pos = ed.server_position(params.text_document.uri, params.position)
    hit = next((c for c in state.checked if c.ref.contains(pos.line, pos.character)), None)
    if hit is None:
        return None
    if hit.error is not None:
        text = problem_hover(hit.error.message, hit.error.data.get("hint"))
    elif hit.ref.is_vecnormalize:
        stats = await ed.daemon.run(ed.daemon.work, partial(read_vecnormalize, hit.ref.path,
                                                            confine=ed.daemon.roots.confine))
        text = vecnormalize_file_hover(hit.ref.path, stats)
    else:
        assert hit.model_id is not None  # checked without an error: it is open
        text = await ed.model_markdown(hit.model_id, model_hover)
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                       range=state.range(hit.ref))


# links and lenses without options: pygls answers resolveProvider false itself, and
# checking an options object costs every connection ~0.4 ms of CPU
@feature(types.TEXT_DOCUMENT_DOCUMENT_LINK)
def document_link(ls, params: types.DocumentLinkParams) -> list[types.DocumentLink]:
    """From the text alone (no model is read): every reference whose file exists."""
    state, refs = document_references(ls, params.text_document.uri)
    return [types.DocumentLink(range=state.range(ref), target=ref.path.as_uri(), tooltip=f"Open {ref.path}")
            for ref in refs if ref.exists]


@feature(types.TEXT_DOCUMENT_CODE_LENS)
async def code_lens(ls, params: types.CodeLensParams) -> list[types.CodeLens]:
    """Inspect / Export... / Predict sample over each readable model reference: the
    sbexport.* commands with complete arguments (export: the settings' targets into
    <outputFolder>/<model stem>)."""
    ed: Editor = ls.editor
    uri = params.text_document.uri
    lenses: list[types.CodeLens] = []
    state = await ed.checked(uri, recheck_stale=True)
    if state is None:
        return lenses
    for c in state.checked:
        if c.model_id is None:
            continue
        rng = state.range(c.ref)
        entry = await ed.daemon.use(c.model_id)
        export_args = {"modelId": c.model_id, "to": list(ed.settings.targets),
                       "out": str(ed.export_folder(uri, c.ref.path)), "force": ed.settings.overwrite}
        for title, command, args in (
                ("Inspect", "sbexport.inspect", {"modelId": c.model_id}),
                ("Export...", "sbexport.export", export_args),
                ("Predict sample", "sbexport.predict", {"modelId": c.model_id,
                                                        "obs": sample_observation(entry.model.spec)})):
            lenses.append(types.CodeLens(range=rng, command=types.Command(title=title, command=command,
                                                                          arguments=[args])))
    return lenses


# -- server-created progress for workspace/executeCommand (server.py) ----------------------------------
PROGRESS_COMMANDS = frozenset({"sbexport.open", "sbexport.export"})  # the commands with stages to report


def wants_progress(ls, command: str) -> bool:
    """Editors send executeCommand without a workDoneToken (VS Code's client, Neovim):
    when the client supports server-initiated progress, the server makes one."""
    return command in PROGRESS_COMMANDS and client_supports(ls, "window", "work_done_progress")


def with_created_progress(handler):
    """An sbexport.* command handler `f(conn, params, request)` that first asks the
    client for a progress token (window/workDoneProgress/create) and passes it on."""
    async def run(conn, params, request):
        token = await create_progress(conn.server)
        if token is not None:
            params.raw.setdefault("workDoneToken", token)
        try:
            result = handler(conn, params, request)
            return await result if inspect.isawaitable(result) else result
        finally:  # pygls keeps a created token until its progress ends: a command may fail before it begins
            conn.server.work_done_progress.tokens.pop(token, None)
    return run


async def create_progress(ls) -> str | None:
    """window/workDoneProgress/create, awaited: the token, or None if the client refused."""
    token = ls.editor.new_token()
    try:
        await asyncio.wait_for(ls.work_done_progress.create_async(token), 10)
    except Exception as e:  # noqa: BLE001 - no progress then; the command itself runs
        log.debug("window/workDoneProgress/create failed: %r", e)
        return None
    return token


__all__ = ["register", "wants_progress", "with_created_progress", "create_progress", "Checked"]
