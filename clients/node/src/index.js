// sbexportd-client: a Node client for the sbexportd daemon, and local runtimes of its
// tfjs, onnx and portable exports.
export { connect, startDaemon, Client, Model, VERSION } from "./client.js";
export { findConnection, readConnectionFile, runtimeDir } from "./connection.js";
export { loadExport, LoadedExport } from "./exports.js";
export { readPortable, PortablePolicy } from "./portable.js";
export { ndarray, toNDArray, astype, dtypeOf, toNested, TYPED } from "./arrays.js";
export * from "./errors.js";
