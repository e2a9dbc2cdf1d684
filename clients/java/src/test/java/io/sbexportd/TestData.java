package io.sbexportd;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

/** The reference data make_reference.py writes (build.sh test runs it first). */
final class TestData {
    static final Path DIR = Paths.get(System.getProperty("sbexportd.testdata", "build/testdata"));
    static final Path ROOT = Paths.get(System.getProperty("sbexportd.root", "../.."));
    static final String PYTHON = System.getProperty("sbexportd.python", ROOT.resolve(".venv/bin/python").toString());

    /** One case of index.json. */
    static final class Case {
        final String name;
        final String algo;
        final String policy;
        final String action;
        final boolean recurrent;
        final List<String> ops = new ArrayList<>();

        Case(JsonObject o) {
            name = o.get("case").getAsString();
            algo = o.get("algo").getAsString();
            policy = o.get("policy").getAsString();
            action = o.get("action").getAsString();
            recurrent = o.get("recurrent").getAsBoolean();
            for (JsonElement e : o.getAsJsonArray("ops")) {
                ops.add(e.getAsString());
            }
        }

        Path portable() {
            return DIR.resolve(name).resolve("portable").resolve("policy.sbx.msgpack");
        }

        boolean discreteAction() {
            return !action.equals("Box");
        }
    }

    /** One run of reference.msgpack: inputs and the NumPy reference outputs. */
    static final class Run {
        final Map<String, NdArray> inputs;
        final Map<String, NdArray> outputs;

        Run(Map<String, NdArray> inputs, Map<String, NdArray> outputs) {
            this.inputs = inputs;
            this.outputs = outputs;
        }
    }

    static List<Case> cases() throws IOException {
        Path index = DIR.resolve("index.json");
        if (!Files.exists(index)) {
            throw new IOException(index + " missing: run clients/java/build.sh test (it makes the reference data)");
        }
        JsonArray rows = JsonParser.parseString(Files.readString(index)).getAsJsonObject().getAsJsonArray("cases");
        List<Case> out = new ArrayList<>();
        for (JsonElement e : rows) {
            out.add(new Case(e.getAsJsonObject()));
        }
        return out;
    }

    static Case find(String name) throws IOException {
        for (Case c : cases()) {
            if (c.name.equals(name)) {
                return c;
            }
        }
        throw new IOException("no reference case " + name);
    }

    @SuppressWarnings("unchecked")
    static List<Run> runs(Case c) throws IOException {
        Map<String, Object> doc = (Map<String, Object>) Msgpack.decode(
                Files.readAllBytes(DIR.resolve(c.name).resolve("reference.msgpack")));
        List<Run> out = new ArrayList<>();
        for (Object r : (List<Object>) doc.get("runs")) {
            Map<String, Object> run = (Map<String, Object>) r;
            out.add(new Run(arrays((Map<String, Object>) run.get("inputs")),
                    arrays((Map<String, Object>) run.get("outputs"))));
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    static Map<String, NdArray> arrays(Map<String, Object> m) {
        Map<String, NdArray> out = new LinkedHashMap<>();
        m.forEach((k, v) -> out.put(k, array((Map<String, Object>) v)));
        return out;
    }

    @SuppressWarnings("unchecked")
    static NdArray array(Map<String, Object> a) {
        List<Object> shape = (List<Object>) a.get("shape");
        int[] s = new int[shape.size()];
        for (int i = 0; i < s.length; i++) {
            s[i] = ((Number) shape.get(i)).intValue();
        }
        return NdArray.fromBytes((String) a.get("dtype"), s, (byte[]) a.get("data"));
    }

    /** The parity rule (sbexportd/parity.py): returns null when it holds, else why not. */
    static String compare(String name, NdArray mine, NdArray ref, boolean discreteAction, double[] scaledOut) {
        if (mine == null) {
            return name + ": missing";
        }
        if (!java.util.Arrays.equals(mine.shape(), ref.shape())) {
            return name + ": shape " + java.util.Arrays.toString(mine.shape()) + " vs reference "
                    + java.util.Arrays.toString(ref.shape());
        }
        double maxAbs = 0, maxScaled = 0;
        int mismatches = 0;
        for (int i = 0; i < ref.size(); i++) {
            double a = mine.getDouble(i), b = ref.getDouble(i);
            if (Double.isNaN(a) && Double.isNaN(b)) {
                continue;
            }
            double d = Math.abs(a - b);
            if (Double.isNaN(d)) {
                d = Double.POSITIVE_INFINITY;
            }
            if (a != b) {
                mismatches++;
            }
            maxAbs = Math.max(maxAbs, d);
            maxScaled = Math.max(maxScaled, d / Math.max(1.0, Math.abs(b)));
        }
        boolean action = name.equals("action") || name.equals("actions");
        if (scaledOut != null) {
            scaledOut[0] = action && !discreteAction ? maxAbs : maxScaled;
        }
        if (action && discreteAction) {
            if (!mine.dtype().equals(ref.dtype())) {
                return name + ": dtype " + mine.dtype().numpyName + " vs reference " + ref.dtype().numpyName;
            }
            return mismatches == 0 ? null : name + ": " + mismatches + " entries differ";
        }
        if (action) {
            return maxAbs <= 1e-5 ? null : name + ": max abs error " + maxAbs;
        }
        return maxScaled <= 1e-5 ? null : name + ": max scaled error " + maxScaled;
    }

    /**
     * The judge of sbexportd.parity.compare with a float32 bound (parity.judge's 2E of the
     * output): discrete actions equal; continuous actions |err| <= 1e-5 + bound; every other
     * output |err| <= 1e-5 * max(1, |ref|) + bound, element by element; ties (or null) marks the
     * discrete entries parity.judge accepts any answer on. null when it holds,
     * else why not. measured: {worst |err| (discrete: entries that differ), worst |err| / allowed}.
     */
    static String judge(String name, NdArray mine, NdArray ref, boolean discreteAction, double bound,
            NdArray ties, double[] measured) {
        if (mine == null) {
            return name + ": missing";
        }
        if (!java.util.Arrays.equals(mine.shape(), ref.shape())) {
            return name + ": shape " + java.util.Arrays.toString(mine.shape()) + " vs reference "
                    + java.util.Arrays.toString(ref.shape());
        }
        boolean action = name.equals("action") || name.equals("actions");
        double maxAbs = 0, ratio = 0;
        int mismatches = 0;
        boolean holds = true;
        for (int i = 0; i < ref.size(); i++) {
            double a = mine.getDouble(i), b = ref.getDouble(i);
            if (discreteAction) {   // ties: entries where exact and TF1 arithmetic disagree, any answer taken
                mismatches += a != b && (ties == null || ties.getDouble(i) == 0) ? 1 : 0;
                continue;
            }
            double d = Math.abs(a - b);
            if (Double.isNaN(d)) {
                d = Double.isNaN(a) && Double.isNaN(b) ? 0 : Double.POSITIVE_INFINITY;
            }
            double allowed = (action ? TOL : TOL * Math.max(1.0, Math.abs(b))) + bound;
            holds &= d <= allowed;
            maxAbs = Math.max(maxAbs, d);
            ratio = Math.max(ratio, d / allowed);
        }
        if (discreteAction) {
            measured[0] = mismatches;
            measured[1] = mismatches;
            if (!mine.dtype().equals(ref.dtype())) {
                return name + ": dtype " + mine.dtype().numpyName + " vs reference " + ref.dtype().numpyName;
            }
            return mismatches == 0 ? null : name + ": " + mismatches + " entries differ";
        }
        measured[0] = maxAbs;
        measured[1] = ratio;
        return holds ? null : String.format("%s: max abs error %.3g, %.2f times what the rule + float32 bound"
                + " %.2g allow", name, maxAbs, ratio, bound);
    }

    static final double TOL = 1e-5;

    private TestData() {
    }
}
