"""JSON-RPC error codes of the daemon, and the mapping of sbexportd's typed errors
onto them. Every error's `data` is {"kind", "file", "hint"}: what went wrong in a
stable machine-readable word, the file concerned (or null), and what to do."""
from __future__ import annotations

import logging
from typing import Any

from pygls.exceptions import JsonRpcException

from .. import errors as E
from ..realize.backends import BACKENDS
from ..understand.spec import ACTIVATIONS

log = logging.getLogger("sbexportd.serve")

# JSON-RPC 2.0
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# LSP
SERVER_NOT_INITIALIZED = -32002
REQUEST_CANCELLED = -32800
# sbexportd: outside both reserved ranges (-32099..-32000 JSON-RPC, -32899..-32800 LSP)
FILE_NOT_FOUND = -33001
BAD_MODEL_FILE = -33002
UNSUPPORTED_POLICY = -33003
UNKNOWN_MODEL = -33004
BAD_OBSERVATION = -33005
BACKEND_UNAVAILABLE = -33006
EXPORT_FAILED = -33010
PARITY_FAILED = -33011
OUTPUT_EXISTS = -33012
UNAUTHORIZED = -33020
PATH_NOT_ALLOWED = -33021
MESSAGE_TOO_LARGE = -33030
TOO_MANY_CONNECTIONS = -33031
TIMEOUT = -33032
ERROR = -33000  # an sbexportd error of no more specific family

HINTS = {
    "parse_error": "frame each message as 'Content-Length: <bytes>\\r\\n\\r\\n' + body; the body is UTF-8 JSON "
                   "(or msgpack with 'Content-Type: application/msgpack')",
    "bad_frame": "frame each message as 'Content-Length: <bytes>\\r\\n[Content-Type: ...\\r\\n]\\r\\n' + body",
    "unsupported_content_type": "use 'application/vscode-jsonrpc; charset=utf-8' (JSON) or 'application/msgpack'",
    "message_too_large": "split the batch into smaller requests, or start the daemon with a larger "
                         "--max-message-bytes",
    "batch_too_large": "split the observations into smaller predicts, or start the daemon with a larger "
                       "--max-predict-values",
    "too_many_connections": "close idle connections or try again later; the daemon's --max-connections sets "
                            "the limit",
    "timeout": "send each frame's header at once and keep its body coming; connections idle longer than "
               "--idle-timeout are closed: connect again",
    "invalid_request": "send a JSON-RPC 2.0 object: {\"jsonrpc\": \"2.0\", \"id\": <int|string>, \"method\": ..., "
                       "\"params\": {...}} (batches are not supported)",
    "method_not_found": "see protocol.md for the methods; sbexport/* methods take one params object",
    "invalid_params": "see protocol.md for this method's params",
    "not_initialized": "send initialize (then the initialized notification) before any other request",
    "shutting_down": "the connection was shut down; send exit, then connect again",
    "already_initialized": "initialize once per connection",
    "unauthorized": "present the daemon's token as initialize's initializationOptions.token: clients find it "
                    "in the daemon's connection file (protocol.md, Authentication), or SBEXPORTD_TOKEN",
    "path_not_allowed": "name files and folders inside the daemon's --root folders",
    "file_not_found": "check the path: it is read on the daemon's machine, relative to the daemon's working "
                      "directory",
    "bad_model_file": "pass a Stable Baselines 2 save file (.zip, or a legacy cloudpickle .pkl); the message "
                      "says what was wrong with this one",
    "bad_vecnormalize_file": "pass the vecnormalize.pkl / obs_rms.pkl the agent was trained with, its folder, "
                             "or 'auto'",
    "unsupported_policy": "if detection was wrong, pass algo (and activation for a custom policy class) to "
                          "sbexport/open; otherwise this policy is not supported",
    "unknown_model": "call sbexport/open first and use the modelId it returns (closed models are forgotten)",
    "bad_observation": "send observations shaped like the observation space, or a batch of them; recurrent "
                       "policies take state (N, 2*n_lstm) and mask (N,); sbexport/inspect shows the input",
    "unknown_output": "ask only for outputs the model has (sbexport/inspect lists them)",
    "unknown_parameter": "ask only for parameter names sbexport/parameters lists",
    "invalid_argument": "the message says what the parameter accepts; see protocol.md for this method's params",
    "unknown_activation": f"choose activation from {', '.join(ACTIVATIONS)} (the hidden activation of a custom "
                          "policy class whose code is not in the file)",
    "invalid_spec": "this program breaks the op contract (docs/portable.md): if it came from an SB2 file, please "
                    "report it with the file",
    "bad_export_folder": "pass a folder `sbexportd export` wrote (its manifest.json and files, unchanged), of a "
                         "target whose runtime is installed",
    "backend_unavailable": f"choose backend {', '.join(BACKENDS)} (the default is the fastest one verified on "
                           "the model; sbexport/open's fastPath says why another is not used)",
    "target_unavailable": "choose targets from sbexport/targets, or 'all'",
    "export_failed": "the message says which target failed and why; other targets may still work",
    "not_representable": "the target cannot hold this policy exactly; the message says why and what is closest "
                         "(other targets still export it)",
    "unknown_environment": "pass env: a gymnasium id (old gym ids map to their successors); install the package "
                           "that registers it",
    "parity_failed": "the export does not reproduce the policy; pass verify=false to keep it anyway",
    "output_exists": "pass force=true to replace the existing export, or choose another out folder",
    "os_error": "check that the daemon can read the input and write the out folder",
    "cancelled": "nothing was written; send the request again to retry",
    "error": "the message says what went wrong and what was expected",
    "internal": "a bug in sbexportd: please report it with the message",
}


class ServeError(JsonRpcException):
    """A JSON-RPC error with sbexportd's data: pygls sends it as the response."""

    data: dict[str, Any]  # always {kind, file, hint}

    def __init__(self, code: int, message: str, kind: str, *, file: str | None = None, hint: str | None = None):
        super().__init__(message=message, code=code,
                         data={"kind": kind, "file": file, "hint": hint or HINTS.get(kind, HINTS["internal"])})
        self.kind = kind

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "data": self.data}


def invalid_params(message: str, kind: str = "invalid_params") -> ServeError:
    return ServeError(INVALID_PARAMS, message, kind)


def unknown_model(model_id) -> ServeError:
    return ServeError(UNKNOWN_MODEL, f"unknown modelId {model_id!r}", "unknown_model")


def cancelled(what: str = "request") -> ServeError:
    return ServeError(REQUEST_CANCELLED, f"{what} cancelled; nothing was written", "cancelled")


def error_object(err: JsonRpcException) -> dict[str, Any]:
    """A JSON-RPC error object (pygls' own exceptions have no to_dict)."""
    return {"code": err.code, "message": err.message, "data": err.data}


def none_exported(failed: list, failures: list[dict]) -> JsonRpcException:
    """An export request none of whose targets could be made: the one target's
    error, or for several one error of their common code (else export_failed)
    whose data.failed lists each target's error."""
    if len(failures) == 1:
        err = map_exception(failed[0][1])
    else:
        codes = {f["error"]["code"] for f in failures}
        kinds = {f["error"]["data"]["kind"] for f in failures}
        code = codes.pop() if len(codes) == 1 else EXPORT_FAILED
        kind = kinds.pop() if len(kinds) == 1 else "export_failed"
        err = ServeError(code, "no target could be exported: " + "; ".join(
            f"{f['target']}: {f['error']['message']}" for f in failures), kind)
    if isinstance(err, ServeError):
        err.data["failed"] = failures
    return err


# sbexportd error class -> JSON-RPC code, most specific first
_FAMILIES: tuple[tuple[type, int], ...] = (
    (E.Cancelled, REQUEST_CANCELLED),
    (E.PathNotAllowed, PATH_NOT_ALLOWED),
    (E.OutputExists, OUTPUT_EXISTS),
    (E.ParityFailed, PARITY_FAILED),
    (E.ExportError, EXPORT_FAILED),
    (E.ModelFileError, BAD_MODEL_FILE),
    (E.UnsupportedModel, UNSUPPORTED_POLICY),
    (E.BadObservation, BAD_OBSERVATION),
    (E.BackendUnavailable, BACKEND_UNAVAILABLE),
    (E.InvalidArgument, INVALID_PARAMS),
)


def map_exception(exc: BaseException) -> JsonRpcException:
    """Any exception a method raised -> the JSON-RPC error sent for it."""
    if isinstance(exc, JsonRpcException):
        return exc
    if isinstance(exc, E.SbExportError):
        code = next((c for cls, c in _FAMILIES if isinstance(exc, cls)), ERROR)
        kind = exc.code
        hint = HINTS.get(kind)
        if hint is None:  # a subclass code (truncated_file, unknown_policy, ...): its family's hint
            family = {BAD_MODEL_FILE: "bad_model_file", UNSUPPORTED_POLICY: "unsupported_policy",
                      EXPORT_FAILED: "export_failed", INVALID_PARAMS: "invalid_params"}.get(code, "error")
            hint = HINTS[family]
        return ServeError(code, str(exc), kind, file=exc.path, hint=hint)
    if isinstance(exc, FileNotFoundError):
        return ServeError(FILE_NOT_FOUND, f"{exc.filename}: no such file or directory", "file_not_found",
                          file=exc.filename)
    if isinstance(exc, OSError):
        return ServeError(ERROR, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), "os_error",
                          file=exc.filename)
    log.error("internal error", exc_info=(type(exc), exc, exc.__traceback__))
    return ServeError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}", "internal")
