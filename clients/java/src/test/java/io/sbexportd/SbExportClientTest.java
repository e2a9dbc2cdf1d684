package io.sbexportd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** SbExportClient against a real daemon (sbexportd serve --tcp 127.0.0.1:0) started here. */
class SbExportClientTest {
    static LocalDaemon daemon;
    static SbExportClient json;
    static SbExportClient msgpack;

    /** Fixtures the client tests open (MLP Box, uint8 CNN, LSTM, LN-LSTM MultiDiscrete, HER int32, VecNormalize). */
    static final String[] CASES = {"ppo2_mlp_vec_box", "dqn_cnn_img_discrete", "ppo2_mlplstm_vec_box",
        "ppo2_mlplnlstm_vec_multidiscrete", "her_sac_bitflip", "ppo2_mlp_vecnormalize", "a2c_mlp_dobs_discrete"};

    @BeforeAll
    static void startDaemon() throws IOException {
        daemon = LocalDaemon.start(TestData.PYTHON);
        json = daemon.connect(new SbExportClient.Options().encoding(SbExportClient.Encoding.JSON));
        msgpack = daemon.connect(new SbExportClient.Options().encoding(SbExportClient.Encoding.MSGPACK));
        json.initialize(null);
        msgpack.initialize(null);
    }

    @AfterAll
    static void stopDaemon() throws IOException {
        if (json != null) {
            json.close();
        }
        if (msgpack != null) {
            msgpack.close();
        }
        if (daemon != null) {
            daemon.close();
        }
    }

    static Path model(String fixture) {
        return TestData.ROOT.resolve("tests/fixtures").resolve(fixture).resolve("model.zip").toAbsolutePath();
    }

    static String open(SbExportClient c, String fixture) throws IOException {
        Map<String, Object> opts = new LinkedHashMap<>();
        Path vn = model(fixture).resolveSibling("vecnormalize.pkl");
        if (Files.exists(vn)) {
            opts.put("vecnormalize", vn.toString());
        }
        return (String) c.open(model(fixture).toString(), opts).get("modelId");
    }

    @Test
    void initializeAdvertisesTheProtocol() throws IOException {
        Map<String, Object> info = msgpack.serverInfo();
        assertTrue(String.valueOf(info.get("protocolVersion")).startsWith("1."));
        assertTrue(((List<?>) info.get("targets")).contains("portable"));
        List<Map<String, Object>> targets = json.targets();
        assertTrue(targets.stream().anyMatch(t -> "portable".equals(t.get("name"))));
        Map<String, Object> status = msgpack.status();
        assertEquals(info.get("version"), status.get("version"));
        assertTrue(((Number) ((Map<?, ?>) status.get("connections")).get("open")).intValue() >= 2);
    }

    @SuppressWarnings("unchecked")
    @Test
    void openInspectParametersClose() throws IOException {
        Map<String, Object> first = json.open(model("ppo2_mlp_vec_box").toString());
        String id = (String) first.get("modelId");
        assertTrue(id.matches("m-[0-9a-f]{20}"), id);
        Map<String, Object> summary = (Map<String, Object>) first.get("summary");
        assertEquals("ppo2", summary.get("algorithm"));
        Map<String, Object> again = msgpack.open(model("ppo2_mlp_vec_box").toString());
        assertEquals(id, again.get("modelId"));
        assertEquals(Boolean.TRUE, again.get("cached"));

        Map<String, Object> inspected = msgpack.inspect(id);
        assertEquals(id, inspected.get("modelId"));
        assertEquals("ppo2", inspected.get("algorithm"));

        for (SbExportClient c : new SbExportClient[] {json, msgpack}) {
            Map<String, Object> params = c.parameters(id, Collections.singletonList("model/pi/w:0"), true);
            assertEquals(1L, ((Number) params.get("count")).longValue());
            Map<String, Object> p = ((List<Map<String, Object>>) params.get("parameters")).get(0);
            NdArray value = (NdArray) p.get("value");
            assertEquals(NdArray.DType.FLOAT32, value.dtype());
            double max = Double.NEGATIVE_INFINITY;
            for (float f : value.floats()) {
                max = Math.max(max, f);
            }
            assertEquals(((Number) p.get("max")).doubleValue(), max, 1e-7);
        }
        SbExportException e = assertThrows(SbExportException.class,
                () -> json.parameters(id, Collections.singletonList("no/such:0"), false));
        assertEquals(SbExportException.INVALID_PARAMS, e.code());
        assertEquals("unknown_parameter", e.kind());
        json.close(id);
    }

    /** JSON and msgpack answers are bitwise equal, and equal the NumPy reference of the test data. */
    @Test
    void predictJsonAndMsgpackEqualTheReference() throws IOException {
        for (String fixture : CASES) {
            String id = open(msgpack, fixture);
            TestData.Case c = TestData.find(fixture);
            for (TestData.Run run : TestData.runs(c)) {
                NdArray obs = run.inputs.get("obs"), state = run.inputs.get("state"), mask = run.inputs.get("mask");
                Prediction a = json.predict(id, obs, state, mask);
                Prediction b = msgpack.predict(id, obs, state, mask);
                assertEquals(a.names(), b.names(), fixture);
                for (String name : a.names()) {
                    assertEquals(a.get(name), b.get(name), fixture + " " + name + ": JSON vs msgpack");
                    String ref = name.equals("actions") ? "action" : name;
                    assertEquals(run.outputs.get(ref), b.get(name), fixture + " " + name + ": daemon vs reference");
                }
                assertNotNull(b.action());
            }
        }
    }

    @Test
    void predictOptionsAndListEncoding() throws IOException {
        String id = open(json, "ppo2_mlp_vec_discrete");
        NdArray obs = NdArray.of(new float[] {0.1f, 0.2f, -0.3f, 0.4f, 1f, -1f, 0.5f, 0f}, 2, 4);
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("obs", obs);
        p.put("outputs", Arrays.asList("actions", "values"));
        p.put("encoding", "list");
        Prediction listed = json.predict(id, p);
        assertEquals(new java.util.TreeSet<>(Arrays.asList("actions", "values")), new java.util.TreeSet<>(listed.names()));
        Prediction exact = msgpack.predict(id, obs);
        assertArrayEquals(exact.action().longs(), listed.action().longs());
        for (int i = 0; i < 2; i++) {   // list answers are float64 of the float32 values: exact too
            assertEquals(exact.values().getDouble(i), listed.values().getDouble(i));
        }
        Map<String, Object> sampled = new LinkedHashMap<>();
        sampled.put("obs", obs);
        sampled.put("deterministic", false);
        sampled.put("seed", 7);
        assertEquals(msgpack.predict(id, sampled).action(), json.predict(id, sampled).action());
    }

    @Test
    void exportPortableAndRunItInJava(@TempDir Path tmp) throws IOException {
        String id = open(msgpack, "ppo2_mlplstm_vec_box");
        List<Map<String, Object>> progress = Collections.synchronizedList(new ArrayList<>());
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("to", "portable");
        p.put("out", tmp.toString());
        ExportResult result = msgpack.export(id, p, progress::add);
        Map<String, Object> r = result.results().get(0);
        assertEquals("portable", r.get("target"));
        assertTrue(result.complete());
        assertTrue(result.failed().isEmpty());
        assertFalse(progress.isEmpty(), "no $/progress");
        assertEquals("begin", progress.get(0).get("kind"));
        assertEquals("end", progress.get(progress.size() - 1).get("kind"));

        PortablePolicy policy = PortablePolicy.load(tmp.resolve("portable/policy.sbx.msgpack"));
        TestData.Run run = TestData.runs(TestData.find("ppo2_mlplstm_vec_box")).get(0);
        NdArray obs = run.inputs.get("obs"), state = run.inputs.get("state"), mask = run.inputs.get("mask");
        Prediction remote = msgpack.predict(id, obs, state, mask);
        Prediction local = policy.predict(obs, state, mask);
        for (String name : remote.names()) {
            String mine = name.equals("actions") ? "action" : name;
            assertNull(TestData.compare(mine, local.get(mine), remote.get(name), false, null), name);
        }

        // again without force: output_exists
        SbExportException e = assertThrows(SbExportException.class,
                () -> msgpack.export(id, "portable", tmp.toString(), false));
        assertEquals(SbExportException.OUTPUT_EXISTS, e.code());
        assertEquals("output_exists", e.kind());
    }

    @Test
    void errorsCarryTheDocumentedCodes() throws IOException {
        for (SbExportClient c : new SbExportClient[] {json, msgpack}) {
            SbExportException e = assertThrows(SbExportException.class, () -> c.open("/nonexistent/agent.zip"));
            assertEquals(SbExportException.FILE_NOT_FOUND, e.code());
            assertEquals("file_not_found", e.kind());
            assertEquals("sbexport/open", e.method());
            assertNotNull(e.data().get("hint"));

            e = assertThrows(SbExportException.class, () -> c.inspect("m-00000000000000000000"));
            assertEquals(SbExportException.UNKNOWN_MODEL, e.code());

            String id = open(c, "ppo2_mlp_vec_box");
            e = assertThrows(SbExportException.class, () -> c.predict(id, NdArray.of(new float[5], 1, 5)));
            assertEquals(SbExportException.BAD_OBSERVATION, e.code());
            assertEquals("bad_observation", e.kind());

            e = assertThrows(SbExportException.class, () -> c.call("sbexport/nothing", new LinkedHashMap<>()));
            assertEquals(SbExportException.METHOD_NOT_FOUND, e.code());

            Path notModel = Files.createTempFile("sbexportd-java", ".zip");
            Files.write(notModel, new byte[] {1, 2, 3});
            e = assertThrows(SbExportException.class, () -> c.open(notModel.toString()));
            assertEquals(SbExportException.BAD_MODEL_FILE, e.code());
            Files.delete(notModel);
        }
        try (SbExportClient fresh = daemon.connect()) {
            SbExportException e = assertThrows(SbExportException.class, () -> fresh.status());
            assertEquals(SbExportException.NOT_INITIALIZED, e.code());
        }
    }

    /** Many threads, one connection each encoding: every answer reaches its own caller. */
    @Test
    void concurrentRequestsFromManyThreads() throws Exception {
        Map<String, String> ids = new ConcurrentHashMap<>();
        Map<String, TestData.Run> runs = new ConcurrentHashMap<>();
        for (String f : CASES) {
            ids.put(f, open(msgpack, f));
            runs.put(f, TestData.runs(TestData.find(f)).get(2));
        }
        ExecutorService pool = Executors.newFixedThreadPool(8);
        CountDownLatch go = new CountDownLatch(1);
        List<Future<Integer>> jobs = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            final int thread = t;
            jobs.add(pool.submit(() -> {
                go.await();
                int n = 0;
                for (int i = 0; i < 40; i++) {
                    String f = CASES[(thread + i) % CASES.length];
                    SbExportClient c = (thread + i) % 2 == 0 ? json : msgpack;
                    TestData.Run run = runs.get(f);
                    Prediction p = c.predict(ids.get(f), run.inputs.get("obs"), run.inputs.get("state"),
                            run.inputs.get("mask"));
                    for (String name : p.names()) {
                        String ref = name.equals("actions") ? "action" : name;
                        if (!run.outputs.get(ref).equals(p.get(name))) {
                            throw new AssertionError(f + " " + name + " answered wrong in thread " + thread);
                        }
                    }
                    n++;
                }
                return n;
            }));
        }
        go.countDown();
        int total = 0;
        for (Future<Integer> j : jobs) {
            total += j.get();
        }
        pool.shutdown();
        assertEquals(320, total);

        // 200 requests in flight at once on one connection
        TestData.Run run = runs.get("dqn_cnn_img_discrete");
        List<CompletableFuture<Prediction>> futures = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            futures.add(msgpack.predictAsync(ids.get("dqn_cnn_img_discrete"), run.inputs.get("obs"), null, null));
        }
        for (CompletableFuture<Prediction> f : futures) {
            assertEquals(run.outputs.get("action"), f.get().action());
        }
    }

    @Test
    void tokenShutdownAndClose() throws IOException {
        String secret = "s3cret-from-the-environment";
        try (LocalDaemon guarded = LocalDaemon.start(java.util.List.of(TestData.PYTHON, "-m", "sbexportd.cli", "serve",
                "--tcp", "127.0.0.1:0"), Map.of("SBEXPORTD_TOKEN", secret), java.time.Duration.ofSeconds(60))) {
            assertEquals(secret, guarded.connectionFile().token());
            try (SbExportClient c = guarded.connect()) {
                SbExportException e = assertThrows(SbExportException.class, () -> c.initialize("wrong-token-0123456789"));
                assertEquals(SbExportException.UNAUTHORIZED, e.code());
                assertEquals("unauthorized", e.kind());
            }
            // found by itself: the connection file of the daemon at this host and port
            try (SbExportClient c = SbExportClient.connect(guarded.host(), guarded.port())) {
                c.initialize();
                assertEquals(Boolean.TRUE, ((Map<?, ?>) c.status().get("security")).get("auth"));
            }
            try (SbExportClient c = SbExportClient.connect(new SbExportClient.Options()
                    .connectionFile(guarded.connectionFile().path()))) {
                c.initialize();
                assertNotNull(c.status().get("pid"));
            }
            try (SbExportClient c = guarded.connect()) {
                c.initialize(secret);
                assertNotNull(c.status().get("pid"));
                c.shutdown();
                SbExportException e = assertThrows(SbExportException.class, c::status);
                assertEquals(SbExportException.INVALID_REQUEST, e.code());
                assertEquals("shutting_down", e.kind());
                c.exit();
                // the daemon closes this connection: later calls fail with an IOException
                long deadline = System.currentTimeMillis() + 5000;
                while (c.isOpen() && System.currentTimeMillis() < deadline) {
                    Thread.onSpinWait();
                }
                assertFalse(c.isOpen());
                IOException gone = assertThrows(IOException.class, c::status);
                assertFalse(gone instanceof SbExportException);
            }
        }
        SbExportClient c = daemon.connect();
        c.initialize(null);
        c.close();
        assertThrows(IOException.class, c::status);
    }

    /** A target that fails is reported in ExportResult.failed(); the others are written. */
    @Test
    void aFailedTargetIsReportedAndTheOthersKept(@TempDir Path tmp) throws IOException {
        Map<String, String> env = Map.of("PYTHONPATH", TestData.ROOT.resolve("tests/fakes") + java.io.File.pathSeparator
                + TestData.ROOT, "SBEXPORTD_TEST_FAULTS", "portable-parity");
        try (LocalDaemon faulty = LocalDaemon.start(java.util.List.of(TestData.PYTHON, "-m", "sbexportd.cli", "serve",
                "--tcp", "127.0.0.1:0"), env, java.time.Duration.ofSeconds(60));
             SbExportClient c = faulty.connect()) {
            c.initialize();
            String id = (String) c.open(model("ppo2_mlp_vec_box").toString()).get("modelId");
            ExportResult r = c.export(id, Map.of("to", java.util.List.of("params", "portable"), "out", tmp.toString()),
                    null);
            assertFalse(r.complete());
            assertEquals("params", r.results().get(0).get("target"));
            assertNull(r.result("portable"));
            assertEquals(1, r.failed().size());
            assertEquals("portable", r.failed().get(0).target());
            assertEquals(SbExportException.PARITY_FAILED, r.failed().get(0).error().code());
            assertEquals("parity_failed", r.failed().get(0).error().kind());
            assertTrue(Files.isDirectory(tmp.resolve("params")));
            assertFalse(Files.exists(tmp.resolve("portable")));
            SbExportException e = assertThrows(SbExportException.class, () -> c.export(id, Map.of("to", "portable",
                    "out", tmp.resolve("b").toString()), null));
            assertEquals(SbExportException.PARITY_FAILED, e.code());
        }
    }

    /** A request that outlives the timeout is cancelled; the connection goes on. */
    @Test
    void timeoutCancelsAndTheConnectionGoesOn(@TempDir Path tmp) throws Exception {
        try (SbExportClient c = daemon.connect(new SbExportClient.Options().requestTimeout(java.time.Duration.ofMillis(1)))) {
            c.call("initialize", Map.of("processId", 1, "capabilities", Map.of(), "initializationOptions",
                    Map.of("token", daemon.connectionFile().token())), SbExportClient.Encoding.MSGPACK,
                    java.time.Duration.ofSeconds(30));
            String id = open(msgpack, "sac_lncnn_img_box");
            assertThrows(java.net.SocketTimeoutException.class,
                    () -> c.export(id, "portable,params", tmp.resolve("x").toString(), false));
            Object status = c.call("sbexport/status", Map.of(), SbExportClient.Encoding.MSGPACK,
                    java.time.Duration.ofSeconds(30));
            assertInstanceOf(Map.class, status);
        }
        SbExportClient.Request r = msgpack.callAsync("sbexport/export", Map.of("modelId", open(msgpack,
                "td3_lncnn_img_box"), "to", "portable", "out", tmp.resolve("y").toString()));
        r.cancel(true);
        assertTrue(r.isCancelled());
        assertNotNull(msgpack.status());
    }

    @Test
    void exampleRunsAgainstTheDaemon(@TempDir Path tmp) throws Exception {
        int code = Example.run(new String[] {"--connect", daemon.host() + ":" + daemon.port(), "--out",
            tmp.toString(), TestData.ROOT.resolve("examples/ppo2_CartPole-v1.pkl").toString()});
        assertEquals(0, code);
        assertTrue(Files.exists(tmp.resolve("portable/policy.sbx.msgpack")));
        int code2 = Example.run(new String[] {"--connect", daemon.host() + ":" + daemon.port(), "--out",
            tmp.resolve("cnn").toString(), model("sac_lncnn_img_box").toString()});
        assertEquals(0, code2);
    }

    @Test
    void exampleStartsItsOwnDaemon(@TempDir Path tmp) throws Exception {
        assertEquals(0, Example.run(new String[] {"--python", TestData.PYTHON, "--out", tmp.toString(),
            model("ppo2_mlplnlstm_vec_multidiscrete").toString()}));
    }

    @Test
    void nestedListsDecode() {
        NdArray a = SbExportClient.fromNested(Arrays.asList(Arrays.asList(1L, 2L), Arrays.asList(3L, 4L)));
        assertEquals(NdArray.DType.INT64, a.dtype());
        assertArrayEquals(new int[] {2, 2}, a.shape());
        NdArray b = SbExportClient.fromNested(Arrays.asList(0.5, null));
        assertEquals(NdArray.DType.FLOAT64, b.dtype());
        assertTrue(Double.isNaN(b.getDouble(1)));
        assertThrows(IllegalArgumentException.class,
                () -> SbExportClient.fromNested(Arrays.asList(Arrays.asList(1L), Arrays.asList(1L, 2L))));
        assertInstanceOf(NdArray.class, SbExportClient.arrays(Map.of("dtype", "int64", "shape", List.of(1L),
                "data", List.of(3L))));
        if (SbExportClient.arrays(Map.of("dtype", "x", "shape", "y")) instanceof NdArray) {
            fail("not an array");
        }
    }
}
