package io.sbexportd.bench;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Random;

import io.sbexportd.LocalDaemon;
import io.sbexportd.NdArray;
import io.sbexportd.PortablePolicy;
import io.sbexportd.SbExportClient;

/**
 * Latency of a predict from Java: the daemon round trip (sbexport/predict over TCP, JSON
 * and msgpack, one connection, one request at a time) and PortablePolicy in process
 * (p50 / p99 over many calls after a warm-up). Run by {@code build.sh bench}, which makes
 * the portable exports first.
 */
public final class Bench {
    static final Path DATA = Paths.get(System.getProperty("sbexportd.testdata", "build/testdata"));

    public static void main(String[] args) throws Exception {
        System.out.printf("%-34s %-16s %6s %10s %10s %10s%n", "what", "case", "batch", "p50 us", "p99 us", "calls/s");
        String python = System.getProperty("sbexportd.python", "python3");
        Path root = Paths.get(System.getProperty("sbexportd.root", "../.."));
        try (LocalDaemon d = LocalDaemon.start(python)) {
            for (SbExportClient.Encoding enc : SbExportClient.Encoding.values()) {
                try (SbExportClient c = d.connect(new SbExportClient.Options().encoding(enc))) {
                    c.initialize(null);
                    for (String cs : new String[] {"ppo2_mlp_vec_discrete", "a2c_cnn_img_discrete"}) {
                        String id = c.openModel(root.resolve("tests/fixtures").resolve(cs).resolve("model.zip")
                                .toAbsolutePath().toString());
                        PortablePolicy p = PortablePolicy.load(DATA.resolve(cs).resolve("portable/policy.sbx.msgpack"));
                        int[] shape = new int[p.observationShape().length + 1];
                        shape[0] = 1;
                        System.arraycopy(p.observationShape(), 0, shape, 1, shape.length - 1);
                        NdArray obs = p.inputDtype().equals("uint8") ? NdArray.ofUint8(new byte[p.observationSize()], shape)
                                : NdArray.of(new float[p.observationSize()], shape);
                        long[] t = time(() -> c.predict(id, obs), 2000);
                        row("daemon predict, " + enc.name().toLowerCase(), cs, 1, t);
                    }
                }
            }
        }
        for (String c : new String[] {"ppo2_mlp_vec_discrete", "sac_mlp_vec_box", "ppo2_mlplstm_vec_box",
                "a2c_cnn_img_discrete", "dqn_lncnn_img_discrete"}) {
            PortablePolicy p = PortablePolicy.load(DATA.resolve(c).resolve("portable/policy.sbx.msgpack"));
            for (int batch : new int[] {1, 64}) {
                double[] obs = new double[batch * p.observationSize()];
                Random r = new Random(0);
                for (int i = 0; i < obs.length; i++) {
                    obs[i] = p.inputDtype().equals("uint8") ? r.nextInt(256) : r.nextGaussian();
                }
                float[] state = p.isRecurrent() ? new float[batch * p.stateSize()] : null;
                float[] mask = p.isRecurrent() ? new float[batch] : null;
                int n = batch == 1 ? 20000 : 2000;
                long[] t = time(() -> p.predict(obs, batch, state, mask), n);
                row("PortablePolicy.predict", c, batch, t);
            }
        }
    }

    interface Call {
        void run() throws Exception;
    }

    static long[] time(Call call, int n) throws Exception {
        for (int i = 0; i < Math.max(2000, n / 2); i++) {
            call.run();
        }
        long[] t = new long[n];
        for (int i = 0; i < n; i++) {
            long s = System.nanoTime();
            call.run();
            t[i] = System.nanoTime() - s;
        }
        Arrays.sort(t);
        return t;
    }

    static void row(String what, String c, int batch, long[] sorted) {
        double p50 = sorted[sorted.length / 2] / 1e3, p99 = sorted[(int) (sorted.length * 0.99)] / 1e3;
        double mean = Arrays.stream(sorted).average().orElse(0) / 1e9;
        System.out.printf("%-34s %-16s %6d %10.1f %10.1f %10.0f%n", what, c.length() > 16 ? c.substring(0, 16) : c,
                batch, p50, p99, 1 / mean);
    }

    private Bench() {
    }
}
