package io.sbexportd;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

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
 *
 * <p>This class is the entry point; the work is done by package-private classes, one
 * for each stage: {@code PortableReader} (the file and its tensors), {@code
 * PortableCompiler} (one rule per op: the contract checks and the steps), {@code
 * PortableProgram} (the compiled steps and a thread's workspace) and {@code
 * PortableKernels} (the numerics).
 */
public final class PortablePolicy {
    public static final String FORMAT = PortableReader.FORMAT;
    public static final long MAX_FILE = PortableReader.MAX_FILE;

    /** The ops of spec.OPS this runtime implements (all of them). */
    public static final Set<String> OPS =
            Collections.unmodifiableSet(new TreeSet<>(PortableCompiler.RULES.keySet()));

    /** The activation functions of the {@code activation} op. */
    public static final Set<String> ACTIVATIONS =
            Collections.unmodifiableSet(new TreeSet<>(PortableKernels.ACTIVATIONS));

    private final Map<String, Object> doc;
    private final String algorithm;
    private final String policy;
    private final String inputDtype;
    private final int[] obsShape;
    private final int obsSize;
    private final int nLstm;
    private final int stateSize;
    private final PortableProgram program;
    private final ThreadLocal<PortableProgram.Workspace> workspaces;

    private PortablePolicy(Map<String, Object> doc, PortableProgram program, int initialBatch) {
        this.doc = doc;
        this.program = program;
        this.algorithm = PortableReader.str(doc, "algorithm");
        this.policy = PortableReader.str(doc, "policy");
        this.inputDtype = program.inputDtype;
        this.obsShape = program.obsShape;
        this.obsSize = program.obsSize;
        this.nLstm = program.nLstm;
        this.stateSize = program.stateSize;
        this.workspaces = ThreadLocal.withInitial(() -> new PortableProgram.Workspace(program, initialBatch));
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
    public static PortablePolicy load(byte[] bytes, int initialBatch) throws IOException {
        Map<String, Object> doc = PortableReader.document(bytes);
        try {
            PortableProgram program = PortableCompiler.compile(doc, PortableReader.tensors(doc));
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
        return new Prediction(program.run(workspaces.get(), obs, batch, state, mask));
    }
}
