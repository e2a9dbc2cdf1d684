package io.sbexportd;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A compiled portable program: straight-line steps over numbered buffers (each of a kind,
 * float32, float64 or int64, and a size per batch row), where the observation, state and
 * mask go in and each output comes out. {@link PortableCompiler} builds it from the file;
 * it is immutable afterwards, and every thread runs it in its own {@link Workspace}.
 */
final class PortableProgram {
    static final int F32 = 0, F64 = 1, I64 = 2;

    /** One compiled op application over the rows {@code [0, n)} of a workspace. */
    interface Step {
        void run(Workspace w, int n);
    }

    int[] bufKind;
    int[] bufSize;       // elements per batch row
    Step[] steps;
    int obsBuf, stateBuf = -1, maskBuf = -1;
    String[] outNames;
    int[] outBuf;
    int[][] outShape;    // per row
    int[] obsShape;
    int obsSize;         // elements of one observation
    String inputDtype;
    int inputCast;
    int nLstm;
    int stateSize;
    int accSize;         // the widest matmul row: the accumulator each workspace holds

    /** One thread's buffers: every buffer of the program, for up to {@code cap} rows. */
    static final class Workspace {
        final PortableProgram p;
        int cap;
        float[][] f;
        double[][] d;
        long[][] l;
        final float[] acc;

        Workspace(PortableProgram p, int cap) {
            this.p = p;
            this.acc = new float[Math.max(1, p.accSize)];
            int n = p.bufKind.length;
            f = new float[n][];
            d = new double[n][];
            l = new long[n][];
            alloc(cap);
        }

        void ensure(int batch) {
            if (batch > cap) {
                alloc((int) Math.min(Integer.MAX_VALUE - 8, Math.max(batch, 2L * cap)));
            }
        }

        private void alloc(int rows) {
            for (int b = 0; b < p.bufKind.length; b++) {
                int len = Math.multiplyExact(rows, Math.max(1, p.bufSize[b]));
                switch (p.bufKind[b]) {
                    case F32: f[b] = new float[len]; break;
                    case F64: d[b] = new double[len]; break;
                    default: l[b] = new long[len];
                }
            }
            cap = rows;
        }
    }

    /**
     * Runs the program on a batch whose arguments the caller has checked: obs (float[],
     * double[], int[] or unsigned byte[]) of batch x the observation's size, state and mask
     * (null = zeros) for stateful programs. Returns the outputs by name, copied out of w.
     */
    Map<String, NdArray> run(Workspace w, Object obs, int batch, float[] state, float[] mask) {
        PortableProgram p = this;
        w.ensure(batch);
        loadObs(w, obs, batch * obsSize);
        if (stateSize > 0) {
            float[] s = w.f[p.stateBuf];
            if (state == null) {
                Arrays.fill(s, 0, batch * stateSize, 0f);
            } else {
                System.arraycopy(state, 0, s, 0, state.length);
            }
            float[] m = w.f[p.maskBuf];
            if (mask == null) {
                Arrays.fill(m, 0, batch, 0f);
            } else {
                System.arraycopy(mask, 0, m, 0, batch);
            }
        }
        for (Step step : p.steps) {
            step.run(w, batch);
        }
        Map<String, NdArray> out = new LinkedHashMap<>();
        for (int i = 0; i < p.outNames.length; i++) {
            int buf = p.outBuf[i];
            int n = batch * p.bufSize[buf];
            int[] shape = new int[p.outShape[i].length + 1];
            shape[0] = batch;
            System.arraycopy(p.outShape[i], 0, shape, 1, p.outShape[i].length);
            switch (p.bufKind[buf]) {
                case F32: out.put(p.outNames[i], NdArray.of(Arrays.copyOf(w.f[buf], n), shape)); break;
                case I64: out.put(p.outNames[i], NdArray.of(Arrays.copyOf(w.l[buf], n), shape)); break;
                default: out.put(p.outNames[i], NdArray.of(Arrays.copyOf(w.d[buf], n), shape));
            }
        }
        return out;
    }

    private void loadObs(Workspace w, Object obs, int n) {
        int buf = obsBuf;
        if (bufKind[buf] == F32) {
            float[] dst = w.f[buf];
            if (obs instanceof float[]) {
                System.arraycopy(obs, 0, dst, 0, n);
            } else if (obs instanceof double[]) {
                double[] src = (double[]) obs;
                for (int i = 0; i < n; i++) dst[i] = (float) src[i];
            } else if (obs instanceof int[]) {
                int[] src = (int[]) obs;
                for (int i = 0; i < n; i++) dst[i] = src[i];
            } else {
                byte[] src = (byte[]) obs;
                for (int i = 0; i < n; i++) dst[i] = src[i] & 0xFF;
            }
        } else {
            double[] dst = w.d[buf];
            int dt = inputCast;
            if (obs instanceof float[]) {
                float[] src = (float[]) obs;
                for (int i = 0; i < n; i++) dst[i] = PortableKernels.castTo(dt, src[i]);
            } else if (obs instanceof double[]) {
                double[] src = (double[]) obs;
                for (int i = 0; i < n; i++) dst[i] = PortableKernels.castTo(dt, src[i]);
            } else if (obs instanceof int[]) {
                int[] src = (int[]) obs;
                for (int i = 0; i < n; i++) dst[i] = PortableKernels.castTo(dt, src[i]);
            } else {
                byte[] src = (byte[]) obs;
                for (int i = 0; i < n; i++) dst[i] = PortableKernels.castTo(dt, src[i] & 0xFF);
            }
        }
    }
}
