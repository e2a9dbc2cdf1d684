package io.sbexportd;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Runs an sbexportd {@code portable} export ({@code policy.sbx.msgpack}) in pure Java.
 *
 * <p>The file holds the policy as a straight-line program of ops over named tensors (the
 * spec of {@code sbexportd/understand/spec.py}) and its weights. Loading checks the whole
 * file (format, ops, dtypes, byte counts, every shape of the program) and compiles the
 * program into steps over numbered buffers. Evaluation follows sbexportd's NumPy reference
 * backend op for op, in float32 like TensorFlow 1 (VecNormalize in float64 like SB2, tanh
 * with TF 1.15's rational approximation).
 *
 * <p>Thread-safe: an instance is immutable once loaded; each thread evaluates in its own
 * workspace (a {@link ThreadLocal}) of preallocated buffers, grown when a larger batch
 * arrives. A call allocates only its outputs.
 */
public final class PortablePolicy {
    public static final String FORMAT = "sbexportd-portable";
    public static final long MAX_FILE = 1L << 30;

    /** The ops of spec.OPS this runtime implements (all of them). */
    public static final Set<String> OPS = Collections.unmodifiableSet(new java.util.TreeSet<>(Arrays.asList(
            "cast_float", "one_hot", "multi_one_hot", "scale_box", "vecnormalize", "running_norm", "concat_dict",
            "flatten", "dense", "conv2d", "activation", "layer_norm", "lstm", "concat", "dueling", "squeeze_last",
            "softmax", "argmax", "split", "stack_last", "round", "exp_broadcast", "exp", "clip_value", "clip_box",
            "unscale_box", "frame_stack")));

    public static final Set<String> ACTIVATIONS = Collections.unmodifiableSet(new java.util.TreeSet<>(Arrays.asList(
            "identity", "relu", "tanh", "sigmoid", "elu", "softplus", "softsign", "relu6", "selu", "leaky_relu",
            "swish")));

    static final int F32 = 0, F64 = 1, I64 = 2;

    private final Map<String, Object> doc;
    private final String algorithm;
    private final String policy;
    private final String inputDtype;
    private final int[] obsShape;
    private final int obsSize;
    private final int nLstm;
    private final int stateSize;
    private final Program program;
    private final ThreadLocal<Workspace> workspaces;

    private PortablePolicy(Map<String, Object> doc, Program program, int initialBatch) {
        this.doc = doc;
        this.program = program;
        this.algorithm = str(doc, "algorithm");
        this.policy = str(doc, "policy");
        this.inputDtype = program.inputDtype;
        this.obsShape = program.obsShape;
        this.obsSize = NdArray.count(obsShape);
        this.nLstm = program.nLstm;
        this.stateSize = program.stateSize;
        this.workspaces = ThreadLocal.withInitial(() -> new Workspace(program, initialBatch));
    }

    // ---------------------------------------------------------------- loading

    public static PortablePolicy load(Path file) throws IOException {
        long size = Files.size(file);
        if (size > MAX_FILE) {
            throw new IOException(file + ": larger than " + MAX_FILE + " bytes");
        }
        try {
            return load(Files.readAllBytes(file));
        } catch (IOException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
    }

    public static PortablePolicy load(byte[] bytes) throws IOException {
        return load(bytes, 1);
    }

    /**
     * Parses and compiles a portable file. {@code initialBatch}: the batch each thread's
     * workspace is first sized for (it grows on demand).
     */
    @SuppressWarnings("unchecked")
    public static PortablePolicy load(byte[] bytes, int initialBatch) throws IOException {
        if (bytes.length > MAX_FILE) {
            throw new IOException("larger than " + MAX_FILE + " bytes");
        }
        Object root = Msgpack.decode(bytes);
        if (!(root instanceof Map)) {
            throw new IOException("not an " + FORMAT + " file (top level is not a map)");
        }
        Map<String, Object> doc = (Map<String, Object>) root;
        if (!FORMAT.equals(doc.get("format")) || !Long.valueOf(1).equals(doc.get("format_version"))) {
            throw new IOException("not an " + FORMAT + " v1 file (format " + doc.get("format") + ", version "
                    + doc.get("format_version") + ")");
        }
        try {
            Map<String, NdArray> tensors = new HashMap<>();
            for (Map.Entry<String, Object> e : map(doc, "tensors").entrySet()) {
                Map<String, Object> t = asMap(e.getValue(), "tensor " + e.getKey());
                String dtype = str(t, "dtype");
                NdArray.DType d;
                try {
                    d = NdArray.DType.of(dtype);
                } catch (IllegalArgumentException x) {
                    throw new IOException("tensor " + e.getKey() + " has dtype " + dtype);
                }
                Object data = t.get("data");
                if (!(data instanceof byte[])) {
                    throw new IOException("tensor " + e.getKey() + ": data is not bytes");
                }
                int[] shape = ints(t.get("shape"), "tensor " + e.getKey() + " shape");
                long want = (long) NdArray.count(shape) * d.itemSize;
                if (want != ((byte[]) data).length) {
                    throw new IOException("tensor " + e.getKey() + " has " + ((byte[]) data).length
                            + " bytes for shape " + Arrays.toString(shape));
                }
                tensors.put(e.getKey(), NdArray.fromBytes(dtype, shape, (byte[]) data));
            }
            Program program = new Compiler(doc, tensors).compile();
            return new PortablePolicy(doc, program, Math.max(1, initialBatch));
        } catch (IllegalArgumentException | ClassCastException | ArithmeticException e) {
            throw new IOException("bad " + FORMAT + " file: " + e.getMessage(), e);
        }
    }

    // ---------------------------------------------------------------- description

    public String algorithm() {
        return algorithm;
    }

    /** The SB2 policy class name as saved. */
    public String policyName() {
        return policy;
    }

    /** The dtype of {@code obs} (SB2's placeholder dtype): float32, uint8, int32, ... */
    public String inputDtype() {
        return inputDtype;
    }

    /** The shape of one observation (without the batch axis). */
    public int[] observationShape() {
        return obsShape.clone();
    }

    public int observationSize() {
        return obsSize;
    }

    /** True when the program carries state: an LSTM, or a frame stack in front of the policy. */
    public boolean isRecurrent() {
        return stateSize > 0;
    }

    /** Floats of state per observation: 2 * n_lstm, (frames - 1) * one observation for a frame stack, else 0. */
    public int stateSize() {
        return stateSize;
    }

    /**
     * HER agents: the goal dict's keys in the order they are concatenated into {@code obs}
     * (the file's {@code goal_observation.keys}); null for other agents.
     */
    @SuppressWarnings("unchecked")
    public List<String> goalKeys() {
        Object g = doc.get("goal_observation");
        if (!(g instanceof Map) || !(((Map<String, Object>) g).get("keys") instanceof List)) {
            return null;
        }
        List<String> keys = new ArrayList<>();
        for (Object k : (List<Object>) ((Map<String, Object>) g).get("keys")) {
            keys.add(String.valueOf(k));
        }
        return Collections.unmodifiableList(keys);
    }

    /**
     * HER agents: a batch of goal dicts ({@code observation}, {@code achieved_goal},
     * {@code desired_goal}, each row-major (batch, size)), concatenated in {@link #goalKeys()}
     * order into {@code obs}.
     */
    public Prediction predictGoal(Map<String, float[]> goal, int batch) {
        List<String> keys = goalKeys();
        if (keys == null) {
            throw new IllegalArgumentException("this policy takes no goal dict (not a HER agent)");
        }
        if (batch < 1) {
            throw new IllegalArgumentException("batch must be >= 1, got " + batch);
        }
        double[] obs = new double[batch * obsSize];
        int off = 0;
        for (String k : keys) {
            float[] part = goal.get(k);
            if (part == null || part.length % batch != 0) {
                throw new IllegalArgumentException("goal dict: " + k + (part == null ? " missing"
                        : " has " + part.length + " values, not a batch of " + batch));
            }
            int width = part.length / batch;
            if (off + width > obsSize) {
                throw new IllegalArgumentException("goal dict: more than the " + obsSize + " observation values");
            }
            for (int r = 0; r < batch; r++) {
                for (int j = 0; j < width; j++) {
                    obs[r * obsSize + off + j] = part[r * width + j];
                }
            }
            off += width;
        }
        if (off != obsSize) {
            throw new IllegalArgumentException("goal dict: " + off + " values per row, the policy takes " + obsSize);
        }
        return run(obs, batch, null, null);
    }

    /** The output names in the convention's order (action, probs..., values, state). */
    public List<String> outputNames() {
        return Collections.unmodifiableList(Arrays.asList(program.outNames));
    }

    @SuppressWarnings("unchecked")
    public Map<String, Object> observationSpace() {
        return Collections.unmodifiableMap((Map<String, Object>) doc.get("observation_space"));
    }

    @SuppressWarnings("unchecked")
    public Map<String, Object> actionSpace() {
        return Collections.unmodifiableMap((Map<String, Object>) doc.get("action_space"));
    }

    /** The whole document except the tensors (for display). */
    public Map<String, Object> document() {
        Map<String, Object> d = new LinkedHashMap<>(doc);
        d.remove("tensors");
        return Collections.unmodifiableMap(d);
    }

    @Override
    public String toString() {
        return "PortablePolicy{" + algorithm + " " + policy + ", obs " + inputDtype + Arrays.toString(obsShape)
                + ", action " + actionSpace().get("type") + (nLstm > 0 ? ", lstm " + nLstm : "") + ", outputs "
                + outputNames() + "}";
    }

    // ---------------------------------------------------------------- evaluation

    /** A batch of float observations, row-major (batch, *observationShape). */
    public Prediction predict(float[] obs, int batch) {
        return predict(obs, batch, null, null);
    }

    /**
     * A batch of observations; recurrent policies also take {@code state} (batch, 2*n_lstm)
     * and {@code mask} (batch,), 1.0 at an episode start (null = zeros, as SB2's default).
     */
    public Prediction predict(float[] obs, int batch, float[] state, float[] mask) {
        return run(obs, batch, state, mask);
    }

    public Prediction predict(double[] obs, int batch, float[] state, float[] mask) {
        return run(obs, batch, state, mask);
    }

    /** Integer observations (Discrete, MultiDiscrete, MultiBinary, integer Box spaces). */
    public Prediction predict(int[] obs, int batch, float[] state, float[] mask) {
        return run(obs, batch, state, mask);
    }

    /** uint8 observations (images): the bytes are read unsigned. */
    public Prediction predictUint8(byte[] obs, int batch, float[] state, float[] mask) {
        return run(obs, batch, state, mask);
    }

    /** obs of shape (batch, *observationShape), any numeric dtype; state and mask may be null. */
    public Prediction predict(NdArray obs, NdArray state, NdArray mask) {
        if (obs.rank() != obsShape.length + 1
                || !Arrays.equals(Arrays.copyOfRange(obs.shape(), 1, obs.rank()), obsShape)) {
            throw new IllegalArgumentException("observation shape " + Arrays.toString(obs.shape())
                    + " is not a batch of " + Arrays.toString(obsShape));
        }
        Object data;
        switch (obs.dtype()) {
            case FLOAT32: case FLOAT64: case INT32: case UINT8: data = obs.data(); break;
            default: data = obs.toDoubleArray();
        }
        return run(data, obs.dim(0), state == null ? null : state.toFloatArray(),
                mask == null ? null : mask.toFloatArray());
    }

    private Prediction run(Object obs, int batch, float[] state, float[] mask) {
        if (batch < 1) {
            throw new IllegalArgumentException("batch must be >= 1, got " + batch);
        }
        int len = java.lang.reflect.Array.getLength(obs);
        if ((long) batch * obsSize != len) {
            throw new IllegalArgumentException("observations: " + len + " values for a batch of " + batch
                    + " x " + Arrays.toString(obsShape) + " (" + ((long) batch * obsSize) + " expected)");
        }
        if (stateSize == 0 && (state != null || mask != null)) {
            throw new IllegalArgumentException("state and mask apply to recurrent policies only");
        }
        if (state != null && state.length != (long) batch * stateSize) {
            throw new IllegalArgumentException("state: " + state.length + " values, expected (" + batch + ", "
                    + stateSize + ")");
        }
        if (mask != null && mask.length != batch) {
            throw new IllegalArgumentException("mask: " + mask.length + " values, expected " + batch);
        }
        Workspace w = workspaces.get();
        w.ensure(batch);
        Program p = program;
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
        return new Prediction(out);
    }

    private void loadObs(Workspace w, Object obs, int n) {
        int buf = program.obsBuf;
        if (program.bufKind[buf] == F32) {
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
            int dt = program.inputCast;
            if (obs instanceof float[]) {
                float[] src = (float[]) obs;
                for (int i = 0; i < n; i++) dst[i] = castTo(dt, src[i]);
            } else if (obs instanceof double[]) {
                double[] src = (double[]) obs;
                for (int i = 0; i < n; i++) dst[i] = castTo(dt, src[i]);
            } else if (obs instanceof int[]) {
                int[] src = (int[]) obs;
                for (int i = 0; i < n; i++) dst[i] = castTo(dt, src[i]);
            } else {
                byte[] src = (byte[]) obs;
                for (int i = 0; i < n; i++) dst[i] = castTo(dt, src[i] & 0xFF);
            }
        }
    }

    // ---------------------------------------------------------------- numeric helpers

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

    static int activationCode(String fn) {
        switch (fn) {
            case "identity": return 0;
            case "relu": return 1;
            case "tanh": return 2;
            case "sigmoid": return 3;
            case "elu": return 4;
            case "softplus": return 5;
            case "softsign": return 6;
            case "relu6": return 7;
            case "selu": return 8;
            case "leaky_relu": return 9;
            case "swish": return 10;
            default: throw new IllegalArgumentException("unknown activation " + fn);
        }
    }

    // ---------------------------------------------------------------- program and workspace

    /** One compiled op application. */
    interface Step {
        void run(Workspace w, int n);
    }

    static final class Program {
        int[] bufKind;
        int[] bufSize;       // elements per batch row
        Step[] steps;
        int obsBuf, stateBuf = -1, maskBuf = -1;
        String[] outNames;
        int[] outBuf;
        int[][] outShape;    // per row
        int[] obsShape;
        String inputDtype;
        int inputCast;
        int nLstm;
        int stateSize;
        int accSize;         // the widest matmul row: the accumulator each workspace holds
    }

    /** One thread's buffers: every buffer of the program, for up to {@code cap} rows. */
    static final class Workspace {
        final Program p;
        int cap;
        float[][] f;
        double[][] d;
        long[][] l;
        final float[] acc;

        Workspace(Program p, int cap) {
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

    // ---------------------------------------------------------------- the compiler

    /** Checks every node against its contract and turns the program into steps. */
    private static final class Compiler {
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

        Compiler(Map<String, Object> doc, Map<String, NdArray> tensors) {
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

        Program compile() throws IOException {
            Program p = new Program();
            Map<String, Object> input = map(doc, "input");
            p.inputDtype = str(input, "dtype");
            p.inputCast = castCode(p.inputDtype);
            List<Object> ishape = list(input, "shape");
            if (ishape.isEmpty() || ishape.get(0) != null) {
                throw new IOException("input shape must start with the batch axis (null)");
            }
            p.obsShape = ints(ishape.subList(1, ishape.size()), "input shape");
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

        // -- helpers

        private Slot in(List<String> inputs, int i) throws IOException {
            if (i >= inputs.size()) {
                throw new IOException("needs at least " + (i + 1) + " inputs");
            }
            Slot s = env.get(inputs.get(i));
            if (s == null) {
                throw new IOException("reads " + inputs.get(i) + " before it is written");
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

        private NdArray param(Map<String, Object> node, String role) throws IOException {
            Map<String, Object> params = map(node, "params");
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
        private float[] rowF(Map<String, Object> node, String role, int[] shape) throws IOException {
            double[] d = rowD(node, role, shape);
            float[] f = new float[d.length];
            for (int i = 0; i < d.length; i++) {
                f[i] = (float) d[i];
            }
            return f;
        }

        private double[] rowD(Map<String, Object> node, String role, int[] shape) throws IOException {
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

        private void put(List<String> outputs, int i, Slot s) throws IOException {
            if (i >= outputs.size()) {
                throw new IOException("needs at least " + (i + 1) + " outputs");
            }
            env.put(outputs.get(i), s);
        }

        // -- the ops

        private void compileNode(String op, Map<String, Object> node) throws IOException {
            if (!OPS.contains(op)) {
                throw new IOException("unknown op " + op);
            }
            List<String> ins = strings(node, "inputs");
            List<String> outs = strings(node, "outputs");
            Map<String, Object> attrs = map(node, "attrs");
            switch (op) {
                case "cast_float": {
                    Slot x = in(ins, 0);
                    String via = attrs.containsKey("via") ? String.valueOf(attrs.get("via")) : "float32";
                    int code = castCode(via);
                    if (x.kind == F32 && code == 0) {
                        put(outs, 0, x);
                        return;
                    }
                    Slot y = newSlot(F32, x.shape);
                    final int src = x.buf, dst = y.buf, size = x.size, kind = x.kind;
                    steps.add((w, n) -> {
                        float[] o = w.f[dst];
                        int m = n * size;
                        if (kind == F32) {
                            float[] a = w.f[src];
                            for (int j = 0; j < m; j++) o[j] = (float) castTo(code, a[j]);
                        } else if (kind == F64) {
                            double[] a = w.d[src];
                            for (int j = 0; j < m; j++) o[j] = (float) castTo(code, a[j]);
                        } else {
                            long[] a = w.l[src];
                            for (int j = 0; j < m; j++) o[j] = (float) castTo(code, a[j]);
                        }
                    });
                    put(outs, 0, y);
                    return;
                }
                case "concat_dict": {
                    // A Java caller passes the goal dict already concatenated in attrs.keys
                    // order (the manifest's goal_observation): the op is a float32 view of obs.
                    put(outs, 0, f32(in(ins, 0)));
                    return;
                }
                case "one_hot":
                case "multi_one_hot": {
                    Slot x = in(ins, 0);
                    final int[] nvec = op.equals("one_hot") ? new int[] {(int) num(attrs, "n")}
                            : ints(attrs.get("nvec"), "nvec");
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
                    put(outs, 0, y);
                    return;
                }
                case "scale_box": {
                    Slot x = f32(in(ins, 0));
                    final float[] low = rowF(node, "low", x.shape), range = rowF(node, "range", x.shape);
                    put(outs, 0, elementwise2(x, (v, j) -> (v - low[j]) / range[j]));
                    return;
                }
                case "running_norm": {
                    Slot x = f32(in(ins, 0));
                    final float[] mean = rowF(node, "mean", x.shape), std = rowF(node, "std", x.shape);
                    final float lo = (float) num(attrs, "lo"), hi = (float) num(attrs, "hi");
                    put(outs, 0, elementwise2(x, (v, j) -> clip((v - mean[j]) / std[j], lo, hi)));
                    return;
                }
                case "vecnormalize": {
                    Slot x = in(ins, 0);
                    final double[] mean = rowD(node, "mean", x.shape), var = rowD(node, "var", x.shape);
                    final double eps = num(attrs, "eps"), clip = num(attrs, "clip");
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
                    put(outs, 0, y);
                    return;
                }
                case "flatten": {
                    Slot x = in(ins, 0);
                    put(outs, 0, new Slot(x.buf, x.kind, new int[] {x.size}));
                    return;
                }
                case "squeeze_last": {
                    Slot x = in(ins, 0);
                    if (last(x.shape) != 1) {
                        throw new IOException("last axis is " + last(x.shape) + ", not 1");
                    }
                    put(outs, 0, new Slot(x.buf, x.kind, Arrays.copyOf(x.shape, x.shape.length - 1)));
                    return;
                }
                case "dense": {
                    Slot x = f32(in(ins, 0));
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
                    steps.add((w, n) -> dense(w.f[src], n * rowsPer, kIn, wm, b, w.f[dst], mOut, w.acc));
                    put(outs, 0, y);
                    return;
                }
                case "conv2d": {
                    Slot x = f32(in(ins, 0));
                    NdArray wt = param(node, "w");
                    if (x.shape.length != 3 || wt.rank() != 4 || wt.dim(2) != x.shape[2]) {
                        throw new IOException("conv2d of input rows " + Arrays.toString(x.shape) + " (NHWC) with w "
                                + Arrays.toString(wt.shape()) + " (HWIO)");
                    }
                    final int s = (int) num(attrs, "stride");
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
                    steps.add((w, n) -> conv2d(w.f[src], n, h, wd, c, wm, kh, kw, co, s, b, w.f[dst], oh, ow, w.acc));
                    put(outs, 0, y);
                    return;
                }
                case "activation": {
                    Slot x = f32(in(ins, 0));
                    final int fn = activationCode(str(attrs, "fn"));
                    put(outs, 0, elementwise(x, v -> activation(fn, v)));
                    return;
                }
                case "exp": {
                    put(outs, 0, elementwise(f32(in(ins, 0)), v -> (float) Math.exp(v)));
                    return;
                }
                case "round": {
                    Slot x = in(ins, 0);
                    if (x.kind == I64) {
                        put(outs, 0, x);
                        return;
                    }
                    put(outs, 0, elementwise(f32(x), v -> (float) Math.rint(v)));
                    return;
                }
                case "clip_value": {
                    final float lo = (float) num(attrs, "lo"), hi = (float) num(attrs, "hi");
                    put(outs, 0, elementwise(f32(in(ins, 0)), v -> clip(v, lo, hi)));
                    return;
                }
                case "clip_box": {
                    Slot x = f32(in(ins, 0));
                    final float[] lo = rowF(node, "low", x.shape), hi = rowF(node, "high", x.shape);
                    put(outs, 0, elementwise2(x, (v, j) -> clip(v, lo[j], hi[j])));
                    return;
                }
                case "unscale_box": {
                    Slot x = f32(in(ins, 0));
                    final float[] lo = rowF(node, "low", x.shape), hi = rowF(node, "high", x.shape);
                    final float[] range = new float[lo.length];
                    for (int j = 0; j < lo.length; j++) {
                        range[j] = hi[j] - lo[j];
                    }
                    put(outs, 0, elementwise2(x, (v, j) -> lo[j] + 0.5f * (v + 1.0f) * range[j]));
                    return;
                }
                case "exp_broadcast": {
                    Slot x = f32(in(ins, 0));
                    final float[] logstd = rowF(node, "logstd", x.shape);
                    put(outs, 0, elementwise2(x, (v, j) -> (float) Math.exp(v * 0f + logstd[j])));
                    return;
                }
                case "layer_norm": {
                    Slot x = f32(in(ins, 0));
                    final float[] gamma = rowF(node, "gamma", x.shape), beta = rowF(node, "beta", x.shape);
                    final float eps = (float) num(attrs, "eps");
                    Slot y = newSlot(F32, x.shape);
                    final int src = x.buf, dst = y.buf, size = x.size;
                    steps.add((w, n) -> {
                        float[] a = w.f[src], o = w.f[dst];
                        for (int r = 0; r < n; r++) {
                            layerNorm(a, r * size, size, gamma, beta, eps, o);
                        }
                    });
                    put(outs, 0, y);
                    return;
                }
                case "lstm": {
                    compileLstm(node, ins, outs, attrs);
                    return;
                }
                case "frame_stack": {
                    compileFrameStack(ins, outs, attrs);
                    return;
                }
                case "concat": {
                    if (ins.isEmpty()) {
                        throw new IOException("needs inputs");
                    }
                    List<Slot> xs = new ArrayList<>();
                    int total = 0;
                    int[] lead = null;
                    for (int i = 0; i < ins.size(); i++) {
                        Slot s = f32(in(ins, i));
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
                    put(outs, 0, y);
                    return;
                }
                case "dueling": {
                    Slot a = f32(in(ins, 0)), v = f32(in(ins, 1));
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
                    put(outs, 0, y);
                    return;
                }
                case "softmax": {
                    Slot x = f32(in(ins, 0));
                    final int k = last(x.shape), rowsPer = x.size / Math.max(1, k);
                    Slot y = newSlot(F32, x.shape);
                    final int src = x.buf, dst = y.buf;
                    steps.add((w, n) -> softmax(w.f[src], n * rowsPer, k, w.f[dst]));
                    put(outs, 0, y);
                    return;
                }
                case "argmax": {
                    Slot x = f32(in(ins, 0));
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
                    put(outs, 0, y);
                    return;
                }
                case "split": {
                    Slot x = f32(in(ins, 0));
                    int[] parts = ints(attrs.get("sizes"), "sizes");
                    int total = 0;
                    for (int v : parts) {
                        if (v < 0) {
                            throw new IOException("negative split size");
                        }
                        total += v;
                    }
                    final int k = last(x.shape);
                    if (total != k || parts.length != outs.size()) {
                        throw new IOException("sizes " + Arrays.toString(parts) + " for a last axis of " + k
                                + " and " + outs.size() + " outputs");
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
                        put(outs, i, y);
                        off += parts[i];
                    }
                    return;
                }
                case "stack_last": {
                    if (ins.isEmpty()) {
                        throw new IOException("needs inputs");
                    }
                    List<Slot> xs = new ArrayList<>();
                    for (int i = 0; i < ins.size(); i++) {
                        xs.add(in(ins, i));
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
                    put(outs, 0, y);
                    return;
                }
                default:
                    throw new IOException("op " + op + " is not implemented");
            }
        }

        /** SB2's VecFrameStack, one step: the previous n - 1 frames (zeroed where mask is 1), then the new one. */
        private void compileFrameStack(List<String> ins, List<String> outs, Map<String, Object> attrs)
                throws IOException {
            Slot x = in(ins, 0), st = f32(in(ins, 1)), mk = f32(in(ins, 2));
            final int frames = (int) num(attrs, "n");
            int[] frame = ints(list(attrs, "frame"), "frame");
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
            put(outs, 0, stacked);
            put(outs, 1, next);
        }

        private void compileLstm(Map<String, Object> node, List<String> ins, List<String> outs,
                                 Map<String, Object> attrs) throws IOException {
            Slot x = f32(in(ins, 0)), st = f32(in(ins, 1)), mk = f32(in(ins, 2));
            final int nh = (int) num(attrs, "n_hidden");
            final boolean ln = Boolean.TRUE.equals(attrs.get("layer_norm"));
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
                    matvec(xa, r * kIn, kIn, wxm, g1, g);
                    matvec(hp, 0, nh, whm, g2, g);
                    if (ln) {
                        lstmNorm(g1, g, gx, bx);
                        lstmNorm(g2, g, gh, bh);
                    }
                    for (int j = 0; j < g; j++) {
                        g1[j] = (g1[j] + g2[j]) + b[j];
                    }
                    for (int j = 0; j < nh; j++) {
                        float c = sa[so0 + j] * keep;
                        float cNew = sigmoid(g1[nh + j]) * c + sigmoid(g1[j]) * tanh(g1[3 * nh + j]);
                        so[so0 + j] = cNew;
                        cn[j] = cNew;
                    }
                    if (ln) {
                        lstmNorm(cn, nh, gc, bc);
                    }
                    for (int j = 0; j < nh; j++) {
                        float hv = sigmoid(g1[2 * nh + j]) * tanh(cn[j]);
                        ho[r * nh + j] = hv;
                        so[so0 + nh + j] = hv;
                    }
                }
            });
            put(outs, 0, h);
            put(outs, 1, s2);
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
    }

    // ---------------------------------------------------------------- kernels

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

    // ---------------------------------------------------------------- document access

    static Map<String, Object> map(Map<String, Object> m, String key) throws IOException {
        return asMap(m.get(key), key);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> asMap(Object o, String what) throws IOException {
        if (!(o instanceof Map)) {
            throw new IOException(what + " is not a map");
        }
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Map<String, Object> m, String key) throws IOException {
        Object o = m.get(key);
        if (!(o instanceof List)) {
            throw new IOException(key + " is not a list");
        }
        return (List<Object>) o;
    }

    static List<String> strings(Map<String, Object> m, String key) throws IOException {
        List<String> out = new ArrayList<>();
        for (Object o : list(m, key)) {
            if (!(o instanceof String)) {
                throw new IOException(key + " holds a non-string");
            }
            out.add((String) o);
        }
        return out;
    }

    static String str(Map<String, Object> m, String key) {
        Object o = m.get(key);
        if (!(o instanceof String)) {
            throw new IllegalArgumentException(key + " is not a string");
        }
        return (String) o;
    }

    static double num(Map<String, Object> m, String key) throws IOException {
        Object o = m.get(key);
        if (o instanceof Number) {
            return ((Number) o).doubleValue();
        }
        if (o instanceof String) {   // JSON has no infinity: "inf" / "-inf"
            String s = (String) o;
            if (s.equals("inf")) {
                return Double.POSITIVE_INFINITY;
            }
            if (s.equals("-inf")) {
                return Double.NEGATIVE_INFINITY;
            }
        }
        throw new IOException(key + " is not a number");
    }

    static int[] ints(Object o, String what) throws IOException {
        if (!(o instanceof List)) {
            throw new IOException(what + " is not a list");
        }
        List<?> l = (List<?>) o;
        int[] out = new int[l.size()];
        for (int i = 0; i < out.length; i++) {
            Object v = l.get(i);
            if (!(v instanceof Long) || (Long) v < 0 || (Long) v > Integer.MAX_VALUE) {
                throw new IOException(what + " holds " + v + ", not a size");
            }
            out[i] = (int) (long) (Long) v;
        }
        return out;
    }
}
