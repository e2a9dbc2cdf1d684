// The extension's own logic against a real `sbexportd serve --stdio`, over the same
// protocol library vscode-languageclient uses (VS Code itself cannot run here): the
// server's lenses are routed by routeLensCommand, the picker's params export, an
// existing export is recognized by isOutputExists and replaced with force, and the
// manifest's settings and target list are the ones the server reads and offers.
import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, test } from "node:test";
import {
  CodeLensRequest, ConfigurationRequest, createProtocolConnection, ExecuteCommandRequest, InitializeRequest,
  ProtocolConnection, PublishDiagnosticsNotification, PublishDiagnosticsParams, StreamMessageReader,
  StreamMessageWriter, WorkDoneProgressCreateRequest,
} from "vscode-languageserver-protocol/node";
import { lensParams, routeLensCommand } from "../src/lenses";
import { exportParams, isOutputExists, targetItems } from "../src/picker";

const EXT = path.resolve(__dirname, "..", "..");
const REPO = path.resolve(EXT, "..", "..");
const PYTHON = process.env.SBEXPORTD_PYTHON ?? path.join(REPO, ".venv", "bin", "python");
const manifest = JSON.parse(readFileSync(path.join(EXT, "package.json"), "utf8"));
const props = manifest.contributes.configuration.properties;

let proc: ChildProcess;
let conn: ProtocolConnection;
let dir: string;
const diagnostics: PublishDiagnosticsParams[] = [];
const created: unknown[] = [];

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "sbexportd-vscode-"));
  mkdirSync(path.join(dir, "agents"));
  copyFileSync(path.join(REPO, "tests", "fixtures", "ppo2_mlp_vec_discrete", "model.zip"),
               path.join(dir, "agents", "agent.zip"));
  proc = spawn(PYTHON, ["-m", "sbexportd.cli", "serve", "--stdio"], { cwd: REPO, stdio: ["pipe", "pipe", "ignore"] });
  conn = createProtocolConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
  // settings as VS Code sends them: each contributed default, nested by its dotted key
  const settings: Record<string, any> = {};
  for (const [key, spec] of Object.entries<any>(props)) {
    const parts = key.split(".").slice(1);
    let at = settings;
    for (const p of parts.slice(0, -1)) at = at[p] ??= {};
    at[parts[parts.length - 1]] = spec.default;
  }
  conn.onRequest(ConfigurationRequest.type, (p) => p.items.map(() => settings));
  conn.onRequest(WorkDoneProgressCreateRequest.type, (p) => { created.push(p.token); return null; });
  conn.onNotification(PublishDiagnosticsNotification.type, (p) => diagnostics.push(p));
  conn.onNotification("$/progress", () => undefined);
  conn.listen();
  const root = pathToFileURL(dir).href;
  const init = await conn.sendRequest(InitializeRequest.type, {
    processId: process.pid, rootUri: root, workspaceFolders: [{ uri: root, name: "ws" }],
    capabilities: { workspace: { configuration: true }, window: { workDoneProgress: true } } });
  assert.equal(init.capabilities.hoverProvider, true);
  // the manifest's target enum is what the daemon exports to
  assert.deepEqual(props["sbexportd.export.targets"].items.enum, init.capabilities.experimental.sbexportd.targets);
  await conn.sendNotification("initialized", {});
});

after(async () => {
  try {
    await conn.sendRequest("shutdown");
    await conn.sendNotification("exit");
  } finally {
    conn.dispose();
    proc.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

async function until<T>(what: string, fn: () => T | undefined, ms = 60000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("lenses route through the extension and the picker's export runs", async () => {
  const file = path.join(dir, "train.py");
  const text = 'import stable_baselines\nmodel = stable_baselines.PPO2.load("agents/agent.zip")\n';
  writeFileSync(file, text);
  const uri = pathToFileURL(file).href;
  await conn.sendNotification("textDocument/didOpen",
    { textDocument: { uri, languageId: "python", version: 1, text } });
  const published = await until("diagnostics", () => diagnostics.find((d) => d.uri === uri));
  assert.deepEqual(published.diagnostics, []);

  const lenses = await conn.sendRequest(CodeLensRequest.type, { textDocument: { uri } });
  assert.ok(lenses);
  const routed = lenses.map((l) => routeLensCommand(l.command!));
  assert.deepEqual(routed.map((c) => [c.title, c.command]), [
    ["Inspect", "sbexportd.inspect"], ["Export...", "sbexportd.export"], ["Predict sample", "sbexportd.predictSample"]]);

  // Export...: the defaults (from the manifest) reached the server and come back in the lens
  const lens = lensParams(routed[1].arguments);
  assert.deepEqual(lens.to, props["sbexportd.export.targets"].default);
  assert.equal(lens.out, path.join(dir, props["sbexportd.export.outputFolder"].default, "agent"));
  assert.equal(lens.force, props["sbexportd.export.overwrite"].default);
  const { targets } = await conn.sendRequest(ExecuteCommandRequest.type, { command: "sbexport.targets", arguments: [{}] });
  const items = targetItems(targets.map((t: { name: string }) => t.name), ["portable"]);
  const picked = items.filter((i) => i.picked).map((i) => i.label);
  assert.deepEqual(picked, ["portable"]);
  const params = exportParams(lens, picked);
  const result = await conn.sendRequest(ExecuteCommandRequest.type, { command: "sbexport.export", arguments: [params] });
  assert.equal(result.results[0].target, "portable");
  assert.ok(existsSync(path.join(lens.out as string, "portable", "manifest.json")));
  assert.equal(created.length, 1); // the server made a progress token for the status bar

  // again: the daemon says the output exists; the picker's "Replace" sends force
  await assert.rejects(
    conn.sendRequest(ExecuteCommandRequest.type, { command: "sbexport.export", arguments: [params] }),
    (e: unknown) => isOutputExists(e));
  const again = await conn.sendRequest(ExecuteCommandRequest.type,
    { command: "sbexport.export", arguments: [exportParams(lens, picked, undefined, true)] });
  assert.equal(again.results[0].target, "portable");

  // Predict sample's params are complete as they come
  const predicted = await conn.sendRequest(ExecuteCommandRequest.type,
    { command: "sbexport.predict", arguments: [lensParams(routed[2].arguments)] });
  assert.ok("actions" in predicted.outputs);
});
