// The shipped type declarations (src/*.d.ts) describe the API: test/types/usage.ts,
// which uses all of it, compiles with tsc --strict.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { test } from "node:test";

import { CLIENT_DIR } from "./helpers.mjs";

test("tsc --strict compiles test/types/usage.ts against the declarations", () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const r = spawnSync(process.execPath, [tsc, "-p", join(CLIENT_DIR, "test/types/tsconfig.json")],
    { cwd: CLIENT_DIR, encoding: "utf8" });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

test("every value the declarations name is exported by the package", async () => {
  const pkg = await import("sbexportd-client");
  for (const name of ["connect", "startDaemon", "Client", "Model", "loadExport", "LoadedExport", "readPortable",
    "PortablePolicy", "ndarray", "toNDArray", "astype", "dtypeOf", "toNested", "TYPED", "VERSION", "ErrorCodes",
    "SbexportdError", "ParseError", "InvalidRequestError", "MethodNotFoundError", "InvalidParamsError",
    "InternalError", "NotInitializedError", "CancelledError", "FileNotFoundError", "BadModelFileError",
    "UnsupportedPolicyError", "UnknownModelError", "BadObservationError", "BackendUnavailableError",
    "ExportFailedError", "ParityFailedError", "OutputExistsError", "UnauthorizedError", "MessageTooLargeError",
    "ConnectionError", "errorClassFor", "fromRpcError", "PathNotAllowedError", "findConnection",
    "readConnectionFile", "runtimeDir"]) {
    assert.ok(pkg[name] !== undefined, name);
  }
  const portable = await import("sbexportd-client/portable");
  for (const name of ["readPortable", "PortablePolicy", "tf1Tanh", "ACTIVATIONS", "OPS", "FORMAT"]) {
    assert.ok(portable[name] !== undefined, name);
  }
});
