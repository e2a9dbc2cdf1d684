// Errors: one class per JSON-RPC error code the daemon sends (protocol.md), all
// subclasses of SbexportdError, which carries the code and the error's data
// ({kind, file, hint} from sbexportd).

export const ErrorCodes = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  SERVER_NOT_INITIALIZED: -32002,
  REQUEST_CANCELLED: -32800,
  ERROR: -33000,
  FILE_NOT_FOUND: -33001,
  BAD_MODEL_FILE: -33002,
  UNSUPPORTED_POLICY: -33003,
  UNKNOWN_MODEL: -33004,
  BAD_OBSERVATION: -33005,
  BACKEND_UNAVAILABLE: -33006,
  EXPORT_FAILED: -33010,
  PARITY_FAILED: -33011,
  OUTPUT_EXISTS: -33012,
  UNAUTHORIZED: -33020,
  PATH_NOT_ALLOWED: -33021,
  MESSAGE_TOO_LARGE: -33030,
});

export class SbexportdError extends Error {
  /**
   * @param {string} message
   * @param {{code?: number|null, data?: any, method?: string, cause?: unknown}} [opts]
   */
  constructor(message, { code = null, data = null, method, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.code = code;
    this.data = data;
    this.method = method;
  }

  /** sbexportd's stable machine-readable word (data.kind), e.g. "file_not_found". */
  get kind() {
    return this.data && typeof this.data === "object" ? this.data.kind ?? null : null;
  }

  get hint() {
    return this.data && typeof this.data === "object" ? this.data.hint ?? null : null;
  }

  get file() {
    return this.data && typeof this.data === "object" ? this.data.file ?? null : null;
  }
}

export class ParseError extends SbexportdError {}
export class InvalidRequestError extends SbexportdError {}
export class MethodNotFoundError extends SbexportdError {}
export class InvalidParamsError extends SbexportdError {}
export class InternalError extends SbexportdError {}
export class NotInitializedError extends SbexportdError {}
/** The request was cancelled (an AbortSignal fired, or the daemon stopped it). Nothing was written. */
export class CancelledError extends SbexportdError {}
export class FileNotFoundError extends SbexportdError {}
export class BadModelFileError extends SbexportdError {}
export class UnsupportedPolicyError extends SbexportdError {}
export class UnknownModelError extends SbexportdError {}
export class BadObservationError extends SbexportdError {}
export class BackendUnavailableError extends SbexportdError {}
export class ExportFailedError extends SbexportdError {}
export class ParityFailedError extends ExportFailedError {}
export class OutputExistsError extends SbexportdError {}
export class UnauthorizedError extends SbexportdError {}
export class PathNotAllowedError extends SbexportdError {}
export class MessageTooLargeError extends SbexportdError {}
/** The connection to the daemon ended (or could not be made); code is null. */
export class ConnectionError extends SbexportdError {}

const BY_CODE = new Map([
  [ErrorCodes.PARSE_ERROR, ParseError],
  [ErrorCodes.INVALID_REQUEST, InvalidRequestError],
  [ErrorCodes.METHOD_NOT_FOUND, MethodNotFoundError],
  [ErrorCodes.INVALID_PARAMS, InvalidParamsError],
  [ErrorCodes.INTERNAL_ERROR, InternalError],
  [ErrorCodes.SERVER_NOT_INITIALIZED, NotInitializedError],
  [ErrorCodes.REQUEST_CANCELLED, CancelledError],
  [ErrorCodes.FILE_NOT_FOUND, FileNotFoundError],
  [ErrorCodes.BAD_MODEL_FILE, BadModelFileError],
  [ErrorCodes.UNSUPPORTED_POLICY, UnsupportedPolicyError],
  [ErrorCodes.UNKNOWN_MODEL, UnknownModelError],
  [ErrorCodes.BAD_OBSERVATION, BadObservationError],
  [ErrorCodes.BACKEND_UNAVAILABLE, BackendUnavailableError],
  [ErrorCodes.EXPORT_FAILED, ExportFailedError],
  [ErrorCodes.PARITY_FAILED, ParityFailedError],
  [ErrorCodes.PATH_NOT_ALLOWED, PathNotAllowedError],
  [ErrorCodes.OUTPUT_EXISTS, OutputExistsError],
  [ErrorCodes.UNAUTHORIZED, UnauthorizedError],
  [ErrorCodes.MESSAGE_TOO_LARGE, MessageTooLargeError],
]);

/** The error class for a JSON-RPC error code (SbexportdError for codes without one). */
export function errorClassFor(code) {
  return BY_CODE.get(code) ?? SbexportdError;
}

/** A JSON-RPC error object {code, message, data} -> an SbexportdError subclass instance. */
export function fromRpcError({ code, message, data }, method) {
  const Cls = errorClassFor(code);
  return new Cls(message, { code, data: data ?? null, method });
}
