// The server's code lenses run the daemon's own commands (sbexport.inspect,
// sbexport.export, sbexport.predict) with complete arguments. In VS Code the
// extension routes them through its commands instead, which show the answer and,
// for Export..., open the picker first. Pure: no `vscode` import, unit-tested.

export interface LensCommand {
  title: string;
  command: string;
  arguments?: unknown[];
}

/** server command -> the extension command a lens click runs instead */
export const LENS_COMMANDS: Readonly<Record<string, string>> = Object.freeze({
  "sbexport.inspect": "sbexportd.inspect",
  "sbexport.export": "sbexportd.export",
  "sbexport.predict": "sbexportd.predictSample",
});

/** The same lens, clicked through the extension; any other command is left alone. */
export function routeLensCommand<T extends LensCommand>(cmd: T): T {
  const ours = LENS_COMMANDS[cmd.command];
  return ours === undefined ? cmd : { ...cmd, command: ours };
}

/** The one params object the sbexport.* commands take ("arguments": [params]). */
export function lensParams(args: readonly unknown[] | undefined): Record<string, unknown> {
  const first = args?.[0];
  if (typeof first !== "object" || first === null || Array.isArray(first)) {
    throw new TypeError("expected the lens's arguments to be [params]");
  }
  return { ...(first as Record<string, unknown>) };
}
