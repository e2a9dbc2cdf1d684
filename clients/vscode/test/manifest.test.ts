// The extension manifest (package.json) against the code: every command the code
// registers is contributed and vice versa, the lens routes land on contributed
// commands, activation covers the server's languages, and the settings are the
// server's (docs/editors.md). vsce checks the rest when packaging (package.test.ts).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { LENS_COMMANDS } from "../src/lenses";
import { DEFAULT_COMMAND, LANGUAGES } from "../src/server";

const ROOT = path.resolve(__dirname, "..", "..");
const manifest = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8"));
const source = readFileSync(path.join(ROOT, "src", "extension.ts"), "utf8");

test("registered and contributed commands are the same", () => {
  const registered = [...source.matchAll(/registerCommand\("([^"]+)"/g)].map((m) => m[1]).sort();
  const contributed = manifest.contributes.commands.map((c: { command: string }) => c.command).sort();
  assert.deepEqual(registered, contributed);
  for (const ours of Object.values(LENS_COMMANDS)) assert.ok(contributed.includes(ours), ours);
});

test("activation and entry point", () => {
  assert.deepEqual(manifest.activationEvents, LANGUAGES.map((l) => `onLanguage:${l}`));
  assert.equal(manifest.main, "./out/src/extension.js");
  const exported = require(path.join(ROOT, "out", "src", "lenses.js"));
  assert.equal(typeof exported.routeLensCommand, "function");
  assert.equal(manifest.engines.vscode, `^${manifest.devDependencies["@types/vscode"]}`);
});

test("the settings are the server's, with its defaults", () => {
  const props = manifest.contributes.configuration.properties;
  assert.deepEqual(Object.keys(props).sort(), ["sbexportd.export.outputFolder", "sbexportd.export.overwrite",
    "sbexportd.export.targets", "sbexportd.server.command", "sbexportd.vecnormalize"]);
  assert.deepEqual(props["sbexportd.server.command"].default, DEFAULT_COMMAND);
  assert.deepEqual(props["sbexportd.export.targets"].default, ["onnx"]);
  assert.equal(props["sbexportd.export.outputFolder"].default, "exported");
  assert.equal(props["sbexportd.export.overwrite"].default, false);
  assert.equal(props["sbexportd.vecnormalize"].default, "auto");
});

test("the export picker is reachable from the Explorer on model files", () => {
  const menu = manifest.contributes.menus["explorer/context"];
  assert.deepEqual(menu.map((m: { command: string }) => m.command), ["sbexportd.exportFile"]);
  assert.match(menu[0].when, /\.zip/);
  assert.match(menu[0].when, /\.pkl/);
});
