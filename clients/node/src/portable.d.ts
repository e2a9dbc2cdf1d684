// Type declarations of the portable evaluator (policy.sbx.msgpack).
/// <reference types="node" />

/** A tensor inside the evaluator: float32 data in a Float32Array, float64 and integers in a Float64Array. */
export interface EvalTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | Float64Array;
}

export interface PortableNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, any>;
  params: Record<string, string>;
}

export declare const FORMAT: "sbexportd-portable";

export declare class PortablePolicy {
  /** The decoded document (without its tensors). */
  readonly doc: Record<string, any>;
  readonly tensors: Record<string, EvalTensor>;
  readonly nodes: PortableNode[];
  /** Export name -> tensor name. */
  readonly outputs: Record<string, string>;
  /** n_lstm, or 0. */
  readonly recurrent: number;
  readonly stateSize: number;
  readonly inputDtype: string;
  readonly obsShape: number[];
  /** obs (N, ...) (or a goal dict for concat_dict programs), state (N, 2n), mask (N,): every output by export name. */
  run(
    obs: { shape: number[]; data: ArrayLike<number> & ArrayBufferView } | Record<string, { shape: number[]; data: ArrayLike<number> & ArrayBufferView }>,
    state?: { shape: number[]; data: Float32Array },
    mask?: { shape: number[]; data: Float32Array },
  ): Record<string, EvalTensor>;
}

/** Parse and check a portable file (a path, or its bytes). */
export declare function readPortable(source: string | Uint8Array): PortablePolicy;

/** TF 1.15's float32 tanh (Eigen's rational approximation). */
export declare function tf1Tanh(x: number): number;
export declare const ACTIVATIONS: Readonly<Record<string, (x: number) => number>>;
export declare const OPS: Readonly<Record<string, (node: PortableNode, xs: any[], tensors: Record<string, EvalTensor>) => EvalTensor[]>>;
