// Connection files (protocol.md, "Authentication"): `sbexportd serve --tcp/--ws` writes
// its transport, host, port and token, mode 0600, to
//   $SBEXPORTD_RUNTIME_DIR/sbexportd-<pid>.json, else $XDG_RUNTIME_DIR/sbexportd/...,
//   else ~/.local/share/sbexportd/runtime/...
// (or where its --connection-file says, which clients are told by $SBEXPORTD_CONNECTION_FILE),
// so that no token ever goes on a command line. connect() looks there by itself.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1"]);

/** The folder where daemons write their connection files. */
export function runtimeDir(env = process.env) {
  if (env.SBEXPORTD_RUNTIME_DIR) return env.SBEXPORTD_RUNTIME_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "sbexportd");
  return join(homedir(), ".local", "share", "sbexportd", "runtime");
}

/** Read one connection file: {transport, host, port, token, pid, path, ...}. */
export function readConnectionFile(path) {
  const info = JSON.parse(readFileSync(path, "utf8"));
  if (typeof info?.port !== "number" || typeof info?.host !== "string") {
    throw new Error(`${path}: not an sbexportd connection file (no host and port)`);
  }
  return { ...info, path };
}

function alive(pid) {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === "EPERM"; // someone else's process: alive
  }
}

/**
 * The connection file of the running daemon at host:port (any: the newest, when port
 * is undefined), of the given transport ("tcp" default). null when there is none.
 */
export function findConnection({ host, port, transport = "tcp", env = process.env } = {}) {
  if (env.SBEXPORTD_CONNECTION_FILE) {
    const info = readConnectionFile(env.SBEXPORTD_CONNECTION_FILE);
    return matches(info, host, port) ? info : null;
  }
  const dir = runtimeDir(env);
  let names;
  try {
    names = readdirSync(dir).filter((n) => n.startsWith("sbexportd-") && n.endsWith(".json"));
  } catch {
    return null;
  }
  const found = [];
  for (const name of names) {
    const path = join(dir, name);
    let info;
    try {
      info = readConnectionFile(path);
      info.mtime = statSync(path).mtimeMs;
    } catch {
      continue; // being written, or not ours
    }
    if (info.transport === transport && alive(info.pid) && matches(info, host, port)) found.push(info);
  }
  found.sort((a, b) => b.mtime - a.mtime);
  return found[0] ?? null;
}

function matches(info, host, port) {
  if (port === undefined || port === null) return true;
  if (info.port !== port) return false;
  return host === undefined || host === info.host || (LOOPBACK.has(host) && LOOPBACK.has(info.host));
}
