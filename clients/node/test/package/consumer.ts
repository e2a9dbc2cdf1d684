// Compiled with tsc --strict in a project that installed the tarball: the package's
// declarations resolve through its "exports" map.
import { connect, loadExport, type LoadedExport, type NDArray } from "sbexportd-client";
import { readPortable, type PortablePolicy } from "sbexportd-client/portable";

export async function run(out: string, port: number): Promise<number> {
  const client = await connect({ host: "127.0.0.1", port });
  const ex: LoadedExport = await loadExport(out, { target: "portable" });
  const obs: NDArray = { dtype: "float32", shape: [1, 4], data: new Float32Array(4) };
  const result = await ex.predict(obs);
  const again: LoadedExport = await loadExport(ex.dir, { manifest: ex.manifest });
  const policy: PortablePolicy = readPortable(`${out}/portable/policy.sbx.msgpack`);
  await client.close();
  return result.action.shape.length + policy.obsShape.length + again.obsShape.length;
}
