// The export picker's logic: which targets to offer (the daemon's list, the
// settings' defaults picked), the params sbexport.export then gets, and how an
// "output exists" answer is recognized. Pure: no `vscode` import, unit-tested.

export interface TargetItem {
  label: string;
  description?: string;
  picked: boolean;
}

export interface ExportParams {
  modelId: string;
  to: string[];
  out: string;
  force: boolean;
}

/** One item per target the daemon offers, in its order; the defaults pre-picked. */
export function targetItems(available: readonly string[], defaults: readonly string[],
                            summaries: Readonly<Record<string, string>> = {}): TargetItem[] {
  const wanted = new Set(defaults);
  return available.map((name) => ({ label: name, description: summaries[name], picked: wanted.has(name) }));
}

/** sbexport.export's params from the lens's arguments and what the user chose. */
export function exportParams(lens: Record<string, unknown>, picked: readonly string[], out?: string,
                             force?: boolean): ExportParams {
  const modelId = lens.modelId;
  if (typeof modelId !== "string" || modelId === "") {
    throw new TypeError("the Export lens has no modelId");
  }
  if (picked.length === 0) {
    throw new RangeError("choose at least one target");
  }
  const folder = out ?? lens.out;
  if (typeof folder !== "string" || folder.trim() === "") {
    throw new RangeError("choose an output folder");
  }
  return { modelId, to: [...picked], out: folder.trim(), force: force ?? lens.force === true };
}

/** The daemon's answer when the output folder already holds an export (protocol.md). */
export function isOutputExists(error: unknown): boolean {
  const data = (error as { data?: { kind?: unknown } } | null)?.data;
  return typeof data === "object" && data !== null && data.kind === "output_exists";
}
