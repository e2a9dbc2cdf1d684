package io.sbexportd;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * The numerics of the portable runtime: NumPy's casts, TF 1.15's float32 tanh, the
 * activations, and the loops of the heavy ops (dense, conv2d, the norms, softmax), each
 * written as sbexportd's NumPy reference computes it, in float32 like TensorFlow 1.
 * Stateless; the compiled steps ({@link PortableCompiler}) call them.
 */
final class PortableKernels {
    private PortableKernels() {
    }

    // ---------------------------------------------------------------- casts and activations

    /** NumPy's astype(dtype) of one value, as a double (integer types truncate toward zero and wrap). */
    static double castTo(int dtype, double v) {
        switch (dtype) {
            case 0: return (float) v;                    // float32
            case 1: return v;                            // float64
            case 2: return (byte) (long) v;              // int8
            case 3: return ((long) v) & 0xFF;            // uint8
            case 4: return (short) (long) v;             // int16
            case 5: return ((long) v) & 0xFFFF;          // uint16
            case 6: return (int) (long) v;               // int32
            case 7: return ((long) v) & 0xFFFFFFFFL;     // uint32
            case 8: case 9: return (long) v;             // int64, uint64
            default: return v != 0 ? 1 : 0;              // bool
        }
    }

    static int castCode(String dtype) {
        switch (dtype) {
            case "float32": return 0;
            case "float64": return 1;
            case "int8": return 2;
            case "uint8": return 3;
            case "int16": return 4;
            case "uint16": return 5;
            case "int32": return 6;
            case "uint32": return 7;
            case "int64": return 8;
            case "uint64": return 9;
            case "bool": return 10;
            default: throw new IllegalArgumentException("unsupported dtype " + dtype);
        }
    }

    // TF 1.15's float32 tanh: Eigen's generic_fast_tanh_float, as the reference backend.
    private static final float TP0 = (float) -2.76076847742355e-16, TP1 = (float) 2.00018790482477e-13,
            TP2 = (float) -8.60467152213735e-11, TP3 = (float) 5.12229709037114e-08,
            TP4 = (float) 1.48572235717979e-05, TP5 = (float) 6.37261928875436e-04,
            TP6 = (float) 4.89352455891786e-03;
    private static final float TQ0 = (float) 1.19825839466702e-06, TQ1 = (float) 1.18534705686654e-04,
            TQ2 = (float) 2.26843463243900e-03, TQ3 = (float) 4.89352518554385e-03;

    static float tanh(float a) {
        float x = Math.max(-9f, Math.min(9f, a));
        if (a != a) {
            x = a;
        }
        float x2 = x * x;
        float p = x2 * TP0 + TP1;
        p = p * x2 + TP2;
        p = p * x2 + TP3;
        p = p * x2 + TP4;
        p = p * x2 + TP5;
        p = p * x2 + TP6;
        float q = x2 * TQ0 + TQ1;
        q = q * x2 + TQ2;
        q = q * x2 + TQ3;
        return (p * x) / q;
    }

    static float sigmoid(float x) {
        return 1f / (1f + (float) Math.exp(-x));
    }

    static float activation(int fn, float x) {
        switch (fn) {
            case 0: return x;                                                        // identity
            case 1: return x != x ? x : Math.max(x, 0f);                            // relu
            case 2: return tanh(x);
            case 3: return sigmoid(x);
            case 4: return x > 0 ? x : (float) Math.expm1(Math.min(x, 0f));          // elu
            case 5: return Math.max(x, 0f) + (float) Math.log1p((float) Math.exp(-Math.abs(x)));  // softplus
            case 6: return x / (1f + Math.abs(x));                                   // softsign
            case 7: return Math.min(Math.max(x, 0f), 6f);                            // relu6
            case 8: return 1.0507009873554805f * (x > 0 ? x                          // selu
                    : 1.6732632423543772f * (float) Math.expm1(Math.min(x, 0f)));
            case 9: return x > 0 ? x : 0.2f * x;                                     // leaky_relu
            default: return x * sigmoid(x);                                          // swish
        }
    }

    /** The activations of {@link #activation}, at their codes (spec.ACTIVATIONS). */
    static final List<String> ACTIVATIONS = Collections.unmodifiableList(Arrays.asList(
            "identity", "relu", "tanh", "sigmoid", "elu", "softplus", "softsign", "relu6", "selu", "leaky_relu",
            "swish"));

    static int activationCode(String fn) {
        int code = ACTIVATIONS.indexOf(fn);
        if (code < 0) {
            throw new IllegalArgumentException("unknown activation " + fn);
        }
        return code;
    }

    // ---------------------------------------------------------------- the heavy ops

    static float clip(float v, float lo, float hi) {
        return v != v ? v : Math.min(Math.max(v, lo), hi);
    }

    // The inner loops index both arrays from 0 (weights as rows, an accumulator per
    // workspace): HotSpot's SuperWord vectorizes them then, not with a variable offset.

    /** out[r, :] = x[r, :] @ w + b for {@code rows} rows (w as k rows of m). */
    static void dense(float[] x, int rows, int k, float[][] w, float[] b, float[] out, int m, float[] acc) {
        for (int r = 0; r < rows; r++) {
            matvec(x, r * k, k, w, acc, m);
            int oo = r * m;
            for (int j = 0; j < m; j++) {
                out[oo + j] = acc[j] + b[j];
            }
        }
    }

    /** acc[0:m] = x[xo:xo+k] @ w, summed over k in order. */
    static void matvec(float[] x, int xo, int k, float[][] w, float[] acc, int m) {
        Arrays.fill(acc, 0, m, 0f);
        for (int i = 0; i < k; i++) {
            axpy(x[xo + i], w[i], acc, m);
        }
    }

    private static void axpy(float a, float[] row, float[] acc, int m) {
        for (int j = 0; j < m; j++) {
            acc[j] += a * row[j];
        }
    }

    /** NHWC x, HWIO w as (kh*kw*c) rows of co, VALID padding. */
    static void conv2d(float[] x, int n, int h, int wd, int c, float[][] w, int kh, int kw, int co, int s,
                       float[] b, float[] out, int oh, int ow, float[] acc) {
        for (int bi = 0; bi < n; bi++) {
            for (int oy = 0; oy < oh; oy++) {
                for (int ox = 0; ox < ow; ox++) {
                    Arrays.fill(acc, 0, co, 0f);
                    for (int ky = 0; ky < kh; ky++) {
                        for (int kx = 0; kx < kw; kx++) {
                            int xi = ((bi * h + oy * s + ky) * wd + ox * s + kx) * c;
                            int wi = (ky * kw + kx) * c;
                            for (int ci = 0; ci < c; ci++) {
                                axpy(x[xi + ci], w[wi + ci], acc, co);
                            }
                        }
                    }
                    int o = ((bi * oh + oy) * ow + ox) * co;
                    for (int j = 0; j < co; j++) {
                        out[o + j] = acc[j] + b[j];
                    }
                }
            }
        }
    }

    /**
     * Layer norm of x[off:off+size] into out[off:off+size] (may be x):
     * (x - mean) * rsqrt(var + eps) * gamma + beta, written as the reference does.
     */
    static void layerNorm(float[] x, int off, int size, float[] gamma, float[] beta, float eps, float[] out) {
        double sum = 0;
        for (int j = 0; j < size; j++) {
            sum += x[off + j];
        }
        float mean = (float) (sum / size);
        double sq = 0;
        for (int j = 0; j < size; j++) {
            float d = x[off + j] - mean;
            sq += d * d;
        }
        float var = (float) (sq / size);
        float rs = 1f / (float) Math.sqrt(var + eps);
        for (int j = 0; j < size; j++) {
            float inv = rs * gamma[j];
            out[off + j] = x[off + j] * inv + (beta[j] - mean * inv);
        }
    }

    /** SB2's tf_layers._ln inside LN-LSTMs, in place: (x - mean) / sqrt(var + 1e-5) * gain + bias. */
    static void lstmNorm(float[] x, int size, float[] gain, float[] bias) {
        double sum = 0;
        for (int j = 0; j < size; j++) {
            sum += x[j];
        }
        float mean = (float) (sum / size);
        double sq = 0;
        for (int j = 0; j < size; j++) {
            float d = x[j] - mean;
            sq += d * d;
        }
        float sd = (float) Math.sqrt((float) (sq / size) + 1e-5f);
        for (int j = 0; j < size; j++) {
            x[j] = (x[j] - mean) / sd * gain[j] + bias[j];
        }
    }

    static void softmax(float[] x, int rows, int k, float[] out) {
        for (int r = 0; r < rows; r++) {
            int o = r * k;
            float mx = Float.NEGATIVE_INFINITY;
            for (int j = 0; j < k; j++) {
                mx = Math.max(mx, x[o + j]);
            }
            float sum = 0f;
            for (int j = 0; j < k; j++) {
                float e = (float) Math.exp(x[o + j] - mx);
                out[o + j] = e;
                sum += e;
            }
            for (int j = 0; j < k; j++) {
                out[o + j] /= sum;
            }
        }
    }
}
