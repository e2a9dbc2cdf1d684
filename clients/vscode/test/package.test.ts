// Packaging: vsce (the marketplace's own tool) validates the manifest and builds the
// .vsix; the package holds the compiled extension and its runtime dependency, and none
// of the sources, tests or build tools.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";

const EXT = path.resolve(__dirname, "..", "..");
const VSCE = path.join(EXT, "node_modules", ".bin", "vsce");
const FLAGS = ["--skip-license", "--allow-missing-repository"];

test("vsce lists and packages the extension", () => {
  const files = execFileSync(VSCE, ["ls"], { cwd: EXT, encoding: "utf8" }).split("\n").filter(Boolean);
  for (const f of ["package.json", "README.md", "out/src/extension.js", "out/src/picker.js",
                   "node_modules/vscode-languageclient/package.json"]) {
    assert.ok(files.includes(f), `${f} missing from the package`);
  }
  for (const prefix of ["src/", "test/", "out/test/", "node_modules/typescript/", "node_modules/@vscode/vsce/",
                        "node_modules/@types/"]) {
    assert.deepEqual(files.filter((f) => f.startsWith(prefix)), [], `${prefix} must not be packaged`);
  }
  const dir = mkdtempSync(path.join(tmpdir(), "sbexportd-vsix-"));
  try {
    const vsix = path.join(dir, "sbexportd.vsix");
    execFileSync(VSCE, ["package", ...FLAGS, "--out", vsix], { cwd: EXT, encoding: "utf8" });
    assert.ok(existsSync(vsix) && statSync(vsix).size > 10_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
