// Compiled (not run) by test/types.test.mjs: the shipped declarations describe the API.
import {
  connect, startDaemon, loadExport, ndarray, toNDArray, astype, toNested,
  SbexportdError, FileNotFoundError, CancelledError, ParityFailedError, ExportFailedError, ErrorCodes,
  PathNotAllowedError, findConnection, runtimeDir,
  type Client, type Model, type NDArray, type PredictResult, type ProgressEvent, type LoadedExport,
  type ConnectionInfo, type ExportResult,
} from "sbexportd-client";
import { readPortable, type PortablePolicy } from "sbexportd-client/portable";

async function main(): Promise<void> {
  const daemon = await startDaemon({ python: "python3", cwd: "/tmp" });
  const client: Client = await connect({ port: daemon.port, host: daemon.host, encoding: "json" });
  const spawned: Client = await connect({ spawn: { python: "python3", args: ["-m", "sbexportd.cli", "serve", "--stdio"] } });
  const newest: Client = await connect();
  const viaFile: Client = await (daemon.connectionFile ? connect({ connectionFile: daemon.connectionFile }) : daemon.connect());
  const info: ConnectionInfo | null = findConnection({ port: daemon.port });
  const token: string | null = info ? info.token : daemon.token;
  console.log(runtimeDir(), token, newest.closed, viaFile.closed);
  client.on("progress", (e: ProgressEvent) => console.log(e.kind, e.percentage));
  const model: Model = await client.open("agent.zip", { vecnormalize: "auto", onProgress: (e) => e.message });
  const kind: string = model.summary.action_space.type;
  const obs: NDArray<Float32Array> = ndarray(new Float32Array(8), [2, 4]);
  const out: PredictResult = await model.predict(obs, { deterministic: true, encoding: "msgpack" });
  const actions = out.actions.data as BigInt64Array;
  const first: bigint = actions[0];
  await client.predict(model.id, [[0.1, 0.2, 0.3, 0.4]], { state: new Float32Array(16), mask: [0] });
  const params = await model.parameters({ values: true });
  const w: NDArray | undefined = params.parameters[0].value;
  const ac = new AbortController();
  try {
    const res: ExportResult = await model.export({ to: ["tfjs", "onnx"], out: "/tmp/x", signal: ac.signal, force: true,
      allOrNothing: false });
    const p: string = res.results[0].path;
    for (const f of res.failed) console.log(f.target, f.error.code, f.error.kind, res.complete);
  } catch (err) {
    if (err instanceof CancelledError || err instanceof ParityFailedError) console.log(err.code, err.kind);
    if (err instanceof ExportFailedError && err.code === ErrorCodes.EXPORT_FAILED) console.log(err.hint);
    if (err instanceof FileNotFoundError) console.log(err.file);
    if (err instanceof PathNotAllowedError) console.log(err.code === ErrorCodes.PATH_NOT_ALLOWED);
    if (err instanceof SbexportdError) console.log(err.data?.kind);
  }
  const ex: LoadedExport = await loadExport("/tmp/x", { target: "onnx" });
  const r = await ex.predict(obs, { state: new Float32Array(16) });
  const a: NDArray = r.action;
  console.log(toNested(astype(a, "float64")), toNDArray([[1, 2]]).shape, ex.runtime, kind, first, w, spawned.closed);
  const policy: PortablePolicy = readPortable("/tmp/x/portable/policy.sbx.msgpack");
  console.log(policy.run({ shape: [1, 4], data: new Float32Array(4) }).action.shape);
  await model.close();
  await client.close({ timeoutMs: 1000 });
  await daemon.stop();
}
void main;
