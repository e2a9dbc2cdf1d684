// How the daemon is started: the `sbexportd.server.command` setting, checked.
// Pure: no `vscode` import, unit-tested.

export const DEFAULT_COMMAND: readonly string[] = Object.freeze(["sbexportd", "serve", "--stdio"]);

/** The languages whose documents the server looks at (docs/editors.md). */
export const LANGUAGES: readonly string[] = Object.freeze(
  ["python", "yaml", "json", "jsonc", "java", "javascript", "typescript", "markdown"]);

export function serverCommand(setting: unknown): { command: string; args: string[] } {
  const argv = Array.isArray(setting) && setting.length > 0 ? setting : DEFAULT_COMMAND;
  if (!argv.every((a): a is string => typeof a === "string" && a !== "")) {
    throw new TypeError("sbexportd.server.command must be a list of non-empty strings, e.g. "
                        + JSON.stringify(DEFAULT_COMMAND));
  }
  const [command, ...args] = argv;
  return { command, args };
}
