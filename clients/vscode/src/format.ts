// Text shown for the daemon's answers. Pure: no `vscode` import, unit-tested.

function short(value: unknown, digits = 4): string {
  if (typeof value === "number") {
    return Number.isInteger(value) ? String(value) : value.toPrecision(digits);
  }
  if (Array.isArray(value)) {
    const shown = value.slice(0, 8).map((v) => short(v, digits));
    return `[${shown.join(", ")}${value.length > 8 ? `, ... (${value.length})` : ""}]`;
  }
  if (value !== null && typeof value === "object" && "dtype" in value && "shape" in value) {
    const a = value as { dtype: unknown; shape: unknown };
    return `${String(a.dtype)} array of shape [${String(a.shape)}]`;
  }
  return JSON.stringify(value);
}

/** sbexport.predict's answer, one line: "actions 1 · probs [0.3, 0.7] · values -0.5" */
export function formatPrediction(result: { outputs?: Record<string, unknown>; backend?: string }): string {
  const outputs = result.outputs ?? {};
  const parts = Object.keys(outputs).sort().map((k) => `${k} ${short(outputs[k])}`);
  return `Predicted on the sample observation (${result.backend ?? "numpy"}): ${parts.join(" · ")}`;
}

/** sbexport.export's answer: "Exported to /x/agent: onnx, portable" */
export function formatExport(result: { out?: string; results?: { target?: string }[] }): string {
  const targets = (result.results ?? []).map((r) => r.target ?? "?");
  return `Exported to ${result.out ?? "?"}: ${targets.join(", ")}`;
}

/** An error the daemon answered with: its message, then its hint. */
export function formatError(error: unknown): string {
  const e = error as { message?: unknown; data?: { hint?: unknown } } | null;
  const message = typeof e?.message === "string" ? e.message : String(error);
  const hint = typeof e?.data?.hint === "string" ? e.data.hint : undefined;
  return hint ? `${message} (${hint})` : message;
}
