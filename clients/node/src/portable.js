// A runtime of the portable export (policy.sbx.msgpack, format "sbexportd-portable" v1):
// the policy spec's straight-line program over named tensors, every op of
// sbexportd/understand/spec.py OPS, computed like the NumPy reference
// (sbexportd/realize/numpy_backend.py): float32 results (Math.fround at every step the
// reference rounds), matrix products accumulated in float64 then rounded, TF 1.15's
// rational tanh, VecNormalize in float64.
//
// Tensors inside the evaluator are {dtype, shape, data}: float32 data in a
// Float32Array; float64 and integer data in a Float64Array (integers are exact to 2^53).
import { readFileSync } from "node:fs";
import { decode } from "@msgpack/msgpack";

import { size } from "./arrays.js";

export const FORMAT = "sbexportd-portable";
const MAX_FILE = 2 ** 30;
const f32 = Math.fround;

// -- reading ----------------------------------------------------------------------------
const BYTES = { float16: 2, float32: 4, float64: 8, int8: 1, int16: 2, int32: 4, int64: 8, uint8: 1,
  uint16: 2, uint32: 4, uint64: 8, bool: 1 };

function readTensor(name, t) {
  const { dtype, shape, data } = t;
  const width = BYTES[dtype];
  if (!width) throw new Error(`portable: tensor ${name} has unsupported dtype ${dtype}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`portable: tensor ${name} has a bad shape ${JSON.stringify(shape)}`);
  }
  const n = size(shape);
  if (!(data instanceof Uint8Array) || data.byteLength !== n * width) {
    throw new Error(`portable: tensor ${name} has ${data?.byteLength} bytes for ${dtype} [${shape}]`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * width;
    switch (dtype) {
      case "float16": values[i] = halfToFloat(view.getUint16(o, true)); break;
      case "float32": values[i] = view.getFloat32(o, true); break;
      case "float64": values[i] = view.getFloat64(o, true); break;
      case "int8": values[i] = view.getInt8(o); break;
      case "int16": values[i] = view.getInt16(o, true); break;
      case "int32": values[i] = view.getInt32(o, true); break;
      case "int64": values[i] = Number(view.getBigInt64(o, true)); break;
      case "uint8": case "bool": values[i] = view.getUint8(o); break;
      case "uint16": values[i] = view.getUint16(o, true); break;
      case "uint32": values[i] = view.getUint32(o, true); break;
      case "uint64": values[i] = Number(view.getBigUint64(o, true)); break;
      default: throw new Error(`unreachable ${dtype}`);
    }
  }
  return { dtype, shape: [...shape], data: values };
}

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Round a number to the nearest float16 value (ties to even), as a double. */
function f16(x) {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const q = 2 ** (e - 10);
  const r = roundHalfEven(a / q) * q;
  return Math.sign(x) * r;
}

/** Parse a portable file (path, or its bytes) into a program; checks ops, dtypes, shapes, references. */
export function readPortable(source) {
  const raw = typeof source === "string" ? readFileSync(source) : source;
  if (raw.byteLength > MAX_FILE) throw new Error(`portable: file larger than ${MAX_FILE} bytes`);
  const doc = decode(raw);
  if (doc?.format !== FORMAT || doc?.format_version !== 1) throw new Error(`portable: not an ${FORMAT} v1 file`);
  const vec64 = new Set();
  for (const node of doc.nodes) {
    if (!Object.hasOwn(OPS, node.op)) throw new Error(`portable: unknown op ${JSON.stringify(node.op)}`);
    if (node.op === "vecnormalize") for (const k of Object.values(node.params)) vec64.add(k);
  }
  const tensors = {};
  for (const [name, t] of Object.entries(doc.tensors)) {
    const arr = readTensor(name, t);
    // float32 like TF1, except the statistics VecNormalize applies in float64 (as the reference)
    if (arr.dtype.startsWith("float") && !vec64.has(name)) {
      tensors[name] = { dtype: "float32", shape: arr.shape, data: Float32Array.from(arr.data) };
    } else if (vec64.has(name)) {
      tensors[name] = { dtype: "float64", shape: arr.shape, data: arr.data };
    } else {
      tensors[name] = arr;
    }
  }
  const known = new Set(["obs", ...(stateSizeOf(doc) ? ["state", "mask"] : [])]);
  doc.nodes.forEach((node, i) => {
    for (const name of node.inputs) {
      if (!known.has(name)) throw new Error(`portable: node ${i} (${node.op}) reads ${name} before it is written`);
    }
    for (const [role, key] of Object.entries(node.params)) {
      if (!Object.hasOwn(tensors, key)) throw new Error(`portable: node ${i} (${node.op}) param ${role}=${key} missing`);
    }
    for (const name of node.outputs) known.add(name);
  });
  for (const [out, name] of Object.entries(doc.outputs)) {
    if (!known.has(name)) throw new Error(`portable: output ${out} -> ${name} is never written`);
  }
  return new PortablePolicy(doc, tensors);
}

export class PortablePolicy {
  constructor(doc, tensors) {
    this.doc = doc;
    this.tensors = tensors;
    this.nodes = doc.nodes;
    this.outputs = doc.outputs; // export name -> tensor name
    this.recurrent = doc.recurrent ? doc.recurrent.n_lstm : 0;
    this.stateSize = stateSizeOf(doc);
    this.inputDtype = doc.input.dtype;
    this.obsShape = doc.input.shape.slice(1);
  }

  /**
   * Run the program. obs: {shape: [N, ...], data} (any numeric typed array or plain
   * array), or (concat_dict programs) an object of those by key; state (N, 2n) and
   * mask (N,) for programs that carry state (an LSTM, a frame stack). Returns
   * {exportName: internal tensor}.
   */
  run(obs, state, mask) {
    const env = new Map();
    env.set("obs", isDictObs(obs) ? Object.fromEntries(Object.entries(obs).map(([k, v]) => [k, asTensor(v)]))
      : toInputDtype(asTensor(obs), this.inputDtype));
    if (this.stateSize) {
      env.set("state", asFloat32(asTensor(state)));
      env.set("mask", asFloat32(asTensor(mask)));
    }
    for (const node of this.nodes) {
      const xs = node.inputs.map((name) => env.get(name));
      const results = OPS[node.op](node, xs, this.tensors);
      node.outputs.forEach((name, i) => env.set(name, results[i]));
    }
    const out = {};
    for (const [name, tensor] of Object.entries(this.outputs)) out[name] = env.get(tensor);
    return out;
  }
}

/** Floats of carried state per row: doc.state.size (files before it: an LSTM's 2 * n_lstm). */
function stateSizeOf(doc) {
  if (doc.state) return doc.state.size;
  return doc.recurrent ? 2 * doc.recurrent.n_lstm : 0;
}

function isDictObs(obs) {
  return obs !== null && typeof obs === "object" && !ArrayBuffer.isView(obs) && !Array.isArray(obs)
    && !("data" in obs && "shape" in obs);
}

function asTensor(x, dtype) {
  if (x && ArrayBuffer.isView(x.data)) {
    const data = x.data instanceof Float64Array || x.data instanceof Float32Array ? x.data
      : Float64Array.from(x.data, Number);
    return { dtype: dtype ?? x.dtype ?? "float64", shape: [...x.shape], data };
  }
  throw new TypeError("portable: expected {shape, data}");
}

/** obs converted to the placeholder dtype first, as SB2's feed did (NumPy astype: floats to ints truncate). */
function toInputDtype(t, dtype) {
  if (dtype === "float64" || t.dtype === dtype) return { ...t, dtype };
  const conv = dtype === "float32" ? f32 : dtype === "float16" ? f16 : dtype === "bool" ? (v) => (v !== 0 ? 1 : 0)
    : intCast(dtype);
  const data = new Float64Array(t.data.length);
  for (let i = 0; i < data.length; i++) data[i] = conv(t.data[i]);
  return { dtype, shape: t.shape, data };
}

function asFloat32(t) {
  return t.data instanceof Float32Array ? t : { dtype: "float32", shape: t.shape, data: Float32Array.from(t.data) };
}

// -- helpers ----------------------------------------------------------------------------
function f32t(shape) {
  return { dtype: "float32", shape, data: new Float32Array(size(shape)) };
}

function map(x, fn) {
  const out = f32t([...x.shape]);
  const a = x.data, o = out.data;
  for (let i = 0; i < a.length; i++) o[i] = fn(a[i]);
  return out;
}

/** For each element of one sample (x.shape without the batch axis), the index into p (NumPy broadcasting). */
const bcastCache = new WeakMap();
function paramIndex(sampleShape, p) {
  const key = sampleShape.join(",");
  let perParam = bcastCache.get(p);
  if (!perParam) bcastCache.set(p, (perParam = new Map()));
  let idx = perParam.get(key);
  if (idx) return idx;
  const ps = [...p.shape];
  while (ps.length > sampleShape.length) {
    if (ps[0] !== 1) throw new Error(`portable: cannot broadcast [${p.shape}] over a sample of [${sampleShape}]`);
    ps.shift();
  }
  const off = sampleShape.length - ps.length;
  const strides = new Array(ps.length);
  let s = 1;
  for (let d = ps.length - 1; d >= 0; d--) {
    if (ps[d] !== 1 && ps[d] !== sampleShape[off + d]) {
      throw new Error(`portable: cannot broadcast [${p.shape}] over a sample of [${sampleShape}]`);
    }
    strides[d] = ps[d] === 1 ? 0 : s;
    s *= ps[d];
  }
  const n = size(sampleShape);
  idx = new Int32Array(n);
  const counter = new Array(sampleShape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let j = 0;
    for (let d = 0; d < ps.length; d++) j += counter[off + d] * strides[d];
    idx[i] = j;
    for (let d = sampleShape.length - 1; d >= 0; d--) {
      if (++counter[d] < sampleShape[d]) break;
      counter[d] = 0;
    }
  }
  perParam.set(key, idx);
  return idx;
}

/** out[i] = fn(x[i], p[bcast(i)]) over every sample. */
function withParam(x, p, fn) {
  const out = f32t([...x.shape]);
  const sample = x.shape.slice(1);
  const n = size(sample);
  const idx = paramIndex(sample, p);
  const a = x.data, b = p.data, o = out.data;
  for (let base = 0; base < a.length; base += n) {
    for (let i = 0; i < n; i++) o[base + i] = fn(a[base + i], b[idx[i]]);
  }
  return out;
}

function withParams2(x, p, q, fn) {
  const out = f32t([...x.shape]);
  const sample = x.shape.slice(1);
  const n = size(sample);
  const ip = paramIndex(sample, p), iq = paramIndex(sample, q);
  const a = x.data, b = p.data, c = q.data, o = out.data;
  for (let base = 0; base < a.length; base += n) {
    for (let i = 0; i < n; i++) o[base + i] = fn(a[base + i], b[ip[i]], c[iq[i]]);
  }
  return out;
}

function roundHalfEven(x) {
  const f = Math.floor(x);
  const d = x - f;
  const r = d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
  return r === 0 && (x < 0 || Object.is(x, -0)) ? -0 : r; // NumPy keeps the sign of zero
}

function clip(x, lo, hi) {
  return x < lo ? lo : x > hi ? hi : x; // NaN stays NaN, as np.clip
}

const INT_BITS = { int8: [8, true], int16: [16, true], int32: [32, true], int64: [64, true],
  uint8: [8, false], uint16: [16, false], uint32: [32, false], uint64: [64, false] };

function castVia(via) {
  if (via === "float32") return f32;
  if (via === "float64") return (v) => f32(v);
  if (via === "float16") return (v) => f32(f16(v));
  if (via === "bool") return (v) => (v !== 0 ? 1 : 0);
  const cast = intCast(via);
  return (v) => f32(cast(v));
}

/** NumPy astype to an integer dtype: truncate toward zero, wrap to the width. */
function intCast(dtype) {
  const bits = INT_BITS[dtype];
  if (!bits) throw new Error(`portable: unsupported dtype ${dtype}`);
  const [b, signed] = bits;
  if (b >= 53) return (v) => (Number.isFinite(v) ? Math.trunc(v) : 0);
  const m = 2 ** b;
  return (v) => {
    let t = Math.trunc(v);
    if (!Number.isFinite(t)) return 0;
    t = ((t % m) + m) % m;
    if (signed && t >= m / 2) t -= m;
    return t;
  };
}

/** w (inner, out) transposed to (out, inner) in float64, once per weight tensor. */
const transposed = new WeakMap();
function transpose(w, inner, out) {
  let wt = transposed.get(w);
  if (!wt) {
    wt = new Float64Array(inner * out);
    for (let i = 0; i < inner; i++) for (let j = 0; j < out; j++) wt[j * inner + i] = w[i * out + j];
    transposed.set(w, wt);
  }
  return wt;
}

/** (rows, inner) @ w (inner, out) + b: float64 dot products rounded to float32 (like sgemm's float32
 * result, without its rounding of partial sums), then + b in float32. */
function matmul(x, rows, inner, w, out, b) {
  const y = new Float32Array(rows * out);
  const wt = transpose(w, inner, out);
  const xr = new Float64Array(inner);
  for (let r = 0; r < rows; r++) {
    const xo = r * inner;
    for (let i = 0; i < inner; i++) xr[i] = x[xo + i];
    const yo = r * out;
    for (let j = 0; j < out; j++) {
      const wo = j * inner;
      let s = 0;
      for (let i = 0; i < inner; i++) s += xr[i] * wt[wo + i];
      y[yo + j] = b ? f32(f32(s) + b[j]) : s;
    }
  }
  return y;
}

// TF 1.15's float32 tanh (Eigen generic_fast_tanh_float), as the reference computes it.
const TANH_P = [-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
  1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03].map(f32);
const TANH_Q = [1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03].map(f32);

export function tf1Tanh(a) {
  const x = a < -9 ? -9 : a > 9 ? 9 : f32(a);
  const x2 = f32(x * x);
  let p = f32(f32(x2 * TANH_P[0]) + TANH_P[1]);
  for (let k = 2; k < TANH_P.length; k++) p = f32(f32(p * x2) + TANH_P[k]);
  let q = f32(f32(x2 * TANH_Q[0]) + TANH_Q[1]);
  for (let k = 2; k < TANH_Q.length; k++) q = f32(f32(q * x2) + TANH_Q[k]);
  return f32(f32(p * x) / q);
}

function sigmoid(x) {
  return f32(1 / f32(1 + f32(Math.exp(-x))));
}

const SELU_SCALE = f32(1.0507009873554805);
const SELU_ALPHA = f32(1.6732632423543772);
const LEAKY = f32(0.2);

export const ACTIVATIONS = {
  identity: (x) => x,
  relu: (x) => (x > 0 ? x : x === x ? 0 : x),
  tanh: tf1Tanh,
  sigmoid,
  elu: (x) => (x > 0 ? x : f32(Math.expm1(Math.min(x, 0)))),
  softplus: (x) => f32(Math.max(x, 0) + f32(Math.log1p(f32(Math.exp(-Math.abs(x)))))),
  softsign: (x) => f32(x / f32(1 + Math.abs(x))),
  relu6: (x) => clip(x, 0, 6),
  selu: (x) => f32(SELU_SCALE * (x > 0 ? x : f32(SELU_ALPHA * f32(Math.expm1(Math.min(x, 0)))))),
  leaky_relu: (x) => (x > 0 ? x : f32(LEAKY * x)),
  swish: (x) => f32(x * sigmoid(x)),
};

/** The mean and variance of each row (float32 results), as x.mean / square(x - mean).mean in float32. */
function rowMoments(d, off, n) {
  let s = 0;
  for (let i = 0; i < n; i++) s += d[off + i];
  const mean = f32(s / n);
  let v = 0;
  for (let i = 0; i < n; i++) {
    const e = f32(d[off + i] - mean);
    v += f32(e * e);
  }
  return [mean, f32(v / n)];
}

/** tf_layers._ln on rows of n: (x - mean) / sqrt(var + eps) * gain + bias, eps 1e-5. */
function lnRows(d, rows, n, gain, bias) {
  const out = new Float32Array(rows * n);
  const eps = f32(1e-5);
  for (let r = 0; r < rows; r++) {
    const [mean, v] = rowMoments(d, r * n, n);
    const sd = f32(Math.sqrt(f32(v + eps)));
    for (let i = 0; i < n; i++) {
      out[r * n + i] = f32(f32(f32(f32(d[r * n + i] - mean) / sd) * gain[i]) + bias[i]);
    }
  }
  return out;
}

function lastAxis(x) {
  const k = x.shape[x.shape.length - 1];
  return [x.data.length / k, k];
}

// -- the ops ------------------------------------------------------------------------------
export const OPS = {
  cast_float(node, [x]) {
    return [map(x, castVia(node.attrs.via ?? "float32"))];
  },

  one_hot(node, [x]) {
    const n = node.attrs.n;
    const m = x.data.length;
    const out = f32t([m, n]);
    for (let r = 0; r < m; r++) {
      const i = Math.trunc(x.data[r]);
      if (i >= 0 && i < n) out.data[r * n + i] = 1; // tf.one_hot: all zeros out of range
    }
    return [out];
  },

  multi_one_hot(node, [x]) {
    const nvec = node.attrs.nvec;
    const k = nvec.length;
    const total = nvec.reduce((a, b) => a + b, 0);
    const rows = x.data.length / k;
    const out = f32t([rows, total]);
    for (let r = 0; r < rows; r++) {
      let off = 0;
      for (let c = 0; c < k; c++) {
        const i = Math.trunc(x.data[r * k + c]);
        if (i >= 0 && i < nvec[c]) out.data[r * total + off + i] = 1;
        off += nvec[c];
      }
    }
    return [out];
  },

  scale_box(node, [x], t) {
    return [withParams2(x, t[node.params.low], t[node.params.range], (v, lo, rg) => f32(f32(v - lo) / rg))];
  },

  vecnormalize(node, [x], t) {
    const { eps, clip: c } = node.attrs;
    return [withParams2(x, t[node.params.mean], t[node.params.var],
      (v, mean, variance) => clip((v - mean) / Math.sqrt(variance + eps), -c, c))];
  },

  running_norm(node, [x], t) {
    const lo = f32(node.attrs.lo), hi = f32(node.attrs.hi);
    return [withParams2(x, t[node.params.mean], t[node.params.std], (v, m, s) => clip(f32(f32(v - m) / s), lo, hi))];
  },

  concat_dict(node, [obs]) {
    const parts = node.attrs.keys.map((k) => {
      const v = obs[k];
      if (!v) throw new Error(`portable: the observation has no key ${k}`);
      return map(v, f32);
    });
    return OPS.concat(node, parts);
  },

  flatten(node, [x]) {
    return [{ dtype: x.dtype, shape: [x.shape[0], x.data.length / x.shape[0]], data: x.data }];
  },

  dense(node, [x], t) {
    const w = t[node.params.w], b = t[node.params.b];
    const [inner, out] = w.shape;
    const rows = x.data.length / inner;
    return [{ dtype: "float32", shape: [...x.shape.slice(0, -1), out], data: matmul(x.data, rows, inner, w.data, out, b.data) }];
  },

  conv2d(node, [x], t) {
    const w = t[node.params.w], b = t[node.params.b].data;
    const s = node.attrs.stride;
    const [kh, kw, c, o] = w.shape;
    const [n, h, wd, cx] = x.shape;
    if (cx !== c) throw new Error(`portable: conv2d input has ${cx} channels, the kernel ${c}`);
    const oh = Math.floor((h - kh) / s) + 1, ow = Math.floor((wd - kw) / s) + 1;
    const out = f32t([n, oh, ow, o]);
    const xd = x.data, wt = w.data, od = out.data;
    const acc = new Float64Array(o);
    for (let bi = 0; bi < n; bi++) {
      for (let oy = 0; oy < oh; oy++) {
        for (let ox = 0; ox < ow; ox++) {
          acc.fill(0);
          for (let ky = 0; ky < kh; ky++) {
            const rowBase = ((bi * h + oy * s + ky) * wd + ox * s) * c;
            for (let kx = 0; kx < kw; kx++) {
              const xb = rowBase + kx * c;
              const wb = (ky * kw + kx) * c * o;
              for (let ci = 0; ci < c; ci++) {
                const xv = xd[xb + ci];
                if (xv === 0) continue;
                const wo = wb + ci * o;
                for (let k = 0; k < o; k++) acc[k] += xv * wt[wo + k];
              }
            }
          }
          const ob = ((bi * oh + oy) * ow + ox) * o;
          for (let k = 0; k < o; k++) od[ob + k] = f32(f32(acc[k]) + b[k]);
        }
      }
    }
    return [out];
  },

  activation(node, [x]) {
    const fn = ACTIVATIONS[node.attrs.fn];
    if (!fn) throw new Error(`portable: unknown activation ${node.attrs.fn}`);
    return [map(x, fn)];
  },

  exp(node, [x]) {
    return [map(x, (v) => f32(Math.exp(v)))];
  },

  layer_norm(node, [x], t) {
    const gamma = t[node.params.gamma], beta = t[node.params.beta];
    const eps = f32(node.attrs.eps);
    const sample = x.shape.slice(1);
    const n = size(sample);
    const ig = paramIndex(sample, gamma), ib = paramIndex(sample, beta);
    const out = f32t([...x.shape]);
    const d = x.data, o = out.data;
    for (let base = 0; base < d.length; base += n) {
      const [mean, v] = rowMoments(d, base, n);
      const r = f32(1 / f32(Math.sqrt(f32(v + eps))));
      for (let i = 0; i < n; i++) {
        const inv = f32(r * gamma.data[ig[i]]);
        o[base + i] = f32(f32(d[base + i] * inv) + f32(beta.data[ib[i]] - f32(mean * inv)));
      }
    }
    return [out];
  },

  lstm(node, [x, state, mask], t) {
    const p = Object.fromEntries(Object.entries(node.params).map(([role, key]) => [role, t[key].data]));
    const n = node.attrs.n_hidden;
    const inner = x.data.length / x.shape[0];
    const rows = x.shape[0];
    if (state.data.length !== rows * 2 * n || mask.data.length !== rows) {
      throw new Error(`portable: lstm needs state [${rows}, ${2 * n}] and mask [${rows}]`);
    }
    const c = new Float32Array(rows * n), h = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) {
      const keep = f32(1 - mask.data[r]);
      for (let i = 0; i < n; i++) {
        c[r * n + i] = f32(state.data[r * 2 * n + i] * keep);
        h[r * n + i] = f32(state.data[r * 2 * n + n + i] * keep);
      }
    }
    let gates;
    const xw = matmul(x.data, rows, inner, p.wx, 4 * n, null);
    const hw = matmul(h, rows, n, p.wh, 4 * n, null);
    if (node.attrs.layer_norm) {
      const a = lnRows(xw, rows, 4 * n, p.gx, p.bx), bb = lnRows(hw, rows, 4 * n, p.gh, p.bh);
      gates = new Float32Array(rows * 4 * n);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < 4 * n; j++) gates[r * 4 * n + j] = f32(f32(a[r * 4 * n + j] + bb[r * 4 * n + j]) + p.b[j]);
      }
    } else {
      gates = new Float32Array(rows * 4 * n);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < 4 * n; j++) gates[r * 4 * n + j] = f32(f32(xw[r * 4 * n + j] + hw[r * 4 * n + j]) + p.b[j]);
      }
    }
    const c2 = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) {
      const g = r * 4 * n;
      for (let k = 0; k < n; k++) {
        const i = gates[g + k], f = gates[g + n + k], u = gates[g + 3 * n + k];
        c2[r * n + k] = f32(f32(sigmoid(f) * c[r * n + k]) + f32(sigmoid(i) * tf1Tanh(u)));
      }
    }
    const hc = node.attrs.layer_norm ? lnRows(c2, rows, n, p.gc, p.bc) : c2;
    const hOut = f32t([rows, n]);
    const sOut = f32t([rows, 2 * n]);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < n; k++) {
        const o = gates[r * 4 * n + 2 * n + k];
        const hv = f32(sigmoid(o) * tf1Tanh(hc[r * n + k]));
        hOut.data[r * n + k] = hv;
        sOut.data[r * 2 * n + k] = c2[r * n + k];
        sOut.data[r * 2 * n + n + k] = hv;
      }
    }
    return [hOut, sOut];
  },

  frame_stack(node, [x, state, mask]) {
    // SB2's VecFrameStack, one step: the previous n - 1 frames (zeroed where mask is 1)
    // then the new one, on the last axis; the state out drops the oldest.
    const n = node.attrs.n, frame = node.attrs.frame;
    const last = frame[frame.length - 1];
    const per = frame.reduce((a, b) => a * b, 1);
    const rows = x.data.length / per, lead = per / last, kept = last * (n - 1), width = last * n;
    if (state.data.length !== rows * (n - 1) * per || mask.data.length !== rows) {
      throw new Error(`portable: frame_stack needs state [${rows}, ${(n - 1) * per}] and mask [${rows}]`);
    }
    const stacked = f32t([rows, ...frame.slice(0, -1), width]);
    const next = f32t([rows, (n - 1) * per]);
    for (let r = 0; r < rows; r++) {
      const keep = f32(1 - mask.data[r]);
      for (let p = 0; p < lead; p++) {
        const s0 = (r * lead + p) * kept, o0 = (r * lead + p) * width;
        for (let j = 0; j < kept; j++) stacked.data[o0 + j] = f32(state.data[s0 + j] * keep);
        for (let j = 0; j < last; j++) stacked.data[o0 + kept + j] = f32(x.data[(r * lead + p) * last + j]);
        for (let j = 0; j < kept; j++) next.data[s0 + j] = stacked.data[o0 + last + j];
      }
    }
    return [stacked, next];
  },

  concat(node, xs) {
    const widths = xs.map((x) => x.shape[x.shape.length - 1]);
    const total = widths.reduce((a, b) => a + b, 0);
    const rows = xs[0].data.length / widths[0];
    const allF32 = xs.every((x) => x.data instanceof Float32Array);
    const data = allF32 ? new Float32Array(rows * total) : new Float64Array(rows * total);
    for (let r = 0; r < rows; r++) {
      let off = 0;
      xs.forEach((x, k) => {
        data.set(x.data.subarray(r * widths[k], (r + 1) * widths[k]), r * total + off);
        off += widths[k];
      });
    }
    return [{ dtype: allF32 ? "float32" : xs[0].dtype, shape: [...xs[0].shape.slice(0, -1), total], data }];
  },

  dueling(node, [a, v]) {
    const [rows, k] = lastAxis(a);
    const out = f32t([...a.shape]);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += a.data[r * k + j];
      const mean = f32(s / k);
      for (let j = 0; j < k; j++) out.data[r * k + j] = f32(v.data[r] + f32(a.data[r * k + j] - mean));
    }
    return [out];
  },

  squeeze_last(node, [x]) {
    return [{ dtype: x.dtype, shape: x.shape.slice(0, -1), data: x.data }];
  },

  softmax(node, [x]) {
    const [rows, k] = lastAxis(x);
    const out = f32t([...x.shape]);
    const e = new Float32Array(k);
    for (let r = 0; r < rows; r++) {
      let m = -Infinity;
      for (let j = 0; j < k; j++) m = Math.max(m, x.data[r * k + j]);
      let s = 0;
      for (let j = 0; j < k; j++) {
        e[j] = Math.exp(f32(x.data[r * k + j] - m));
        s += e[j];
      }
      const sum = f32(s);
      for (let j = 0; j < k; j++) out.data[r * k + j] = f32(e[j] / sum);
    }
    return [out];
  },

  argmax(node, [x]) {
    const [rows, k] = lastAxis(x);
    const out = { dtype: "int64", shape: x.shape.slice(0, -1), data: new Float64Array(rows) };
    for (let r = 0; r < rows; r++) {
      let best = 0, bv = x.data[r * k];
      if (bv === bv) {
        for (let j = 1; j < k; j++) {
          const v = x.data[r * k + j];
          if (v !== v) { best = j; break; } // NumPy: the first NaN wins
          if (v > bv) { bv = v; best = j; }
        }
      }
      out.data[r] = best;
    }
    return [out];
  },

  split(node, [x]) {
    const sizes = node.attrs.sizes;
    const [rows, k] = lastAxis(x);
    let off = 0;
    return sizes.map((w) => {
      const data = new x.data.constructor(rows * w);
      for (let r = 0; r < rows; r++) data.set(x.data.subarray(r * k + off, r * k + off + w), r * w);
      off += w;
      return { dtype: x.dtype, shape: [...x.shape.slice(0, -1), w], data };
    });
  },

  stack_last(node, xs) {
    const m = xs[0].data.length, k = xs.length;
    const data = new xs[0].data.constructor(m * k);
    for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) data[i * k + j] = xs[j].data[i];
    return [{ dtype: xs[0].dtype, shape: [...xs[0].shape, k], data }];
  },

  round(node, [x]) {
    const data = new x.data.constructor(x.data.length);
    for (let i = 0; i < data.length; i++) data[i] = roundHalfEven(x.data[i]);
    return [{ dtype: x.dtype, shape: [...x.shape], data }];
  },

  exp_broadcast(node, [like], t) {
    return [withParam(like, t[node.params.logstd], (v, ls) => f32(Math.exp(f32(f32(v * 0) + ls))))];
  },

  clip_value(node, [x]) {
    const lo = f32(node.attrs.lo), hi = f32(node.attrs.hi);
    return [map(x, (v) => clip(v, lo, hi))];
  },

  clip_box(node, [x], t) {
    return [withParams2(x, t[node.params.low], t[node.params.high], (v, lo, hi) => clip(v, lo, hi))];
  },

  unscale_box(node, [x], t) {
    return [withParams2(x, t[node.params.low], t[node.params.high],
      (v, lo, hi) => f32(lo + f32(f32(0.5 * f32(v + 1)) * f32(hi - lo))))];
  },
};
