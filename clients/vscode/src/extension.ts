// The VS Code extension: starts `sbexportd serve --stdio` (the command is a setting;
// nothing is downloaded), lets the server's hover, links, lenses and diagnostics show
// in the editor, and routes the lenses through commands that show the answers and an
// export picker.
import * as path from "path";
import * as vscode from "vscode";
import { ExecuteCommandRequest, LanguageClient, LanguageClientOptions, ServerOptions,
         TransportKind } from "vscode-languageclient/node";
import { formatError, formatExport, formatPrediction } from "./format";
import { lensParams, routeLensCommand } from "./lenses";
import { exportParams, isOutputExists, targetItems } from "./picker";
import { LANGUAGES, serverCommand } from "./server";

let client: LanguageClient | undefined;
let output: vscode.OutputChannel | undefined;

function makeClient(): LanguageClient {
  const config = vscode.workspace.getConfiguration("sbexportd");
  const { command, args } = serverCommand(config.get("server.command"));
  const serverOptions: ServerOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.flatMap((language) => [{ scheme: "file", language },
                                                        { scheme: "untitled", language }]),
    synchronize: { configurationSection: "sbexportd" },
    outputChannel: output,
    middleware: {
      provideCodeLenses: async (document, token, next) => {
        const lenses = await next(document, token);
        for (const lens of lenses ?? []) {
          if (lens.command) lens.command = routeLensCommand(lens.command);
        }
        return lenses;
      },
    },
  };
  return new LanguageClient("sbexportd", "sbexportd", serverOptions, clientOptions);
}

async function run<T>(command: string, params: Record<string, unknown>): Promise<T> {
  if (!client) throw new Error("the sbexportd server is not running");
  return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [params] })) as T;
}

async function inspect(args: unknown): Promise<void> {
  const result = await run<Record<string, unknown>>("sbexport.inspect", lensParams([args]));
  const doc = await vscode.workspace.openTextDocument({ language: "json", content: JSON.stringify(result, null, 2) });
  await vscode.window.showTextDocument(doc, { viewColumn: vscode.ViewColumn.Beside, preview: true });
}

async function predictSample(args: unknown): Promise<void> {
  const result = await run<{ outputs?: Record<string, unknown>; backend?: string }>(
    "sbexport.predict", lensParams([args]));
  vscode.window.showInformationMessage(formatPrediction(result));
}

/** The export picker: targets (the settings' defaults picked), the folder, then
 *  sbexport.export with $/progress in the status bar; "Replace?" if it exists. */
async function exportWithPicker(args: unknown): Promise<void> {
  const lens = lensParams([args]);
  const { targets } = await run<{ targets: { name: string; summary: string }[] }>("sbexport.targets", {});
  const summaries = Object.fromEntries(targets.map((t) => [t.name, t.summary]));
  const defaults = Array.isArray(lens.to) ? (lens.to as string[]) : [];
  const picked = await vscode.window.showQuickPick(targetItems(targets.map((t) => t.name), defaults, summaries), {
    canPickMany: true, title: "sbexportd: export to", placeHolder: "Choose the targets (each is verified)" });
  if (!picked || picked.length === 0) return;
  const out = await vscode.window.showInputBox({
    title: "sbexportd: output folder", value: typeof lens.out === "string" ? lens.out : "",
    prompt: "Each target goes to <folder>/<target>/",
    validateInput: (v) => (v.trim() ? undefined : "an output folder is required") });
  if (out === undefined) return;
  let params = exportParams(lens, picked.map((i) => i.label), out);
  let result: { out?: string; results?: { target?: string }[] };
  try {
    result = await run("sbexport.export", { ...params });
  } catch (e) {
    if (!isOutputExists(e)) throw e;
    const choice = await vscode.window.showWarningMessage(formatError(e), { modal: true }, "Replace");
    if (choice !== "Replace") return;
    params = { ...params, force: true };
    result = await run("sbexport.export", { ...params });
  }
  const reveal = "Reveal";
  if ((await vscode.window.showInformationMessage(formatExport(result), reveal)) === reveal) {
    await vscode.commands.executeCommand("revealFileInOS", vscode.Uri.file(path.join(params.out, params.to[0])));
  }
}

/** Explorer > Export Model...: open the file in the daemon, then the picker. */
async function exportFile(uri?: vscode.Uri): Promise<void> {
  const target = uri ?? (await vscode.window.showOpenDialog({ filters: { "SB2 model": ["zip", "pkl"] } }))?.[0];
  if (!target) return;
  const config = vscode.workspace.getConfiguration("sbexportd");
  const vn = config.get<string>("vecnormalize", "auto");
  const opened = await run<{ modelId: string }>("sbexport.open", {
    path: target.fsPath, vecnormalize: vn === "none" ? null : vn });
  const folder = vscode.workspace.getWorkspaceFolder(target)?.uri.fsPath ?? path.dirname(target.fsPath);
  const base = config.get<string>("export.outputFolder", "exported");
  const out = path.join(path.isAbsolute(base) ? base : path.join(folder, base),
                        path.basename(target.fsPath, path.extname(target.fsPath)));
  await exportWithPicker({ modelId: opened.modelId, to: config.get<string[]>("export.targets", ["onnx"]), out,
                           force: config.get<boolean>("export.overwrite", false) });
}

function guarded<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  return async (...args: A): Promise<void> => {
    try {
      await fn(...args);
    } catch (e) {
      vscode.window.showErrorMessage(`sbexportd: ${formatError(e)}`);
    }
  };
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("sbexportd");
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand("sbexportd.inspect", guarded(inspect)),
    vscode.commands.registerCommand("sbexportd.predictSample", guarded(predictSample)),
    vscode.commands.registerCommand("sbexportd.export", guarded(exportWithPicker)),
    vscode.commands.registerCommand("sbexportd.exportFile", guarded(exportFile)),
    vscode.commands.registerCommand("sbexportd.showOutput", () => output?.show()),
    vscode.commands.registerCommand("sbexportd.restartServer", guarded(async () => {
      await client?.stop();
      client = makeClient();
      await client.start();
    })),
    vscode.workspace.onDidChangeConfiguration(guarded(async (e: vscode.ConfigurationChangeEvent) => {
      if (e.affectsConfiguration("sbexportd.server.command")) {
        await vscode.commands.executeCommand("sbexportd.restartServer");
      }
    })),
  );
  try {
    client = makeClient();
    await client.start();
  } catch (e) {
    const open = "Open Settings";
    const choice = await vscode.window.showErrorMessage(
      `sbexportd: cannot start the server (${formatError(e)}). Install sbexportd and set sbexportd.server.command.`,
      open);
    if (choice === open) {
      await vscode.commands.executeCommand("workbench.action.openSettings", "sbexportd.server.command");
    }
  }
}

export async function deactivate(): Promise<void> {
  await client?.stop();
  client = undefined;
}
