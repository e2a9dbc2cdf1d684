package io.sbexportd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** PortablePolicy against sbexportd's NumPy reference on every fixture and synthetic case. */
class PortablePolicyTest {
    /** case -> output -> worst error (scaled; absolute for continuous actions). */
    private static final Map<String, Map<String, Double>> MEASURED = new TreeMap<>();

    @TestFactory
    Stream<DynamicTest> parityWithTheNumpyReference() throws IOException {
        List<TestData.Case> cases = TestData.cases();
        assertTrue(cases.size() >= 12, "expected the reference data of at least 12 cases, got " + cases.size());
        return cases.stream().map(c -> DynamicTest.dynamicTest(c.name, () -> checkCase(c)));
    }

    private static void checkCase(TestData.Case c) throws IOException {
        PortablePolicy policy = PortablePolicy.load(c.portable());
        Map<String, Double> worst = new TreeMap<>();
        List<String> failures = new ArrayList<>();
        for (TestData.Run run : TestData.runs(c)) {
            Prediction got = policy.predict(run.inputs.get("obs"), run.inputs.get("state"), run.inputs.get("mask"));
            assertEquals(run.outputs.keySet(), got.names(), c.name + ": output names");
            for (Map.Entry<String, NdArray> e : run.outputs.entrySet()) {
                double[] err = new double[1];
                String why = TestData.compare(e.getKey(), got.get(e.getKey()), e.getValue(), c.discreteAction(), err);
                if (why != null) {
                    failures.add(why + " (batch " + run.inputs.get("obs").dim(0) + ")");
                }
                worst.merge(e.getKey(), err[0], Math::max);
            }
        }
        synchronized (MEASURED) {
            MEASURED.put(c.name, worst);
        }
        if (!failures.isEmpty()) {
            fail(c.name + ": " + String.join("; ", failures));
        }
    }

    @AfterAll
    static void printTable() throws IOException {
        if (MEASURED.isEmpty()) {
            return;
        }
        StringBuilder s = new StringBuilder("\nPortablePolicy parity (worst error per output; scaled, actions absolute)\n");
        MEASURED.forEach((c, m) -> {
            s.append(String.format("  %-44s", c));
            m.forEach((k, v) -> s.append(String.format(" %s=%.1e", k, v)));
            s.append('\n');
        });
        System.out.print(s);
        Files.writeString(TestData.DIR.resolve("parity-java.txt"), s.toString());
    }

    @Test
    void everyOpOfTheSpecIsCovered() throws IOException {
        TreeSet<String> covered = new TreeSet<>();
        for (TestData.Case c : TestData.cases()) {
            covered.addAll(c.ops);
        }
        assertEquals(new TreeSet<>(PortablePolicy.OPS), covered);
    }

    /** Rows are independent: random sub-batches from many threads equal the one-thread answer bitwise. */
    @Test
    void concurrentSubBatchesMatchOneThread() throws Exception {
        for (String name : new String[] {"a2c_cnnlnlstm_img_discrete", "sac_lnmlp_vec_box", "ppo2_mlp_vecnormalize",
                "a2c_mlp_vec_multidiscrete"}) {
            TestData.Case c = TestData.find(name);
            PortablePolicy policy = PortablePolicy.load(c.portable());
            TestData.Run run = TestData.runs(c).get(0);
            NdArray obs = run.inputs.get("obs");
            int n = obs.dim(0), row = policy.observationSize(), ss = policy.stateSize();
            double[] all = obs.toDoubleArray();
            float[] state = run.inputs.containsKey("state") ? run.inputs.get("state").toFloatArray() : null;
            float[] mask = run.inputs.containsKey("mask") ? run.inputs.get("mask").toFloatArray() : null;
            Prediction whole = policy.predict(all, n, state, mask);
            ExecutorService pool = Executors.newFixedThreadPool(8);
            List<Future<?>> jobs = new ArrayList<>();
            for (int t = 0; t < 8; t++) {
                final long seed = t;
                jobs.add(pool.submit(() -> {
                    Random rnd = new Random(seed);
                    for (int it = 0; it < 150; it++) {
                        int b = 1 + rnd.nextInt(Math.min(n, 20));
                        int start = rnd.nextInt(n - b + 1);
                        Prediction p = policy.predict(Arrays.copyOfRange(all, start * row, (start + b) * row), b,
                                state == null ? null : Arrays.copyOfRange(state, start * ss, (start + b) * ss),
                                mask == null ? null : Arrays.copyOfRange(mask, start, start + b));
                        for (String out : whole.names()) {
                            NdArray w = whole.get(out), g = p.get(out);
                            int per = w.size() / n;
                            for (int i = 0; i < b * per; i++) {
                                if (Double.compare(g.getDouble(i), w.getDouble(start * per + i)) != 0) {
                                    throw new AssertionError(name + " " + out + " differs in thread " + seed);
                                }
                            }
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : jobs) {
                f.get();
            }
            pool.shutdown();
        }
    }

    @Test
    void recurrentDefaultsAreZeroStateAndNoReset() throws IOException {
        PortablePolicy p = PortablePolicy.load(TestData.find("ppo2_mlplstm_vec_box").portable());
        assertTrue(p.isRecurrent());
        float[] obs = {0.1f, -0.2f, 0.3f, 0.5f};
        Prediction a = p.predict(obs, 1);
        Prediction b = p.predict(obs, 1, new float[p.stateSize()], new float[1]);
        assertArrayEquals(a.action().floats(), b.action().floats());
        assertArrayEquals(a.state().floats(), b.state().floats());
        assertArrayEquals(new int[] {1, p.stateSize()}, a.state().shape());
        // feeding the state back changes the answer; a reset (mask 1) restores the first one
        Prediction c = p.predict(obs, 1, a.state().floats(), new float[] {0f});
        Prediction d = p.predict(obs, 1, a.state().floats(), new float[] {1f});
        assertTrue(!Arrays.equals(c.state().floats(), a.state().floats()));
        assertArrayEquals(a.state().floats(), d.state().floats());
    }

    @Test
    void typedInputsAndShapes() throws IOException {
        PortablePolicy img = PortablePolicy.load(TestData.find("dqn_cnn_img_discrete").portable());
        assertEquals("uint8", img.inputDtype());
        byte[] pixels = new byte[2 * img.observationSize()];
        for (int i = 0; i < pixels.length; i++) {
            pixels[i] = (byte) (i * 31);
        }
        Prediction p = img.predictUint8(pixels, 2, null, null);
        int[] ints = new int[pixels.length];
        for (int i = 0; i < ints.length; i++) {
            ints[i] = pixels[i] & 0xFF;
        }
        Prediction q = img.predict(ints, 2, null, null);
        assertArrayEquals(p.action().longs(), q.action().longs());
        assertArrayEquals(p.qValues().floats(), q.qValues().floats());
        assertArrayEquals(new int[] {2}, p.action().shape());
        assertArrayEquals(new int[] {2, 3}, p.qValues().shape());
        assertEquals(NdArray.DType.INT64, p.action().dtype());

        PortablePolicy md = PortablePolicy.load(TestData.find("a2c_mlp_vec_multidiscrete").portable());
        Prediction m = md.predict(new float[] {0.1f, 0.2f, 0.3f, 0.4f}, 1);
        assertArrayEquals(new int[] {1, 2}, m.action().shape());
        assertArrayEquals(new int[] {1, 3}, m.probs(0).shape());
        assertArrayEquals(new int[] {1, 2}, m.probs(1).shape());
        assertEquals(Arrays.asList("action", "probs_0", "probs_1", "values"), md.outputNames());
    }

    @Test
    void herGoalDict() throws IOException {
        PortablePolicy p = PortablePolicy.load(TestData.find("her_sac_bitflip").portable());
        assertEquals(Arrays.asList("observation", "achieved_goal", "desired_goal"), p.goalKeys());
        TestData.Run run = TestData.runs(TestData.find("her_sac_bitflip")).get(2);
        float[] flat = run.inputs.get("obs").toFloatArray();
        int n = run.inputs.get("obs").dim(0);
        Map<String, float[]> goal = new java.util.HashMap<>();
        String[] keys = {"observation", "achieved_goal", "desired_goal"};
        for (int k = 0; k < 3; k++) {
            float[] part = new float[n * 4];
            for (int r = 0; r < n; r++) {
                System.arraycopy(flat, r * 12 + k * 4, part, r * 4, 4);
            }
            goal.put(keys[k], part);
        }
        Prediction got = p.predictGoal(goal, n);
        Prediction flatPrediction = p.predict(run.inputs.get("obs"), null, null);
        assertArrayEquals(flatPrediction.action().floats(), got.action().floats());
        assertNull(TestData.compare("action", got.action(), run.outputs.get("action"), false, null));
        goal.remove("desired_goal");
        assertThrows(IllegalArgumentException.class, () -> p.predictGoal(goal, n));
        PortablePolicy notHer = PortablePolicy.load(TestData.find("sac_mlp_vec_box").portable());
        assertEquals(null, notHer.goalKeys());
    }

    @Test
    void badInputsAreRefused() throws IOException {
        PortablePolicy p = PortablePolicy.load(TestData.find("ppo2_mlp_vec_discrete").portable());
        assertThrows(IllegalArgumentException.class, () -> p.predict(new float[5], 1));
        assertThrows(IllegalArgumentException.class, () -> p.predict(new float[4], 0));
        assertThrows(IllegalArgumentException.class, () -> p.predict(new float[4], 1, new float[2], new float[1]));
        PortablePolicy r = PortablePolicy.load(TestData.find("ppo2_mlplstm_vec_box").portable());
        assertThrows(IllegalArgumentException.class, () -> r.predict(new float[4], 1, new float[3], null));
        assertThrows(IllegalArgumentException.class, () -> r.predict(new float[4], 1, null, new float[2]));
    }

    @SuppressWarnings("unchecked")
    @Test
    void badFilesAreRefused() throws IOException {
        byte[] good = Files.readAllBytes(TestData.find("ppo2_mlp_vec_discrete").portable());
        PortablePolicy.load(good);
        assertThrows(IOException.class, () -> PortablePolicy.load(Arrays.copyOf(good, good.length / 2)));
        assertThrows(IOException.class, () -> PortablePolicy.load(new byte[] {1, 2, 3}));

        Map<String, Object> doc = (Map<String, Object>) Msgpack.decode(good);
        doc.put("format_version", 2L);
        assertMessage(doc, "v1");

        doc = (Map<String, Object>) Msgpack.decode(good);
        ((Map<String, Object>) ((List<Object>) doc.get("nodes")).get(0)).put("op", "system");
        assertMessage(doc, "unknown op system");

        doc = (Map<String, Object>) Msgpack.decode(good);
        Map<String, Object> t = (Map<String, Object>) ((Map<String, Object>) doc.get("tensors")).values().iterator().next();
        t.put("data", Arrays.copyOf((byte[]) t.get("data"), 3));
        assertMessage(doc, "bytes for shape");

        doc = (Map<String, Object>) Msgpack.decode(good);
        Map<String, Object> node = (Map<String, Object>) ((List<Object>) doc.get("nodes")).get(1);
        node.put("inputs", Arrays.asList("nowhere"));
        assertMessage(doc, "reads nowhere before it is written");

        doc = (Map<String, Object>) Msgpack.decode(good);
        for (Object n : (List<Object>) doc.get("nodes")) {
            Map<String, Object> m = (Map<String, Object>) n;
            if (m.get("op").equals("dense")) {
                Map<String, Object> w = (Map<String, Object>) ((Map<String, Object>) doc.get("tensors"))
                        .get(((Map<String, Object>) m.get("params")).get("w"));
                List<Object> shape = (List<Object>) w.get("shape");
                long count = (Long) shape.get(0) * (Long) shape.get(1);
                w.put("shape", Arrays.asList(1L, count));   // same bytes, wrong fan-in
                break;
            }
        }
        assertMessage(doc, "w shape");
    }

    private static void assertMessage(Map<String, Object> doc, String part) throws IOException {
        byte[] bytes = Msgpack.encode(doc);
        IOException e = assertThrows(IOException.class, () -> PortablePolicy.load(bytes));
        assertTrue(e.getMessage().contains(part), e.getMessage());
    }

    @Test
    void tf1TanhIsTheReferenceOne() {
        // values of sbexportd.realize.numpy_backend.tf1_tanh (float32 bits)
        assertEquals(0f, PortableKernels.tanh(0f));
        assertEquals(1f, PortableKernels.tanh(20f));
        assertEquals(-1f, PortableKernels.tanh(-20f));
        assertTrue(Math.abs(PortableKernels.tanh(0.5f) - (float) Math.tanh(0.5)) < 1e-6);
        assertTrue(Float.isNaN(PortableKernels.tanh(Float.NaN)));
    }
}
