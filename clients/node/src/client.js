// The daemon client: JSON-RPC (vscode-jsonrpc) over a TCP socket or a spawned
// `sbexportd serve --stdio`, bodies in msgpack or JSON per message.
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { createConnection } from "node:net";
import rpc from "vscode-jsonrpc/node";

import { decodeWire, encodeWire, isNDArray, isTypedArray, isWireArray, toNDArray } from "./arrays.js";
import { findConnection, readConnectionFile, runtimeDir } from "./connection.js";
import { CancelledError, ConnectionError, ErrorCodes, SbexportdError, fromRpcError } from "./errors.js";
import { FrameReader, FrameWriter, markMsgpack } from "./transport.js";

const { createMessageConnection, CancellationTokenSource, ProgressType, ResponseError, NullLogger } = rpc;

export const VERSION = "0.1.0";
export const PROTOCOL_MAJOR = "1";
const PROGRESS = new ProgressType();
const DEFAULT_PYTHON = () => process.env.SBEXPORTD_PYTHON || "python3";
const STDERR_KEEP = 16 * 1024;
let clientCount = 0;

/**
 * Connect to a daemon and initialize the connection.
 *   connect()                                   the running daemon this user started last (its connection file)
 *   connect({connectionFile})                   the daemon that connection file describes
 *   connect({port, host})                       a daemon listening on TCP (sbexportd serve --tcp)
 *   connect({spawn: {python, args, cwd, env}})  start `python -m sbexportd.cli serve --stdio` and talk on its pipes
 * Options: encoding ("msgpack" default, or "json"), token (initializationOptions.token; by
 * default the token of the daemon's connection file, else $SBEXPORTD_TOKEN).
 */
export async function connect(options = {}) {
  const encoding = options.encoding ?? "msgpack";
  if (encoding !== "msgpack" && encoding !== "json") throw new TypeError(`encoding must be "msgpack" or "json"`);
  let readable, writable, child = null, socket = null;
  let token = options.token ?? null;
  if (!options.spawn && options.port === undefined) { // find the daemon
    const info = options.connectionFile ? readConnectionFile(options.connectionFile) : findConnection();
    if (!info) {
      throw new ConnectionError(`no running sbexportd daemon found: no live connection file in ${runtimeDir()} `
        + "(start one with `sbexportd serve --tcp 127.0.0.1:0`, or pass {port, host})");
    }
    options = { ...options, port: info.port, host: info.host };
    token = token ?? info.token ?? null;
  } else if (!options.spawn && token === null) { // the token of the daemon at that port
    const info = options.connectionFile ? readConnectionFile(options.connectionFile)
      : findConnection({ host: options.host ?? "127.0.0.1", port: options.port });
    token = info?.token ?? process.env.SBEXPORTD_TOKEN ?? null;
  }
  if (options.spawn) {
    const sp = options.spawn === true ? {} : options.spawn;
    const python = sp.python ?? DEFAULT_PYTHON();
    const args = sp.args ?? ["-m", "sbexportd.cli", "serve", "--stdio"];
    child = spawn(python, args, { cwd: sp.cwd, env: sp.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    await new Promise((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", (err) => reject(new ConnectionError(`cannot start ${python}: ${err.message}`, { cause: err })));
    });
    readable = child.stdout;
    writable = child.stdin;
  } else if (options.port !== undefined) {
    socket = createConnection({ port: options.port, host: options.host ?? "127.0.0.1" });
    socket.setNoDelay(true);
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", (err) => reject(new ConnectionError(
        `cannot connect to ${options.host ?? "127.0.0.1"}:${options.port}: ${err.message}`, { cause: err })));
    });
    readable = writable = socket;
  } else {
    throw new TypeError("connect: pass {port, host}, {connectionFile} or {spawn: {python, args}}");
  }
  const client = new Client({ readable, writable, child, socket, encoding });
  try {
    await client._initialize(options.spawn ? null : token);
  } catch (err) {
    client._teardown();
    throw err;
  }
  return client;
}

export class Client extends EventEmitter {
  constructor({ readable, writable, child, socket, encoding }) {
    super();
    this.id = ++clientCount;
    this.encoding = encoding;
    this.child = child;
    this.socket = socket;
    this.closed = false;
    this.stderr = "";
    this._tokens = 0;
    this.serverInfo = null;
    this.capabilities = null;
    if (child) {
      child.stderr.on("data", (chunk) => {
        const text = chunk.toString("utf8");
        this.stderr = (this.stderr + text).slice(-STDERR_KEEP);
        this.emit("stderr", text);
      });
      this._exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    }
    this.reader = new FrameReader(readable);
    this.writer = new FrameWriter(writable);
    this.conn = createMessageConnection(this.reader, this.writer, NullLogger);
    this.conn.onRequest("window/workDoneProgress/create", () => null);
    this.conn.onNotification(() => {});
    this.conn.onUnhandledProgress(() => {});
    this.conn.onError(() => {}); // surfaced as rejected requests
    this.conn.onClose(() => this._lost());
    // vscode-jsonrpc settles pending requests only on dispose: a daemon that dies (or a
    // socket that breaks) must not leave them waiting forever
    readable.once("close", () => this._lost());
    readable.once("end", () => this._lost());
    this.conn.listen();
  }

  async _initialize(token) {
    const result = await this.request("initialize", {
      processId: process.pid,
      clientInfo: { name: "sbexportd-client (node)", version: VERSION },
      rootUri: null,
      capabilities: { window: { workDoneProgress: true } },
      ...(token !== null ? { initializationOptions: { token } } : {}),
    }, { encoding: "json" });
    this.serverInfo = result.serverInfo ?? null;
    this.capabilities = result.capabilities?.experimental?.sbexportd ?? null;
    const major = String(this.capabilities?.protocolVersion ?? "").split(".")[0];
    if (major !== PROTOCOL_MAJOR) {
      throw new ConnectionError(`the daemon speaks protocol ${this.capabilities?.protocolVersion ?? "(none)"}; `
        + `this client was written for ${PROTOCOL_MAJOR}.x (protocol.md)`);
    }
    await this.conn.sendNotification("initialized", {});
    return result;
  }

  /**
   * Any request. options: signal (AbortSignal: sends $/cancelRequest), encoding
   * ("msgpack" | "json", default the connection's), onProgress (adds a
   * workDoneToken and calls back with each $/progress value).
   */
  async request(method, params, options = {}) {
    const { signal, onProgress, progress } = options;
    const encoding = options.encoding ?? this.encoding;
    if (this.closed) throw new ConnectionError(`${method}: the connection is closed`, { method });
    if (signal?.aborted) {
      throw new CancelledError(`${method} aborted before it was sent`, {
        code: ErrorCodes.REQUEST_CANCELLED, data: { kind: "cancelled", file: null, hint: null }, method,
        cause: signal.reason,
      });
    }
    let body = params ?? {};
    let progressSub = null;
    if ((onProgress || progress) && typeof body === "object") {
      const wdt = `sbx-${this.id}-${++this._tokens}`;
      body = { ...body, workDoneToken: wdt };
      progressSub = this.conn.onProgress(PROGRESS, wdt, (value) => {
        const event = { token: wdt, method, ...value };
        this.emit("progress", event);
        if (onProgress) {
          try {
            onProgress(event);
          } catch { /* a throwing callback must not break the connection */ }
        }
      });
    }
    if (encoding === "msgpack" && typeof body === "object") markMsgpack(body);
    let cts = null, onAbort = null;
    if (signal) {
      cts = new CancellationTokenSource();
      onAbort = () => cts.cancel();
      signal.addEventListener("abort", onAbort, { once: true });
    }
    try {
      return cts ? await this.conn.sendRequest(method, body, cts.token) : await this.conn.sendRequest(method, body);
    } catch (err) {
      throw this._error(err, method);
    } finally {
      if (signal) signal.removeEventListener("abort", onAbort);
      cts?.dispose();
      progressSub?.dispose();
    }
  }

  _error(err, method) {
    if (err instanceof SbexportdError) return err;
    if (err instanceof ResponseError) {
      if (err.code === -32097 || err.code === -32096) {
        return new ConnectionError(`${method}: the connection to the daemon ended${this._stderrTail()}`,
          { method, cause: err });
      }
      return fromRpcError({ code: err.code, message: err.message, data: err.data }, method);
    }
    if (err instanceof rpc.ConnectionError || this.closed) {
      return new ConnectionError(`${method}: ${err.message}${this._stderrTail()}`, { method, cause: err });
    }
    return new SbexportdError(`${method}: ${err?.message ?? err}`, { method, cause: err });
  }

  _stderrTail() {
    const tail = this.stderr.trim().split("\n").slice(-3).join(" | ");
    return tail ? ` (daemon stderr: ${tail})` : "";
  }

  _model(model) {
    const id = typeof model === "string" ? model : model?.id;
    if (typeof id !== "string") throw new TypeError("expected a Model or a modelId string");
    return id;
  }

  /** Open (load and keep warm) an SB2 file on the daemon's machine. Returns a Model. */
  async open(path, options = {}) {
    const { vecnormalize, algo, activation, frameStack, backends, signal, onProgress } = options;
    const result = await this.request("sbexport/open",
      strip({ path, vecnormalize, algo, activation, frameStack, backends }), { signal, onProgress, progress: true,
        encoding: options.encoding });
    return new Model(this, result);
  }

  /** sbexportd's description of the model (algorithm, spaces, layers, outputs, ...). */
  inspect(model, options = {}) {
    return this.request("sbexport/inspect", { modelId: this._model(model) }, options);
  }

  /** Parameter names, shapes and statistics; with values: true, each value as an NDArray. */
  async parameters(model, options = {}) {
    const { names, values, signal } = options;
    const encoding = options.encoding ?? this.encoding;
    const result = await this.request("sbexport/parameters", strip({
      modelId: this._model(model), names, values, encoding: encoding === "json" ? "base64" : undefined,
    }), { signal, encoding });
    for (const p of result.parameters) if (p.value !== undefined) p.value = decodeOut(p.value);
    return result;
  }

  /**
   * SB2's predict on the daemon. obs: NDArray {dtype?, shape, data}, a typed array
   * (one observation), nested arrays, or (HER) an object of those by goal key.
   * Returns {outputName: NDArray} with the daemon's names (actions, probs, mean, std,
   * values, q_values, state); Discrete/MultiDiscrete actions are int64 (BigInt64Array).
   */
  async predict(model, obs, options = {}) {
    const { state, mask, deterministic, seed, backend, outputs, signal } = options;
    const encoding = options.encoding ?? this.encoding;
    const result = await this.request("sbexport/predict", strip({
      modelId: this._model(model),
      obs: wireObs(obs, encoding),
      state: state === undefined || state === null ? undefined : wireArray(state, encoding),
      mask: mask === undefined || mask === null ? undefined : wireArray(mask, encoding),
      deterministic, seed, backend, outputs,
      encoding: encoding === "json" ? "base64" : undefined,
    }), { signal, encoding });
    const out = {};
    for (const [k, v] of Object.entries(result.outputs)) out[k] = decodeOut(v);
    return out;
  }

  /**
   * Export to targets (e.g. "tfjs,onnx,portable", a list, or "all") under `out` (a
   * folder on the daemon's machine): out/<target>/ each with manifest.json. Targets
   * that fail are listed in the result's `failed` (each with its error as an
   * SbexportdError) and leave nothing; the others are kept, unless allOrNothing.
   * When no target could be made the promise rejects.
   */
  async export(model, options = {}) {
    const { to, out, force, verify, allOrNothing, signal, onProgress } = options;
    const result = await this.request("sbexport/export",
      strip({ modelId: this._model(model), to, out, force, verify, allOrNothing }),
      { signal, onProgress, progress: true, encoding: options.encoding });
    result.failed = (result.failed ?? []).map((f) => ({ ...f, error: fromRpcError(f.error, "sbexport/export") }));
    result.complete = result.complete ?? result.failed.length === 0;
    return result;
  }

  /** Close a model (the daemon forgets its id; it may stay warm for other clients). */
  closeModel(model, options = {}) {
    return this.request("sbexport/close", { modelId: this._model(model) }, options);
  }

  /** The daemon's status: models, caches, counters. */
  status(options = {}) {
    return this.request("sbexport/status", {}, options);
  }

  /** The export targets the daemon offers. */
  targets(options = {}) {
    return this.request("sbexport/targets", {}, options);
  }

  /** End the connection politely (shutdown, exit); a spawned daemon exits with it. */
  async close({ timeoutMs = 5000 } = {}) {
    if (!this.closed) {
      try {
        await withTimeout(this.conn.sendRequest("shutdown"), timeoutMs);
        await this.conn.sendNotification("exit");
      } catch { /* already gone */ }
    }
    this._teardown();
    if (this.child) {
      const exited = await withTimeout(this._exited, timeoutMs).catch(() => null);
      if (!exited) {
        this.child.kill("SIGTERM");
        await this._exited;
      }
    }
  }

  _lost() {
    if (this._gone) return;
    this._gone = true;
    this.closed = true;
    try {
      this.conn.dispose(); // rejects every pending request (-> ConnectionError)
    } catch { /* disposed */ }
    this.emit("close");
  }

  _teardown() {
    this.closed = true;
    try {
      this.conn.dispose();
    } catch { /* disposed */ }
    if (this.socket) this.socket.destroy();
    if (this.child) {
      this.child.stdin.end();
    }
  }
}

export class Model {
  constructor(client, openResult) {
    this.client = client;
    this.id = openResult.modelId;
    this.summary = openResult.summary;
    this.cached = openResult.cached;
    this.seconds = openResult.seconds;
  }

  inspect(options) {
    return this.client.inspect(this.id, options);
  }

  parameters(options) {
    return this.client.parameters(this.id, options);
  }

  predict(obs, options) {
    return this.client.predict(this.id, obs, options);
  }

  export(options) {
    return this.client.export(this.id, options);
  }

  close(options) {
    return this.client.closeModel(this.id, options);
  }
}

/**
 * Start `python -m sbexportd.cli serve --tcp 127.0.0.1:0` and wait for its
 * "listening on HOST:PORT" line. Returns {host, port, token, connectionFile, process,
 * stderr(), stop(), connect(options)}; connect() uses the daemon's token.
 */
export function startDaemon(options = {}) {
  const python = options.python ?? DEFAULT_PYTHON();
  const listen = options.listen ?? "127.0.0.1:0";
  const args = options.args ?? ["-m", "sbexportd.cli", "serve", "--tcp", listen, ...(options.extraArgs ?? [])];
  const timeoutMs = options.timeoutMs ?? 60000;
  const proc = spawn(python, args, { cwd: options.cwd, env: options.env ?? process.env,
    stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    let timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new ConnectionError(`the daemon did not say "listening on" within ${timeoutMs} ms: ${stderr.slice(-500)}`));
    }, timeoutMs);
    proc.once("error", (err) => {
      clearTimeout(timer);
      reject(new ConnectionError(`cannot start ${python}: ${err.message}`, { cause: err }));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new ConnectionError(`the daemon exited (${code ?? signal}) before listening: ${stderr.slice(-800)}`));
    });
    proc.stderr.on("data", (chunk) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-STDERR_KEEP);
      const m = /listening on \[?([^\]\s]+?)\]?:(\d+)/.exec(stderr);
      if (m && timer) {
        clearTimeout(timer);
        timer = null;
        // written before the "listening" line: its token, unless --no-auth
        const file = /connection file (.+)/.exec(stderr)?.[1]?.trim() ?? null;
        const info = file ? readConnectionFile(file) : null;
        resolve({
          host: m[1], port: Number(m[2]), process: proc, pid: proc.pid,
          token: info?.token ?? null, connectionFile: file,
          connect: (opts = {}) => connect({ port: Number(m[2]), host: m[1], token: info?.token ?? undefined, ...opts }),
          stderr: () => stderr,
          async stop(timeout = 10000) {
            if (proc.exitCode !== null || proc.signalCode !== null) return exited;
            proc.kill("SIGTERM");
            const done = await withTimeout(exited, timeout).catch(() => null);
            if (done) return done;
            proc.kill("SIGKILL");
            return exited;
          },
        });
      }
    });
  });
}

// -- helpers ----------------------------------------------------------------------------
function strip(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out;
}

function withTimeout(promise, ms) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("timeout")), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** An array param: NDArrays and typed arrays as binary; nested arrays stay lists. */
function wireArray(value, encoding) {
  if (isNDArray(value) || isTypedArray(value)) return encodeWire(toNDArray(value), encoding);
  if (Array.isArray(value) || typeof value === "number") return value;
  throw new TypeError("expected an NDArray {dtype, shape, data}, a typed array or nested arrays of numbers");
}

function wireObs(obs, encoding) {
  if (obs !== null && typeof obs === "object" && !Array.isArray(obs) && !isNDArray(obs) && !isTypedArray(obs)) {
    const out = {}; // a goal dict (HER): each key an array
    for (const [k, v] of Object.entries(obs)) out[k] = wireArray(v, encoding);
    return out;
  }
  return wireArray(obs, encoding);
}

function decodeOut(value) {
  if (isWireArray(value)) return decodeWire(value);
  return value; // JSON "list" encoding: kept as nested arrays
}
