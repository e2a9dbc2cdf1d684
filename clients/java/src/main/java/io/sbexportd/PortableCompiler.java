package io.sbexportd;

import static io.sbexportd.PortableProgram.F32;
import static io.sbexportd.PortableProgram.F64;
import static io.sbexportd.PortableProgram.I64;
import static io.sbexportd.PortableReader.asMap;
import static io.sbexportd.PortableReader.ints;
import static io.sbexportd.PortableReader.list;
import static io.sbexportd.PortableReader.map;
import static io.sbexportd.PortableReader.num;
import static io.sbexportd.PortableReader.str;
import static io.sbexportd.PortableReader.strings;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import io.sbexportd.PortableProgram.Step;

/**
 * Compiles a portable document into a {@link PortableProgram}: checks every node against
 * its op's contract (inputs written before they are read, params present and of
 * broadcastable shapes, attributes in range) and turns it into steps over numbered
 * buffers. One rule per op of the spec ({@link #RULES}); a rule sizes its outputs and
 * adds the step that computes them with {@link PortableKernels}.
 */
final class PortableCompiler {
    /** Compiles one node: checks it, allocates its outputs, adds its steps. */
    interface Rule {
        void compile(PortableCompiler c, Node node) throws IOException;
    }

    /** Every op of spec.OPS by name ({@link PortablePolicy#OPS} is its key set). */
    static final Map<String, Rule> RULES;

    static {
        Map<String, Rule> rules = new LinkedHashMap<>();
        rules.put("cast_float", PortableCompiler::castFloat);
        rules.put("concat_dict", PortableCompiler::concatDict);
        rules.put("one_hot", PortableCompiler::oneHot);
        rules.put("multi_one_hot", PortableCompiler::oneHot);
        rules.put("scale_box", PortableCompiler::scaleBox);
        rules.put("running_norm", PortableCompiler::runningNorm);
        rules.put("vecnormalize", PortableCompiler::vecnormalize);
        rules.put("flatten", PortableCompiler::flatten);
        rules.put("squeeze_last", PortableCompiler::squeezeLast);
        rules.put("dense", PortableCompiler::dense);
        rules.put("conv2d", PortableCompiler::conv2d);
        rules.put("activation", PortableCompiler::activation);
        rules.put("exp", PortableCompiler::exp);
        rules.put("round", PortableCompiler::round);
        rules.put("clip_value", PortableCompiler::clipValue);
        rules.put("clip_box", PortableCompiler::clipBox);
        rules.put("unscale_box", PortableCompiler::unscaleBox);
        rules.put("exp_broadcast", PortableCompiler::expBroadcast);
        rules.put("layer_norm", PortableCompiler::layerNorm);
        rules.put("lstm", PortableCompiler::lstm);
        rules.put("frame_stack", PortableCompiler::frameStack);
        rules.put("concat", PortableCompiler::concat);
        rules.put("dueling", PortableCompiler::dueling);
        rules.put("softmax", PortableCompiler::softmax);
        rules.put("argmax", PortableCompiler::argmax);
        rules.put("split", PortableCompiler::split);
        rules.put("stack_last", PortableCompiler::stackLast);
        RULES = Collections.unmodifiableMap(rules);
    }

    /** One node of the program: its op, input and output names, attributes, and the raw map (for params). */
    static final class Node {
        final String op;
        final List<String> inputs;
        final List<String> outputs;
        final Map<String, Object> attrs;
        final Map<String, Object> doc;

        Node(String op, Map<String, Object> doc) throws IOException {
            this.op = op;
            this.doc = doc;
            this.inputs = strings(doc, "inputs");
            this.outputs = strings(doc, "outputs");
            this.attrs = map(doc, "attrs");
        }
    }

    private final Map<String, Object> doc;
    private final Map<String, NdArray> tensors;
    private final List<Integer> kinds = new ArrayList<>();
    private final List<Integer> sizes = new ArrayList<>();
    private final List<Step> steps = new ArrayList<>();
    private final Map<String, Slot> env = new HashMap<>();
    private final Map<String, Slot> converted = new HashMap<>();
    private int accSize;

    /** A named tensor of the program: a buffer, its kind and its per-row shape. */
    private static final class Slot {
        final int buf;
        final int kind;
        final int[] shape;
        final int size;

        Slot(int buf, int kind, int[] shape) {
            this.buf = buf;
            this.kind = kind;
            this.shape = shape;
            this.size = NdArray.count(shape);
        }
    }

    private PortableCompiler(Map<String, Object> doc, Map<String, NdArray> tensors) {
        this.doc = doc;
        this.tensors = tensors;
    }

    private Slot newSlot(int kind, int[] shape) {
        kinds.add(kind);
        sizes.add(NdArray.count(shape));
        return new Slot(kinds.size() - 1, kind, shape);
    }

    private int scratch(int size) {
        kinds.add(F32);
        sizes.add(size);
        return kinds.size() - 1;
    }

    /** The program of a portable document whose tensors {@link PortableReader#tensors} has read. */
    static PortableProgram compile(Map<String, Object> doc, Map<String, NdArray> tensors) throws IOException {
        return new PortableCompiler(doc, tensors).program();
    }

    private PortableProgram program() throws IOException {
        PortableProgram p = new PortableProgram();
        Map<String, Object> input = map(doc, "input");
        p.inputDtype = str(input, "dtype");
        p.inputCast = PortableKernels.castCode(p.inputDtype);
        List<Object> ishape = list(input, "shape");
        if (ishape.isEmpty() || ishape.get(0) != null) {
            throw new IOException("input shape must start with the batch axis (null)");
        }
        p.obsShape = ints(ishape.subList(1, ishape.size()), "input shape");
        p.obsSize = NdArray.count(p.obsShape);
        Slot obs = newSlot(p.inputDtype.equals("float32") ? F32 : F64, p.obsShape);
        p.obsBuf = obs.buf;
        env.put("obs", obs);
        Object rec = doc.get("recurrent");
        if (rec != null) {
            p.nLstm = (int) num(asMap(rec, "recurrent"), "n_lstm");
            if (p.nLstm < 1) {
                throw new IOException("recurrent.n_lstm must be >= 1");
            }
        }
        // state.size (files before it carry an LSTM's 2 * n_lstm only)
        Object st = doc.get("state");
        p.stateSize = st != null ? (int) num(asMap(st, "state"), "size") : 2 * p.nLstm;
        if (p.stateSize < 0) {
            throw new IOException("state.size must be >= 0");
        }
        if (p.stateSize > 0) {
            Slot state = newSlot(F32, new int[] {p.stateSize});
            Slot mask = newSlot(F32, new int[0]);
            p.stateBuf = state.buf;
            p.maskBuf = mask.buf;
            env.put("state", state);
            env.put("mask", mask);
        }
        List<Object> nodes = list(doc, "nodes");
        for (int i = 0; i < nodes.size(); i++) {
            Map<String, Object> node = asMap(nodes.get(i), "node " + i);
            String op = str(node, "op");
            try {
                compileNode(op, node);
            } catch (IOException | RuntimeException e) {
                throw new IOException("node " + i + " (" + op + "): " + e.getMessage(), e);
            }
        }
        Map<String, Object> outputs = map(doc, "outputs");
        p.outNames = new String[outputs.size()];
        p.outBuf = new int[outputs.size()];
        p.outShape = new int[outputs.size()][];
        int k = 0;
        for (Map.Entry<String, Object> e : outputs.entrySet()) {
            Slot s = env.get(String.valueOf(e.getValue()));
            if (s == null) {
                throw new IOException("output " + e.getKey() + " -> " + e.getValue() + " is never written");
            }
            p.outNames[k] = e.getKey();
            p.outBuf[k] = s.buf;
            p.outShape[k] = s.shape;
            k++;
        }
        p.steps = steps.toArray(new Step[0]);
        p.bufKind = kinds.stream().mapToInt(Integer::intValue).toArray();
        p.bufSize = sizes.stream().mapToInt(Integer::intValue).toArray();
        p.accSize = accSize;
        return p;
    }

    private void compileNode(String op, Map<String, Object> node) throws IOException {
        Rule rule = RULES.get(op);
        if (rule == null) {
            throw new IOException("unknown op " + op);
        }
        rule.compile(this, new Node(op, node));
    }

    // ---------------------------------------------------------------- helpers

    private Slot in(Node node, int i) throws IOException {
        if (i >= node.inputs.size()) {
            throw new IOException("needs at least " + (i + 1) + " inputs");
        }
        Slot s = env.get(node.inputs.get(i));
        if (s == null) {
            throw new IOException("reads " + node.inputs.get(i) + " before it is written");
        }
        return s;
    }

    /** The slot as float32 (a conversion step when it is not). */
    private Slot f32(Slot s) {
        if (s.kind == F32) {
            return s;
        }
        String key = s.buf + "";
        Slot c = converted.get(key);
        if (c == null) {
            c = newSlot(F32, s.shape);
            final int src = s.buf, dst = c.buf, size = s.size, kind = s.kind;
            steps.add((w, n) -> {
                float[] o = w.f[dst];
                int m = n * size;
                if (kind == F64) {
                    double[] x = w.d[src];
                    for (int j = 0; j < m; j++) o[j] = (float) x[j];
                } else {
                    long[] x = w.l[src];
                    for (int j = 0; j < m; j++) o[j] = x[j];
                }
            });
            converted.put(key, c);
        }
        return c;
    }

    private NdArray param(Node node, String role) throws IOException {
        Map<String, Object> params = map(node.doc, "params");
        Object key = params.get(role);
        if (key == null) {
            throw new IOException("param " + role + " missing");
        }
        NdArray t = tensors.get(String.valueOf(key));
        if (t == null) {
            throw new IOException("param " + role + "=" + key + " is not among the tensors");
        }
        return t;
    }

    /** A param broadcast (NumPy rules) to one row of {@code shape}, as float32. */
    private float[] rowF(Node node, String role, int[] shape) throws IOException {
        double[] d = rowD(node, role, shape);
        float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            f[i] = (float) d[i];
        }
        return f;
    }

    private double[] rowD(Node node, String role, int[] shape) throws IOException {
        NdArray t = param(node, role);
        int[] ps = t.shape();
        // align to (batch,) + shape from the right; leading extra dims must be 1
        int full = shape.length + 1;
        if (ps.length > full) {
            for (int i = 0; i < ps.length - full; i++) {
                if (ps[i] != 1) {
                    throw new IOException("param " + role + " shape " + Arrays.toString(ps)
                            + " does not broadcast to a row of " + Arrays.toString(shape));
                }
            }
        }
        int[] stride = new int[shape.length];   // param stride for each row axis (0 = broadcast)
        int acc = 1;
        for (int a = shape.length - 1, pa = ps.length - 1; a >= -1; a--, pa--) {
            int pd = pa >= 0 ? ps[pa] : 1;
            if (a == -1) {
                if (pd != 1) {
                    throw new IOException("param " + role + " shape " + Arrays.toString(ps)
                            + " has a batch axis of " + pd);
                }
                break;
            }
            if (pd != 1 && pd != shape[a]) {
                throw new IOException("param " + role + " shape " + Arrays.toString(ps)
                        + " does not broadcast to a row of " + Arrays.toString(shape));
            }
            stride[a] = pd == 1 ? 0 : acc;
            acc *= pd;
        }
        int size = NdArray.count(shape);
        double[] out = new double[size];
        int[] idx = new int[shape.length];
        for (int e = 0; e < size; e++) {
            int off = 0;
            for (int a = 0; a < shape.length; a++) {
                off += idx[a] * stride[a];
            }
            out[e] = t.getDouble(off);
            for (int a = shape.length - 1; a >= 0; a--) {
                if (++idx[a] < shape[a]) {
                    break;
                }
                idx[a] = 0;
            }
        }
        return out;
    }

    /** A (k, m) matrix (or HWIO kernel, as (kh*kw*i, o)) as k rows of m, for the kernels' loops. */
    private float[][] rows(NdArray t) {
        float[] flat = t.toFloatArray();
        int m = t.dim(t.rank() - 1), k = m == 0 ? 0 : flat.length / m;
        float[][] out = new float[k][];
        for (int i = 0; i < k; i++) {
            out[i] = Arrays.copyOfRange(flat, i * m, (i + 1) * m);
        }
        accSize = Math.max(accSize, m);
        return out;
    }

    private static int last(int[] shape) throws IOException {
        if (shape.length == 0) {
            throw new IOException("needs an input with at least one axis besides the batch");
        }
        return shape[shape.length - 1];
    }

    private static int[] withLast(int[] shape, int last) {
        int[] s = Arrays.copyOf(shape, Math.max(shape.length, 1));
        s[s.length - 1] = last;
        return s;
    }

    private void put(Node node, int i, Slot s) throws IOException {
        if (i >= node.outputs.size()) {
            throw new IOException("needs at least " + (i + 1) + " outputs");
        }
        env.put(node.outputs.get(i), s);
    }

    interface F1 {
        float f(float v);
    }

    interface F2 {
        float f(float v, int j);
    }

    private Slot elementwise(Slot x, F1 fn) {
        Slot y = newSlot(F32, x.shape);
        final int src = x.buf, dst = y.buf, size = x.size;
        steps.add((w, n) -> {
            float[] a = w.f[src], o = w.f[dst];
            int m = n * size;
            for (int e = 0; e < m; e++) o[e] = fn.f(a[e]);
        });
        return y;
    }

    /** fn gets each value and its index within the row (for row-shaped params). */
    private Slot elementwise2(Slot x, F2 fn) {
        Slot y = newSlot(F32, x.shape);
        final int src = x.buf, dst = y.buf, size = x.size;
        steps.add((w, n) -> {
            float[] a = w.f[src], o = w.f[dst];
            for (int r = 0, e = 0; r < n; r++) {
                for (int j = 0; j < size; j++, e++) o[e] = fn.f(a[e], j);
            }
        });
        return y;
    }

    // ---------------------------------------------------------------- the ops

    private void castFloat(Node node) throws IOException {
        Slot x = in(node, 0);
        String via = node.attrs.containsKey("via") ? String.valueOf(node.attrs.get("via")) : "float32";
        int code = PortableKernels.castCode(via);
        if (x.kind == F32 && code == 0) {
            put(node, 0, x);
            return;
        }
        Slot y = newSlot(F32, x.shape);
        final int src = x.buf, dst = y.buf, size = x.size, kind = x.kind;
        steps.add((w, n) -> {
            float[] o = w.f[dst];
            int m = n * size;
            if (kind == F32) {
                float[] a = w.f[src];
                for (int j = 0; j < m; j++) o[j] = (float) PortableKernels.castTo(code, a[j]);
            } else if (kind == F64) {
                double[] a = w.d[src];
                for (int j = 0; j < m; j++) o[j] = (float) PortableKernels.castTo(code, a[j]);
            } else {
                long[] a = w.l[src];
                for (int j = 0; j < m; j++) o[j] = (float) PortableKernels.castTo(code, a[j]);
            }
        });
        put(node, 0, y);
    }

    private void concatDict(Node node) throws IOException {
        // A Java caller passes the goal dict already concatenated in attrs.keys
        // order (the manifest's goal_observation): the op is a float32 view of obs.
        put(node, 0, f32(in(node, 0)));
    }

    private void oneHot(Node node) throws IOException {
        Slot x = in(node, 0);
        final int[] nvec = node.op.equals("one_hot") ? new int[] {(int) num(node.attrs, "n")}
                : ints(node.attrs.get("nvec"), "nvec");
        if (x.size != nvec.length) {
            throw new IOException("input rows have " + x.size + " values for " + nvec.length
                    + " categories");
        }
        int total = 0;
        for (int v : nvec) {
            if (v < 1) {
                throw new IOException("category count " + v);
            }
            total += v;
        }
        Slot xs = x.kind == I64 ? f32(x) : x;
        Slot y = newSlot(F32, new int[] {total});
        final int src = xs.buf, dst = y.buf, k = nvec.length, tot = total, kind = xs.kind;
        steps.add((w, n) -> {
            float[] o = w.f[dst];
            Arrays.fill(o, 0, n * tot, 0f);
            for (int r = 0; r < n; r++) {
                int off = r * tot;
                for (int c = 0; c < k; c++) {
                    long idx = kind == F32 ? (long) w.f[src][r * k + c] : (long) w.d[src][r * k + c];
                    if (idx >= 0 && idx < nvec[c]) {
                        o[off + (int) idx] = 1f;
                    }
                    off += nvec[c];
                }
            }
        });
        put(node, 0, y);
    }

    private void scaleBox(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final float[] low = rowF(node, "low", x.shape), range = rowF(node, "range", x.shape);
        put(node, 0, elementwise2(x, (v, j) -> (v - low[j]) / range[j]));
    }

    private void runningNorm(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final float[] mean = rowF(node, "mean", x.shape), std = rowF(node, "std", x.shape);
        final float lo = (float) num(node.attrs, "lo"), hi = (float) num(node.attrs, "hi");
        put(node, 0, elementwise2(x, (v, j) -> PortableKernels.clip((v - mean[j]) / std[j], lo, hi)));
    }

    private void vecnormalize(Node node) throws IOException {
        Slot x = in(node, 0);
        final double[] mean = rowD(node, "mean", x.shape), var = rowD(node, "var", x.shape);
        final double eps = num(node.attrs, "eps"), clip = num(node.attrs, "clip");
        final double[] scale = new double[var.length];
        for (int j = 0; j < var.length; j++) {
            scale[j] = Math.sqrt(var[j] + eps);
        }
        Slot y = newSlot(F32, x.shape);
        final int src = x.buf, dst = y.buf, size = x.size, kind = x.kind;
        steps.add((w, n) -> {
            float[] o = w.f[dst];
            for (int r = 0, e = 0; r < n; r++) {
                for (int j = 0; j < size; j++, e++) {
                    double v = kind == F32 ? w.f[src][e] : kind == F64 ? w.d[src][e] : w.l[src][e];
                    double z = (v - mean[j]) / scale[j];
                    o[e] = (float) (z != z ? z : Math.max(-clip, Math.min(clip, z)));
                }
            }
        });
        put(node, 0, y);
    }

    private void flatten(Node node) throws IOException {
        Slot x = in(node, 0);
        put(node, 0, new Slot(x.buf, x.kind, new int[] {x.size}));
    }

    private void squeezeLast(Node node) throws IOException {
        Slot x = in(node, 0);
        if (last(x.shape) != 1) {
            throw new IOException("last axis is " + last(x.shape) + ", not 1");
        }
        put(node, 0, new Slot(x.buf, x.kind, Arrays.copyOf(x.shape, x.shape.length - 1)));
    }

    private void dense(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        NdArray wt = param(node, "w");
        if (wt.rank() != 2 || wt.dim(0) != last(x.shape)) {
            throw new IOException("w shape " + Arrays.toString(wt.shape()) + " for input rows "
                    + Arrays.toString(x.shape));
        }
        final int kIn = wt.dim(0), mOut = wt.dim(1);
        final float[][] wm = rows(wt);
        final float[] b = rowF(node, "b", new int[] {mOut});
        Slot y = newSlot(F32, withLast(x.shape, mOut));
        final int src = x.buf, dst = y.buf, rowsPer = x.size / Math.max(1, kIn);
        steps.add((w, n) -> PortableKernels.dense(w.f[src], n * rowsPer, kIn, wm, b, w.f[dst], mOut, w.acc));
        put(node, 0, y);
    }

    private void conv2d(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        NdArray wt = param(node, "w");
        if (x.shape.length != 3 || wt.rank() != 4 || wt.dim(2) != x.shape[2]) {
            throw new IOException("conv2d of input rows " + Arrays.toString(x.shape) + " (NHWC) with w "
                    + Arrays.toString(wt.shape()) + " (HWIO)");
        }
        final int s = (int) num(node.attrs, "stride");
        final int h = x.shape[0], wd = x.shape[1], c = x.shape[2];
        final int kh = wt.dim(0), kw = wt.dim(1), co = wt.dim(3);
        if (s < 1 || h < kh || wd < kw) {
            throw new IOException("stride " + s + ", kernel " + kh + "x" + kw + " on " + h + "x" + wd);
        }
        final int oh = (h - kh) / s + 1, ow = (wd - kw) / s + 1;
        final float[][] wm = rows(wt);
        final float[] b = rowF(node, "b", new int[] {co});
        Slot y = newSlot(F32, new int[] {oh, ow, co});
        final int src = x.buf, dst = y.buf;
        steps.add((w, n) -> PortableKernels.conv2d(w.f[src], n, h, wd, c, wm, kh, kw, co, s, b, w.f[dst], oh, ow, w.acc));
        put(node, 0, y);
    }

    private void activation(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final int fn = PortableKernels.activationCode(str(node.attrs, "fn"));
        put(node, 0, elementwise(x, v -> PortableKernels.activation(fn, v)));
    }

    private void exp(Node node) throws IOException {
        put(node, 0, elementwise(f32(in(node, 0)), v -> (float) Math.exp(v)));
    }

    private void round(Node node) throws IOException {
        Slot x = in(node, 0);
        if (x.kind == I64) {
            put(node, 0, x);
            return;
        }
        put(node, 0, elementwise(f32(x), v -> (float) Math.rint(v)));
    }

    private void clipValue(Node node) throws IOException {
        final float lo = (float) num(node.attrs, "lo"), hi = (float) num(node.attrs, "hi");
        put(node, 0, elementwise(f32(in(node, 0)), v -> PortableKernels.clip(v, lo, hi)));
    }

    private void clipBox(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final float[] lo = rowF(node, "low", x.shape), hi = rowF(node, "high", x.shape);
        put(node, 0, elementwise2(x, (v, j) -> PortableKernels.clip(v, lo[j], hi[j])));
    }

    private void unscaleBox(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final float[] lo = rowF(node, "low", x.shape), hi = rowF(node, "high", x.shape);
        final float[] range = new float[lo.length];
        for (int j = 0; j < lo.length; j++) {
            range[j] = hi[j] - lo[j];
        }
        put(node, 0, elementwise2(x, (v, j) -> lo[j] + 0.5f * (v + 1.0f) * range[j]));
    }

    private void expBroadcast(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final float[] logstd = rowF(node, "logstd", x.shape);
        put(node, 0, elementwise2(x, (v, j) -> (float) Math.exp(v * 0f + logstd[j])));
    }

    private void layerNorm(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final float[] gamma = rowF(node, "gamma", x.shape), beta = rowF(node, "beta", x.shape);
        final float eps = (float) num(node.attrs, "eps");
        Slot y = newSlot(F32, x.shape);
        final int src = x.buf, dst = y.buf, size = x.size;
        steps.add((w, n) -> {
            float[] a = w.f[src], o = w.f[dst];
            for (int r = 0; r < n; r++) {
                PortableKernels.layerNorm(a, r * size, size, gamma, beta, eps, o);
            }
        });
        put(node, 0, y);
    }

    private void concat(Node node) throws IOException {
        if (node.inputs.isEmpty()) {
            throw new IOException("needs inputs");
        }
        List<Slot> xs = new ArrayList<>();
        int total = 0;
        int[] lead = null;
        for (int i = 0; i < node.inputs.size(); i++) {
            Slot s = f32(in(node, i));
            last(s.shape);
            int[] l = Arrays.copyOf(s.shape, s.shape.length - 1);
            if (lead != null && !Arrays.equals(lead, l)) {
                throw new IOException("inputs differ before the last axis");
            }
            lead = l;
            total += last(s.shape);
            xs.add(s);
        }
        final int rowsPer = NdArray.count(lead);
        final int[] bufs = xs.stream().mapToInt(s -> s.buf).toArray();
        final int[] widths = xs.stream().mapToInt(s -> s.shape[s.shape.length - 1]).toArray();
        Slot y = newSlot(F32, withLast(xs.get(0).shape, total));
        final int dst = y.buf, tot = total;
        steps.add((w, n) -> {
            float[] o = w.f[dst];
            int rows = n * rowsPer;
            for (int r = 0; r < rows; r++) {
                int off = r * tot;
                for (int i = 0; i < bufs.length; i++) {
                    System.arraycopy(w.f[bufs[i]], r * widths[i], o, off, widths[i]);
                    off += widths[i];
                }
            }
        });
        put(node, 0, y);
    }

    private void dueling(Node node) throws IOException {
        Slot a = f32(in(node, 0)), v = f32(in(node, 1));
        if (a.shape.length != 1 || v.size != 1) {
            throw new IOException("advantages " + Arrays.toString(a.shape) + " and value "
                    + Arrays.toString(v.shape) + " per row");
        }
        Slot y = newSlot(F32, a.shape);
        final int sa = a.buf, sv = v.buf, dst = y.buf, k = a.size;
        steps.add((w, n) -> {
            float[] av = w.f[sa], vv = w.f[sv], o = w.f[dst];
            for (int r = 0; r < n; r++) {
                double sum = 0;
                for (int j = 0; j < k; j++) sum += av[r * k + j];
                float mean = (float) (sum / k);
                for (int j = 0; j < k; j++) o[r * k + j] = vv[r] + (av[r * k + j] - mean);
            }
        });
        put(node, 0, y);
    }

    private void softmax(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final int k = last(x.shape), rowsPer = x.size / Math.max(1, k);
        Slot y = newSlot(F32, x.shape);
        final int src = x.buf, dst = y.buf;
        steps.add((w, n) -> PortableKernels.softmax(w.f[src], n * rowsPer, k, w.f[dst]));
        put(node, 0, y);
    }

    private void argmax(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        final int k = last(x.shape), rowsPer = x.size / Math.max(1, k);
        if (k < 1) {
            throw new IOException("argmax of an empty axis");
        }
        Slot y = newSlot(I64, Arrays.copyOf(x.shape, x.shape.length - 1));
        final int src = x.buf, dst = y.buf;
        steps.add((w, n) -> {
            float[] a = w.f[src];
            long[] o = w.l[dst];
            int rows = n * rowsPer;
            for (int r = 0; r < rows; r++) {
                int base = r * k, best = 0;
                float bv = a[base];
                if (bv == bv) {
                    for (int j = 1; j < k; j++) {
                        float v = a[base + j];
                        if (v != v) {   // NumPy: the first NaN wins
                            best = j;
                            break;
                        }
                        if (v > bv) {
                            bv = v;
                            best = j;
                        }
                    }
                }
                o[r] = best;
            }
        });
        put(node, 0, y);
    }

    private void split(Node node) throws IOException {
        Slot x = f32(in(node, 0));
        int[] parts = ints(node.attrs.get("sizes"), "sizes");
        int total = 0;
        for (int v : parts) {
            if (v < 0) {
                throw new IOException("negative split size");
            }
            total += v;
        }
        final int k = last(x.shape);
        if (total != k || parts.length != node.outputs.size()) {
            throw new IOException("sizes " + Arrays.toString(parts) + " for a last axis of " + k
                    + " and " + node.outputs.size() + " outputs");
        }
        final int rowsPer = x.size / Math.max(1, k);
        int off = 0;
        for (int i = 0; i < parts.length; i++) {
            Slot y = newSlot(F32, withLast(x.shape, parts[i]));
            final int src = x.buf, dst = y.buf, o0 = off, width = parts[i];
            steps.add((w, n) -> {
                float[] a = w.f[src], o = w.f[dst];
                int rows = n * rowsPer;
                for (int r = 0; r < rows; r++) {
                    System.arraycopy(a, r * k + o0, o, r * width, width);
                }
            });
            put(node, i, y);
            off += parts[i];
        }
    }

    private void stackLast(Node node) throws IOException {
        if (node.inputs.isEmpty()) {
            throw new IOException("needs inputs");
        }
        List<Slot> xs = new ArrayList<>();
        for (int i = 0; i < node.inputs.size(); i++) {
            xs.add(in(node, i));
        }
        boolean allInt = xs.stream().allMatch(s -> s.kind == I64);
        for (int i = 0; i < xs.size(); i++) {
            if (!allInt) {
                xs.set(i, f32(xs.get(i)));
            }
            if (!Arrays.equals(xs.get(i).shape, xs.get(0).shape)) {
                throw new IOException("inputs of different shapes");
            }
        }
        int[] shape = Arrays.copyOf(xs.get(0).shape, xs.get(0).shape.length + 1);
        final int k = xs.size(), size = xs.get(0).size;
        shape[shape.length - 1] = k;
        Slot y = newSlot(allInt ? I64 : F32, shape);
        final int[] bufs = xs.stream().mapToInt(s -> s.buf).toArray();
        final int dst = y.buf;
        steps.add((w, n) -> {
            int m = n * size;
            for (int i = 0; i < k; i++) {
                if (allInt) {
                    long[] a = w.l[bufs[i]], o = w.l[dst];
                    for (int e = 0; e < m; e++) o[e * k + i] = a[e];
                } else {
                    float[] a = w.f[bufs[i]], o = w.f[dst];
                    for (int e = 0; e < m; e++) o[e * k + i] = a[e];
                }
            }
        });
        put(node, 0, y);
    }

    /** SB2's VecFrameStack, one step: the previous n - 1 frames (zeroed where mask is 1), then the new one. */
    private void frameStack(Node node) throws IOException {
        Slot x = in(node, 0), st = f32(in(node, 1)), mk = f32(in(node, 2));
        final int frames = (int) num(node.attrs, "n");
        int[] frame = ints(list(node.attrs, "frame"), "frame");
        if (frames < 2 || !Arrays.equals(frame, x.shape) || frame.length == 0) {
            throw new IOException("a stack of " + frames + " frames " + Arrays.toString(frame) + " got "
                    + Arrays.toString(x.shape));
        }
        final int lastDim = frame[frame.length - 1], per = x.size, lead = per / lastDim;
        final int kept = lastDim * (frames - 1), width = lastDim * frames;
        if (st.size != (frames - 1) * per || mk.size != 1) {
            throw new IOException("state rows of " + st.size + " and mask rows of " + mk.size + " for "
                    + frames + " frames of " + per);
        }
        Slot xf = f32(x);
        Slot stacked = newSlot(F32, withLast(frame, width));
        Slot next = newSlot(F32, new int[] {(frames - 1) * per});
        final int xb = xf.buf, sb = st.buf, mb = mk.buf, ob = stacked.buf, nb = next.buf;
        steps.add((w, n) -> {
            float[] xa = w.f[xb], sa = w.f[sb], ma = w.f[mb], o = w.f[ob], nx = w.f[nb];
            for (int r = 0; r < n; r++) {
                float keep = 1f - ma[r];
                for (int q = 0; q < lead; q++) {
                    int s0 = (r * lead + q) * kept, o0 = (r * lead + q) * width;
                    for (int j = 0; j < kept; j++) {
                        o[o0 + j] = sa[s0 + j] * keep;
                    }
                    System.arraycopy(xa, (r * lead + q) * lastDim, o, o0 + kept, lastDim);
                    System.arraycopy(o, o0 + lastDim, nx, s0, kept);
                }
            }
        });
        put(node, 0, stacked);
        put(node, 1, next);
    }

    private void lstm(Node node) throws IOException {
        Slot x = f32(in(node, 0)), st = f32(in(node, 1)), mk = f32(in(node, 2));
        final int nh = (int) num(node.attrs, "n_hidden");
        final boolean ln = Boolean.TRUE.equals(node.attrs.get("layer_norm"));
        NdArray wx = param(node, "wx"), wh = param(node, "wh");
        if (x.shape.length != 1 || wx.rank() != 2 || wx.dim(0) != x.size || wx.dim(1) != 4 * nh
                || wh.rank() != 2 || wh.dim(0) != nh || wh.dim(1) != 4 * nh) {
            throw new IOException("input rows " + Arrays.toString(x.shape) + ", wx " + Arrays.toString(wx.shape())
                    + ", wh " + Arrays.toString(wh.shape()) + " for n_hidden " + nh);
        }
        if (st.size != 2 * nh || mk.size != 1) {
            throw new IOException("state rows of " + st.size + " and mask rows of " + mk.size + " for n_hidden "
                    + nh);
        }
        final int kIn = x.size, g = 4 * nh;
        final float[][] wxm = rows(wx), whm = rows(wh);
        final float[] b = rowF(node, "b", new int[] {g});
        final float[] gx, bx, gh, bh, gc, bc;
        if (ln) {
            gx = rowF(node, "gx", new int[] {g});
            bx = rowF(node, "bx", new int[] {g});
            gh = rowF(node, "gh", new int[] {g});
            bh = rowF(node, "bh", new int[] {g});
            gc = rowF(node, "gc", new int[] {nh});
            bc = rowF(node, "bc", new int[] {nh});
        } else {
            gx = bx = gh = bh = gc = bc = null;
        }
        Slot h = newSlot(F32, new int[] {nh});
        Slot s2 = newSlot(F32, new int[] {2 * nh});
        final int xb = x.buf, sb = st.buf, mb = mk.buf, hb = h.buf, ob = s2.buf;
        final int gates1 = scratch(g), gates2 = scratch(g), hprev = scratch(nh), cnorm = scratch(nh);
        steps.add((w, n) -> {
            float[] xa = w.f[xb], sa = w.f[sb], ma = w.f[mb], ho = w.f[hb], so = w.f[ob];
            float[] g1 = w.f[gates1], g2 = w.f[gates2], hp = w.f[hprev], cn = w.f[cnorm];
            for (int r = 0; r < n; r++) {
                float keep = 1f - ma[r];
                int so0 = r * 2 * nh;
                for (int j = 0; j < nh; j++) {
                    hp[j] = sa[so0 + nh + j] * keep;
                }
                PortableKernels.matvec(xa, r * kIn, kIn, wxm, g1, g);
                PortableKernels.matvec(hp, 0, nh, whm, g2, g);
                if (ln) {
                    PortableKernels.lstmNorm(g1, g, gx, bx);
                    PortableKernels.lstmNorm(g2, g, gh, bh);
                }
                for (int j = 0; j < g; j++) {
                    g1[j] = (g1[j] + g2[j]) + b[j];
                }
                for (int j = 0; j < nh; j++) {
                    float c = sa[so0 + j] * keep;
                    float cNew = PortableKernels.sigmoid(g1[nh + j]) * c + PortableKernels.sigmoid(g1[j]) * PortableKernels.tanh(g1[3 * nh + j]);
                    so[so0 + j] = cNew;
                    cn[j] = cNew;
                }
                if (ln) {
                    PortableKernels.lstmNorm(cn, nh, gc, bc);
                }
                for (int j = 0; j < nh; j++) {
                    float hv = PortableKernels.sigmoid(g1[2 * nh + j]) * PortableKernels.tanh(cn[j]);
                    ho[r * nh + j] = hv;
                    so[so0 + nh + j] = hv;
                }
            }
        });
        put(node, 0, h);
        put(node, 1, s2);
    }
}
