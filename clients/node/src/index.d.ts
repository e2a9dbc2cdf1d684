// Type declarations of sbexportd-client (hand-written; the package is plain ESM JavaScript).
/// <reference types="node" />
import { EventEmitter } from "node:events";
import { ChildProcess } from "node:child_process";

export { readPortable, PortablePolicy } from "./portable.js";

// -- arrays --------------------------------------------------------------------------------
export type DType =
  | "float32" | "float64" | "int8" | "int16" | "int32" | "int64"
  | "uint8" | "uint16" | "uint32" | "uint64" | "bool";

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint8ClampedArray | Uint16Array | Uint32Array | BigUint64Array;

/** An n-dimensional array: C-order `data`; int64 is a BigInt64Array, bool a Uint8Array. */
export interface NDArray<T extends TypedArray = TypedArray> {
  dtype: DType;
  shape: number[];
  data: T;
}

/** An NDArray whose dtype may be left out (taken from the typed array). */
export interface NDArrayLike<T extends TypedArray = TypedArray> {
  dtype?: DType;
  shape: number[];
  data: T;
}

/** Nested plain arrays of numbers (any depth). */
export type NestedNumbers = number | NestedNumbers[];

/** What array parameters accept: an NDArray, a bare typed array (one dimension) or nested arrays. */
export type ArrayInput = NDArrayLike | TypedArray | NestedNumbers;

export declare const TYPED: Readonly<Record<DType, new (n: number) => TypedArray>>;
export declare function ndarray<T extends TypedArray>(data: T, shape?: number[], dtype?: DType): NDArray<T>;
/** Any ArrayInput -> NDArray (nested arrays become `dtype`, default float64). */
export declare function toNDArray(value: ArrayInput, dtype?: DType): NDArray;
/** A copy in another dtype (the same object when it already has it). */
export declare function astype(arr: NDArray, dtype: DType): NDArray;
export declare function dtypeOf(data: TypedArray): DType;
/** Nested plain arrays (numbers; int64 values stay bigints). */
export declare function toNested(arr: NDArray): any;

// -- errors ------------------------------------------------------------------------------------
export declare const ErrorCodes: Readonly<{
  PARSE_ERROR: -32700;
  INVALID_REQUEST: -32600;
  METHOD_NOT_FOUND: -32601;
  INVALID_PARAMS: -32602;
  INTERNAL_ERROR: -32603;
  SERVER_NOT_INITIALIZED: -32002;
  REQUEST_CANCELLED: -32800;
  ERROR: -33000;
  FILE_NOT_FOUND: -33001;
  BAD_MODEL_FILE: -33002;
  UNSUPPORTED_POLICY: -33003;
  UNKNOWN_MODEL: -33004;
  BAD_OBSERVATION: -33005;
  BACKEND_UNAVAILABLE: -33006;
  EXPORT_FAILED: -33010;
  PARITY_FAILED: -33011;
  OUTPUT_EXISTS: -33012;
  UNAUTHORIZED: -33020;
  MESSAGE_TOO_LARGE: -33030;
}>;

/** sbexportd's error data: a stable machine-readable word, the file concerned, what to do. */
export interface ErrorData {
  kind: string;
  file: string | null;
  hint: string | null;
  [key: string]: unknown;
}

/** Every error of this package. `code` is the JSON-RPC error code (null: client side). */
export declare class SbexportdError extends Error {
  constructor(message: string, opts?: { code?: number | null; data?: unknown; method?: string; cause?: unknown });
  code: number | null;
  data: ErrorData | null;
  /** The JSON-RPC method that failed. */
  method?: string;
  /** data.kind, e.g. "file_not_found", "truncated_file", "cancelled". */
  readonly kind: string | null;
  readonly hint: string | null;
  readonly file: string | null;
}
export declare class ParseError extends SbexportdError {}
export declare class InvalidRequestError extends SbexportdError {}
export declare class MethodNotFoundError extends SbexportdError {}
export declare class InvalidParamsError extends SbexportdError {}
export declare class InternalError extends SbexportdError {}
export declare class NotInitializedError extends SbexportdError {}
/** -32800: an AbortSignal fired (or the daemon shut down); nothing was written. */
export declare class CancelledError extends SbexportdError {}
/** -33001 */
export declare class FileNotFoundError extends SbexportdError {}
/** -33002 */
export declare class BadModelFileError extends SbexportdError {}
/** -33003 */
export declare class UnsupportedPolicyError extends SbexportdError {}
/** -33004 */
export declare class UnknownModelError extends SbexportdError {}
/** -33005 */
export declare class BadObservationError extends SbexportdError {}
/** -33006 */
export declare class BackendUnavailableError extends SbexportdError {}
/** -33010 */
export declare class ExportFailedError extends SbexportdError {}
/** -33011 (also an ExportFailedError) */
export declare class ParityFailedError extends ExportFailedError {}
/** -33012 */
export declare class OutputExistsError extends SbexportdError {}
/** -33020 */
export declare class UnauthorizedError extends SbexportdError {}
/** -33030 */
export declare class MessageTooLargeError extends SbexportdError {}
/** The connection could not be made, or ended. */
export declare class ConnectionError extends SbexportdError {}
export declare function errorClassFor(code: number): typeof SbexportdError;
export declare function fromRpcError(error: { code: number; message: string; data?: unknown }, method?: string): SbexportdError;

// -- the daemon client ---------------------------------------------------------------------------
export type Encoding = "msgpack" | "json";

export interface SpawnOptions {
  /** Python with sbexportd installed (default $SBEXPORTD_PYTHON or python3). */
  python?: string;
  /** Default ["-m", "sbexportd.cli", "serve", "--stdio"]. */
  args?: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export type ConnectOptions = ({ port: number; host?: string } | { spawn: SpawnOptions | true }) & {
  /** Body encoding of requests (default "msgpack"); arrays travel as raw bytes either way (base64 in JSON). */
  encoding?: Encoding;
  /** The daemon's --token, sent as initializationOptions.token. */
  token?: string;
};

/** A $/progress value with its token and the request's method. */
export interface ProgressEvent {
  token: string;
  method: string;
  kind: "begin" | "report" | "end";
  title?: string;
  message?: string;
  percentage?: number;
  cancellable?: boolean;
}

export interface RequestOptions {
  /** Aborting sends $/cancelRequest; the request then rejects with CancelledError (if the daemon had not finished). */
  signal?: AbortSignal;
  /** This request's body encoding (default: the connection's). */
  encoding?: Encoding;
}

export interface ProgressOptions extends RequestOptions {
  /** Called with each $/progress of this request (a workDoneToken is added). */
  onProgress?: (event: ProgressEvent) => void;
}

export interface Space {
  type: "Box" | "Discrete" | "MultiDiscrete" | "MultiBinary" | "Dict";
  shape?: number[];
  dtype?: string;
  low?: number | string | Array<number | string>;
  high?: number | string | Array<number | string>;
  n?: number;
  nvec?: number[];
  spaces?: Record<string, Space>;
}

export interface ModelSummary {
  file: string;
  format: string;
  sha256: string;
  algorithm: string;
  policy: string;
  observation_space: Space;
  action_space: Space;
  input: { name: "obs"; dtype: string; shape: Array<number | null> };
  recurrent: { n_lstm: number; state_shape: [null, number] } | null;
  goal_keys: string[] | null;
  /** The daemon's output names: actions, probs | probs_<i>, mean, std, values, q_values, state. */
  outputs: string[];
  vecnormalize: boolean;
}

export interface OpenOptions extends ProgressOptions {
  /** vecnormalize.pkl / obs_rms.pkl path (on the daemon's machine), its folder, or "auto". */
  vecnormalize?: string;
  algo?: string;
  activation?: string;
  /** Backends to build now (default ["numpy"]). */
  backends?: Array<"numpy" | "tensorflow" | "torch">;
}

export interface OpenResult {
  modelId: string;
  cached: boolean;
  seconds: number;
  summary: ModelSummary;
}

export interface ParametersOptions extends RequestOptions {
  names?: string[];
  /** Include each parameter's value as an NDArray. */
  values?: boolean;
}

export interface ParameterInfo {
  name: string;
  shape: number[];
  dtype: string;
  size: number;
  min: number;
  max: number;
  mean: number;
  std: number;
  value?: NDArray;
  [key: string]: unknown;
}

export interface ParametersResult {
  modelId: string;
  count: number;
  totalValues: number;
  parameters: ParameterInfo[];
}

export interface PredictOptions extends RequestOptions {
  /** Recurrent policies: (N, 2*n_lstm) float32; zeros when left out. */
  state?: ArrayInput;
  /** Recurrent policies: (N,) 1.0 at episode starts; zeros when left out. */
  mask?: ArrayInput;
  /** Default true (SB2's predict(deterministic=True)); false samples like SB2. */
  deterministic?: boolean;
  seed?: number;
  backend?: "numpy" | "tensorflow" | "torch";
  /** Only these outputs ("probs" covers probs_<i>; a recurrent policy always returns state). */
  outputs?: string[];
}

/**
 * The daemon's outputs by its names: actions (int64 for Discrete / MultiDiscrete,
 * float32 otherwise), probs / probs_<i>, mean, std, values, q_values, state.
 */
export type PredictResult = Record<string, NDArray>;

/** obs for predict: an array, or (HER models) the goal dict by key. */
export type Observation = ArrayInput | Record<string, ArrayInput>;

export interface ExportOptions extends ProgressOptions {
  /** "tfjs", "tfjs,onnx,portable", ["onnx", "portable"] or "all". */
  to: string | string[];
  /** Output folder on the daemon's machine: one subfolder per target. */
  out: string;
  force?: boolean;
  verify?: boolean;
}

export interface ExportTargetResult {
  target: string;
  path: string;
  files: Array<{ path: string; bytes: number; sha256: string }>;
  bytes: number;
  parity: Record<string, unknown> | null;
  manifest: Manifest;
  cached: boolean;
  seconds: number;
}

export interface ExportResult {
  modelId: string;
  out: string;
  results: ExportTargetResult[];
}

export interface ServerCapabilities {
  version: string;
  protocolVersion: string;
  targets: string[];
  algorithms: string[];
  backends: string[];
  encodings: string[];
}

export declare const VERSION: string;

/** Connect to a daemon (TCP, or a spawned `sbexportd serve --stdio`) and initialize. */
export declare function connect(options: ConnectOptions): Promise<Client>;

export declare class Client extends EventEmitter {
  readonly encoding: Encoding;
  /** The spawned daemon (connect({spawn})), else null. */
  readonly child: ChildProcess | null;
  closed: boolean;
  /** The last 16 KiB the spawned daemon wrote on stderr. */
  stderr: string;
  serverInfo: { name: string; version?: string } | null;
  /** initialize's capabilities.experimental.sbexportd. */
  capabilities: ServerCapabilities | null;

  /** Any JSON-RPC request (params as an object). */
  request<T = any>(method: string, params?: object, options?: ProgressOptions & { progress?: boolean }): Promise<T>;
  open(path: string, options?: OpenOptions): Promise<Model>;
  inspect(model: Model | string, options?: RequestOptions): Promise<Record<string, any>>;
  parameters(model: Model | string, options?: ParametersOptions): Promise<ParametersResult>;
  predict(model: Model | string, obs: Observation, options?: PredictOptions): Promise<PredictResult>;
  export(model: Model | string, options: ExportOptions): Promise<ExportResult>;
  /** sbexport/close: the daemon forgets this modelId. */
  closeModel(model: Model | string, options?: RequestOptions): Promise<{ modelId: string; closed: boolean; stillOpenElsewhere: boolean }>;
  status(options?: RequestOptions): Promise<Record<string, any>>;
  targets(options?: RequestOptions): Promise<{ targets: Array<{ name: string; summary: string }> }>;
  /** shutdown + exit, then the socket / pipes end (a spawned daemon exits). */
  close(options?: { timeoutMs?: number }): Promise<void>;

  on(event: "progress", listener: (event: ProgressEvent) => void): this;
  on(event: "close", listener: () => void): this;
  on(event: "stderr", listener: (text: string) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** An open model (from Client.open). */
export declare class Model {
  readonly client: Client;
  readonly id: string;
  readonly summary: ModelSummary;
  readonly cached: boolean;
  readonly seconds: number;
  inspect(options?: RequestOptions): Promise<Record<string, any>>;
  parameters(options?: ParametersOptions): Promise<ParametersResult>;
  predict(obs: Observation, options?: PredictOptions): Promise<PredictResult>;
  export(options: ExportOptions): Promise<ExportResult>;
  close(options?: RequestOptions): Promise<{ modelId: string; closed: boolean; stillOpenElsewhere: boolean }>;
}

export interface StartDaemonOptions {
  python?: string;
  /** HOST:PORT for --tcp (default 127.0.0.1:0: any free port). */
  listen?: string;
  /** More `serve` arguments (e.g. ["--token", "t"]). */
  extraArgs?: string[];
  /** The whole command line after python (replaces listen and extraArgs). */
  args?: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export interface RunningDaemon {
  host: string;
  port: number;
  pid: number | undefined;
  process: ChildProcess;
  stderr(): string;
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `python -m sbexportd.cli serve --tcp 127.0.0.1:0` and wait for "listening on HOST:PORT". */
export declare function startDaemon(options?: StartDaemonOptions): Promise<RunningDaemon>;

// -- exports run locally ----------------------------------------------------------------------------
export interface TensorSpec {
  name: string;
  dtype: string;
  shape: Array<number | null>;
}

/** An export's manifest.json. */
export interface Manifest {
  format: "sbexportd-export";
  format_version: number;
  sbexportd_version: string;
  target: string;
  files: Array<{ path: string; bytes: number; sha256: string }>;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  preprocessing: string[];
  postprocessing: string;
  observation_space: Space;
  action_space: Space;
  goal_observation: { keys: string[]; note: string } | null;
  vecnormalize: { applied: boolean; source?: string; epsilon?: number; clip_obs?: number };
  source: Record<string, string>;
  parity: Record<string, unknown>;
  notes: string[];
}

export interface LoadExportOptions {
  /** With a folder of several exports (the export's `out`): which one. */
  target?: "tfjs" | "onnx" | "portable";
  /** TensorFlow.js backend: "cpu" (default) or "wasm"; global to the process. */
  backend?: "cpu" | "wasm";
  /** onnxruntime-node InferenceSession options. */
  sessionOptions?: Record<string, unknown>;
  /**
   * The manifest itself, for a folder without manifest.json (sbexportd's own check of
   * an export before it writes the manifest); `dir` is then the export's folder.
   */
  manifest?: Manifest;
}

/**
 * Outputs by the export convention's names: action (int64 for Discrete /
 * MultiDiscrete, float32 otherwise), probs / probs_<i>, mean, std, values, q_values,
 * state. (The daemon's predict names the action `actions`.)
 */
export type ExportOutputs = Record<string, NDArray>;

export declare class LoadedExport {
  readonly dir: string;
  readonly manifest: Manifest;
  readonly target: "tfjs" | "onnx" | "portable";
  /** What runs it, e.g. "onnxruntime-node 1.30.0 (CPU, Node v20...)". */
  readonly runtime: string;
  readonly inputs: TensorSpec[];
  readonly outputNames: string[];
  readonly obsShape: number[];
  readonly obsDtype: string;
  readonly recurrent: boolean;
  readonly stateSize: number;
  readonly actionDtype: "int64" | "float32";
  /** HER agents: the goal dict's keys in the order they are concatenated into obs, else null. */
  readonly goalKeys: string[] | null;
  /** One observation (unbatched outputs) or a batch; HER agents also take the goal dict. */
  predict(obs: Observation, options?: { state?: ArrayInput; mask?: ArrayInput }): Promise<ExportOutputs>;
  run(feeds: { obs: Observation; state?: ArrayInput; mask?: ArrayInput }): Promise<ExportOutputs>;
  dispose(): void;
}

/** Load out/<target>/ (a folder with manifest.json), or loadExport(out, {target}). */
export declare function loadExport(dir: string, options?: LoadExportOptions): Promise<LoadedExport>;
