// N-dimensional arrays as plain objects: {dtype, shape, data} with `data` a typed
// array in C order. The same shape the daemon uses on the wire (where `data` is raw
// little-endian bytes in msgpack, base64 text in JSON).
import { endianness } from "node:os";

if (endianness() !== "LE") {
  throw new Error("sbexportd-client: arrays travel as little-endian bytes; this host is big-endian");
}

/** dtype name -> typed array class. int64/uint64 are BigInt64Array/BigUint64Array; bool is Uint8Array. */
export const TYPED = Object.freeze({
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
});

const CLASS_DTYPE = new Map([
  [Float32Array, "float32"], [Float64Array, "float64"], [Int8Array, "int8"], [Int16Array, "int16"],
  [Int32Array, "int32"], [BigInt64Array, "int64"], [Uint8Array, "uint8"], [Uint8ClampedArray, "uint8"],
  [Uint16Array, "uint16"], [Uint32Array, "uint32"], [BigUint64Array, "uint64"],
]);

export function isTypedArray(x) {
  return ArrayBuffer.isView(x) && !(x instanceof DataView);
}

/** The dtype name of a typed array (Float32Array -> "float32", ...). */
export function dtypeOf(data) {
  const d = CLASS_DTYPE.get(data.constructor);
  if (!d) throw new TypeError(`unsupported typed array ${data?.constructor?.name}`);
  return d;
}

export function size(shape) {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Build an NDArray; dtype defaults to the typed array's own. */
export function ndarray(data, shape, dtype) {
  if (!isTypedArray(data)) throw new TypeError("ndarray: data must be a typed array");
  const sh = shape ?? [data.length];
  if (size(sh) !== data.length) {
    throw new RangeError(`ndarray: shape [${sh}] needs ${size(sh)} values, data has ${data.length}`);
  }
  return { dtype: dtype ?? dtypeOf(data), shape: [...sh], data };
}

/** Is x an {dtype?, shape, data: typed array} object? */
export function isNDArray(x) {
  return x !== null && typeof x === "object" && isTypedArray(x.data) && Array.isArray(x.shape);
}

/** Nested JS arrays of numbers -> {shape, flat values}; throws on ragged input. */
export function nestedShape(value) {
  const shape = [];
  let v = value;
  while (Array.isArray(v)) {
    shape.push(v.length);
    v = v[0];
  }
  const flat = [];
  const walk = (x, depth) => {
    if (depth === shape.length) {
      if (typeof x !== "number" && typeof x !== "bigint" && typeof x !== "boolean") {
        throw new TypeError(`expected numbers, found ${x === null ? "null" : typeof x}`);
      }
      flat.push(x);
      return;
    }
    if (!Array.isArray(x) || x.length !== shape[depth]) throw new TypeError("ragged nested array");
    for (const y of x) walk(y, depth + 1);
  };
  walk(value, 0);
  return { shape, flat };
}

/**
 * Anything array-like -> an NDArray: an NDArray (kept), a bare typed array (1-D), or
 * nested JS arrays of numbers (`dtype`, default float64, picks the typed array).
 */
export function toNDArray(value, dtype = "float64") {
  if (isNDArray(value)) {
    const dt = value.dtype ?? dtypeOf(value.data);
    if (size(value.shape) !== value.data.length) {
      throw new RangeError(`shape [${value.shape}] needs ${size(value.shape)} values, data has ${value.data.length}`);
    }
    return { dtype: dt, shape: [...value.shape], data: value.data };
  }
  if (isTypedArray(value)) return ndarray(value);
  if (Array.isArray(value) || typeof value === "number") {
    const { shape, flat } = nestedShape(value);
    return { dtype, shape, data: fromValues(dtype, flat) };
  }
  throw new TypeError("expected an NDArray {dtype, shape, data}, a typed array or nested arrays of numbers");
}

/** A typed array of `dtype` from numbers / bigints / another typed array. */
export function fromValues(dtype, values) {
  const Typed = TYPED[dtype];
  if (!Typed) throw new TypeError(`unsupported dtype ${dtype}`);
  const big = Typed === BigInt64Array || Typed === BigUint64Array;
  const out = new Typed(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (big) out[i] = typeof v === "bigint" ? v : BigInt(Math.trunc(Number(v)));
    else out[i] = typeof v === "bigint" ? Number(v) : Number(v);
  }
  return out;
}

/** Convert an NDArray to another dtype (a copy; the same object if already that dtype). */
export function astype(arr, dtype) {
  if (arr.dtype === dtype && arr.data instanceof TYPED[dtype]) return arr;
  return { dtype, shape: [...arr.shape], data: fromValues(dtype, arr.data) };
}

/** The raw bytes of a typed array (a view, no copy). */
export function bytesOf(data) {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** A typed array of `dtype` over a copy of `bytes` (copied so it is aligned and owned). */
export function fromBytes(dtype, bytes, shape) {
  const Typed = TYPED[dtype];
  if (!Typed) throw new TypeError(`unsupported dtype ${dtype}`);
  const n = size(shape);
  if (bytes.byteLength !== n * Typed.BYTES_PER_ELEMENT) {
    throw new RangeError(`${dtype} [${shape}] needs ${n * Typed.BYTES_PER_ELEMENT} bytes, got ${bytes.byteLength}`);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Typed(copy.buffer, 0, n);
}

/** An encoded wire array -> NDArray. `data` may be raw bytes, base64 text or a flat list. */
export function decodeWire(value) {
  const { dtype, shape, data } = value;
  if (typeof data === "string") return { dtype, shape, data: fromBytes(dtype, Buffer.from(data, "base64"), shape) };
  if (data instanceof Uint8Array) return { dtype, shape, data: fromBytes(dtype, data, shape) };
  if (Array.isArray(data)) return { dtype, shape, data: fromValues(dtype, data) };
  throw new TypeError("array data must be bytes, base64 text or a list");
}

export function isWireArray(x) {
  return x !== null && typeof x === "object" && !Array.isArray(x) && !isTypedArray(x)
    && Object.keys(x).length === 3 && "dtype" in x && "shape" in x && "data" in x;
}

/** An NDArray -> its wire form: raw bytes (msgpack) or base64 text (JSON). */
export function encodeWire(arr, encoding) {
  const bytes = bytesOf(arr.data);
  return {
    dtype: arr.dtype,
    shape: [...arr.shape],
    data: encoding === "msgpack" ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64"),
  };
}

/** Nested JS arrays (numbers; bigints stay bigints) of an NDArray, for printing. */
export function toNested(arr) {
  const { shape, data } = arr;
  if (shape.length === 0) return data[0];
  let i = 0;
  const build = (d) => {
    const out = new Array(shape[d]);
    for (let k = 0; k < shape[d]; k++) out[k] = d === shape.length - 1 ? data[i++] : build(d + 1);
    return out;
  };
  return build(0);
}
