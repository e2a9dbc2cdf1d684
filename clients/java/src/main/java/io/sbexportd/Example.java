package io.sbexportd;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * The whole round trip from Java: load an SB2 agent through the daemon, predict, export
 * it to the portable format, run the export in process with {@link PortablePolicy}, and
 * print both answers side by side.
 *
 * <pre>
 * java -cp sbexportd-client-0.1.0.jar:gson.jar:msgpack-core.jar io.sbexportd.Example \
 *     [--python .venv/bin/python | --connect HOST:PORT] [--out DIR] [--batch N] MODEL
 * </pre>
 *
 * With {@code --python} (the default: {@code python3}) it starts its own daemon
 * ({@code python -m sbexportd.cli serve --tcp 127.0.0.1:0}) and stops it at the end.
 * With {@code --connect} the token comes from that daemon's connection file (or
 * {@code $SBEXPORTD_TOKEN}): never from the command line, where {@code ps} shows it.
 * Exit status 0 when the two answers agree (the parity rule), 1 when they do not.
 */
public final class Example {
    public static void main(String[] args) throws Exception {
        System.exit(run(args));
    }

    @SuppressWarnings("unchecked")
    public static int run(String[] args) throws Exception {
        String python = "python3", connect = null, model = null;
        Path out = null;
        int batch = 4;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--python": python = args[++i]; break;
                case "--connect": connect = args[++i]; break;
                case "--out": out = Paths.get(args[++i]); break;
                case "--batch": batch = Integer.parseInt(args[++i]); break;
                default: model = args[i];
            }
        }
        if (model == null) {
            System.err.println("usage: Example [--python PY | --connect HOST:PORT] [--out DIR] "
                    + "[--batch N] MODEL");
            return 2;
        }
        if (out == null) {
            out = Files.createTempDirectory("sbexportd-example-");
        }
        String modelPath = Paths.get(model).toAbsolutePath().toString();

        LocalDaemon daemon = null;
        try {
            SbExportClient client;
            if (connect != null) {
                int colon = connect.lastIndexOf(':');
                client = SbExportClient.connect(connect.substring(0, colon), Integer.parseInt(connect.substring(colon + 1)));
            } else {
                daemon = LocalDaemon.start(python);
                client = daemon.connect();
            }
            try (SbExportClient c = client) {
                c.initialize();
                System.out.printf("daemon   sbexportd %s (protocol %s)%n", c.serverInfo().get("version"),
                        c.serverInfo().get("protocolVersion"));

                // 1. load the agent in the daemon
                Map<String, Object> opened = c.open(modelPath);
                String id = (String) opened.get("modelId");
                Map<String, Object> summary = (Map<String, Object>) opened.get("summary");
                Map<String, Object> input = (Map<String, Object>) summary.get("input");
                System.out.printf("model    %s %s, obs %s %s -> action %s  (%s)%n", summary.get("algorithm"),
                        summary.get("policy"), input.get("dtype"), ((List<Object>) input.get("shape")).subList(1,
                                ((List<Object>) input.get("shape")).size()), summary.get("action_space"), id);

                // 2. seeded observations from the observation space, predicted by the daemon
                NdArray obs = observations(summary, batch, new Random(0));
                System.out.println("obs      " + obs);
                Prediction remote = c.predict(id, obs);
                System.out.println("\ndaemon predict (NumPy reference):");
                remote.outputs().forEach((k, v) -> System.out.printf("  %-9s %s%n", k, v));

                // 3. export to the portable format
                ExportResult exported = c.export(id, "portable", out.toString(), true);
                Map<String, Object> result = exported.result("portable");
                System.out.printf("%nexport   portable -> %s (%s bytes, parity %s)%n", result.get("path"),
                        result.get("bytes"), ((Map<String, Object>) result.get("parity")).get("passed"));

                // 4. the export, run in this JVM
                PortablePolicy policy = PortablePolicy.load(Paths.get((String) result.get("path"))
                        .resolve("policy.sbx.msgpack"));
                Prediction local = policy.predict(obs, null, null);
                System.out.println("\nPortablePolicy (pure Java): " + policy);
                local.outputs().forEach((k, v) -> System.out.printf("  %-9s %s%n", k, v));

                // 5. agreement, by the parity rule
                boolean ok = true;
                System.out.println("\nagreement");
                for (Map.Entry<String, NdArray> e : remote.outputs().entrySet()) {
                    String name = e.getKey().equals("actions") ? "action" : e.getKey();
                    NdArray mine = local.get(name), ref = e.getValue();
                    double err = 0;
                    for (int i = 0; i < ref.size(); i++) {
                        err = Math.max(err, Math.abs(mine.getDouble(i) - ref.getDouble(i))
                                / (name.equals("action") ? 1 : Math.max(1, Math.abs(ref.getDouble(i)))));
                    }
                    boolean exact = name.equals("action") && !ref.dtype().isFloat();
                    boolean pass = java.util.Arrays.equals(mine.shape(), ref.shape()) && (exact ? err == 0 : err <= 1e-5);
                    ok &= pass;
                    System.out.printf("  %-9s %s  %s%n", name, exact ? "equal" : String.format("max err %.2g", err),
                            pass ? "ok" : "MISMATCH");
                }
                c.close(id);
                return ok ? 0 : 1;
            }
        } finally {
            if (daemon != null) {
                daemon.close();
            }
        }
    }

    /** A batch from the observation space: uniform within finite bounds, else standard normal. */
    @SuppressWarnings("unchecked")
    static NdArray observations(Map<String, Object> summary, int n, Random r) {
        Map<String, Object> space = (Map<String, Object>) summary.get("observation_space");
        Map<String, Object> input = (Map<String, Object>) summary.get("input");
        List<Object> ishape = (List<Object>) input.get("shape");
        int[] shape = new int[ishape.size()];
        shape[0] = n;
        for (int i = 1; i < shape.length; i++) {
            shape[i] = ((Number) ishape.get(i)).intValue();
        }
        int row = NdArray.count(shape) / n;
        double[] v = new double[n * row];
        String type = String.valueOf(space.get("type"));
        String dtype = String.valueOf(input.get("dtype"));
        for (int i = 0; i < v.length; i++) {
            int j = i % row;
            switch (type) {
                case "Discrete": v[i] = r.nextInt(((Number) space.get("n")).intValue()); break;
                case "MultiBinary": v[i] = r.nextInt(2); break;
                case "MultiDiscrete":
                    v[i] = r.nextInt(((Number) ((List<Object>) space.get("nvec")).get(j)).intValue());
                    break;
                default: {
                    double lo = bound(space.get("low"), j, dtype.equals("uint8") ? 0 : Double.NEGATIVE_INFINITY);
                    double hi = bound(space.get("high"), j, dtype.equals("uint8") ? 255 : Double.POSITIVE_INFINITY);
                    double x = Double.isFinite(lo) && Double.isFinite(hi) ? lo + (hi - lo) * r.nextDouble()
                            : r.nextGaussian();
                    v[i] = dtype.startsWith("float") ? x : Math.round(x);
                }
            }
        }
        return NdArray.fromNumbers(dtype, shape, v);
    }

    @SuppressWarnings("unchecked")
    private static double bound(Object b, int j, double unknown) {
        if (b instanceof List) {
            b = ((List<Object>) b).get(j);
        }
        if (b instanceof Number) {
            return ((Number) b).doubleValue();
        }
        if ("inf".equals(b)) {
            return Double.POSITIVE_INFINITY;
        }
        if ("-inf".equals(b)) {
            return Double.NEGATIVE_INFINITY;
        }
        return unknown;
    }

    private Example() {
    }
}
