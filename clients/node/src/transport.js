// The LSP base protocol with per-message bodies in JSON or msgpack, as vscode-jsonrpc
// MessageReader / MessageWriter implementations.
//
// vscode-jsonrpc's own stream reader decodes every body with one decoder, whatever
// its Content-Type; the daemon answers each request in the encoding it came in and
// sends notifications in the encoding of the last message it received, so this
// reader looks at each frame's Content-Type. The writer sends a message as msgpack
// when its params object was marked with `markMsgpack`, JSON otherwise.
import { encode as mpEncode, decode as mpDecode } from "@msgpack/msgpack";
import rpc from "vscode-jsonrpc/node";

const { AbstractMessageReader, AbstractMessageWriter } = rpc;

export const JSON_TYPE = "application/vscode-jsonrpc; charset=utf-8";
export const MSGPACK_TYPE = "application/msgpack";
const MSGPACK_MEDIA = new Set(["application/msgpack", "application/x-msgpack", "application/vnd.msgpack"]);
const HEADER_END = Buffer.from("\r\n\r\n", "ascii");
const MAX_HEADER = 64 * 1024;

const msgpackParams = new WeakSet();

/** Send the message carrying these params as msgpack. Returns params. */
export function markMsgpack(params) {
  msgpackParams.add(params);
  return params;
}

export function encodeMessage(msg, encoding) {
  if (encoding === "msgpack") {
    const body = mpEncode(msg, { ignoreUndefined: true });
    return Buffer.concat([
      Buffer.from(`Content-Length: ${body.byteLength}\r\nContent-Type: ${MSGPACK_TYPE}\r\n\r\n`, "ascii"),
      Buffer.from(body.buffer, body.byteOffset, body.byteLength),
    ]);
  }
  const body = Buffer.from(JSON.stringify(msg), "utf8");
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, "ascii"), body]);
}

export class FrameReader extends AbstractMessageReader {
  /** @param {import("node:stream").Readable} readable */
  constructor(readable) {
    super();
    this.readable = readable;
    this.chunks = [];
    this.size = 0;
    this.need = -1; // body length once the header block is read
    this.encoding = "json";
  }

  listen(callback) {
    this.callback = callback;
    const onData = (chunk) => this.onData(chunk);
    const onError = (err) => this.fireError(err);
    const onClose = () => this.fireClose();
    this.readable.on("data", onData);
    this.readable.on("error", onError);
    this.readable.on("close", onClose);
    this.readable.on("end", onClose);
    return {
      dispose: () => {
        this.readable.off("data", onData);
        this.readable.off("error", onError);
        this.readable.off("close", onClose);
        this.readable.off("end", onClose);
      },
    };
  }

  onData(chunk) {
    this.chunks.push(chunk);
    this.size += chunk.length;
    try {
      for (;;) {
        if (this.need < 0 && !this.readHeaders()) return;
        if (this.size < this.need) return;
        const body = this.take(this.need);
        this.need = -1;
        const message = this.encoding === "msgpack"
          ? mpDecode(body)
          : JSON.parse(body.toString("utf8"));
        this.callback(message);
      }
    } catch (err) {
      this.fireError(err);
    }
  }

  readHeaders() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    const buf = this.chunks[0];
    if (!buf) return false;
    const end = buf.indexOf(HEADER_END);
    if (end < 0) {
      if (buf.length > MAX_HEADER) throw new Error("no end of header block within 64 KiB");
      return false;
    }
    let length = -1;
    let encoding = "json";
    for (const line of buf.subarray(0, end).toString("latin1").split("\r\n")) {
      const at = line.indexOf(":");
      if (at < 0) continue;
      const name = line.slice(0, at).trim().toLowerCase();
      const value = line.slice(at + 1).trim();
      if (name === "content-length") length = Number.parseInt(value, 10);
      else if (name === "content-type") {
        const media = value.split(";")[0].trim().toLowerCase();
        encoding = MSGPACK_MEDIA.has(media) ? "msgpack" : "json";
      }
    }
    if (!(length >= 0)) throw new Error("a frame without a valid Content-Length header");
    this.take(end + HEADER_END.length);
    this.need = length;
    this.encoding = encoding;
    return true;
  }

  take(n) {
    let out;
    const first = this.chunks[0];
    if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.size -= n;
    return out;
  }
}

export class FrameWriter extends AbstractMessageWriter {
  /** @param {import("node:stream").Writable} writable */
  constructor(writable) {
    super();
    this.writable = writable;
    this.errorCount = 0;
    writable.on("error", (err) => this.fireError(err));
    writable.on("close", () => this.fireClose());
  }

  write(msg) {
    const encoding = msg.params !== null && typeof msg.params === "object" && msgpackParams.has(msg.params)
      ? "msgpack" : "json";
    let data;
    try {
      data = encodeMessage(msg, encoding);
    } catch (err) {
      this.errorCount++;
      this.fireError(err, msg, this.errorCount);
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      this.writable.write(data, (err) => {
        if (err) {
          this.errorCount++;
          this.fireError(err, msg, this.errorCount);
          reject(err);
        } else {
          this.errorCount = 0;
          resolve();
        }
      });
    });
  }

  end() {
    this.writable.end();
  }
}
