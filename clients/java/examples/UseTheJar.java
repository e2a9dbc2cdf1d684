package example;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

import io.sbexportd.LocalDaemon;
import io.sbexportd.NdArray;
import io.sbexportd.PortablePolicy;
import io.sbexportd.Prediction;
import io.sbexportd.SbExportClient;

/**
 * Another project's use of the client jar, through its public API only (this class is
 * not in package io.sbexportd): start a daemon, open MODEL, export it to portable in OUT,
 * run the export in process with PortablePolicy and compare it with the daemon's NumPy
 * reference on a seeded batch (the parity rule: discrete actions equal, everything else
 * within 1e-5, scaled by max(1, |reference|)).
 *
 * <pre>
 * javac -cp sbexportd-client-VERSION.jar -d classes UseTheJar.java
 * java -cp sbexportd-client-VERSION.jar:gson.jar:msgpack-core.jar:classes example.UseTheJar PYTHON MODEL OUT
 * </pre>
 *
 * Exit status 0 when every output agrees, 1 when one does not.
 */
public final class UseTheJar {
    private UseTheJar() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: UseTheJar PYTHON MODEL OUT");
            System.exit(2);
        }
        Package pkg = PortablePolicy.class.getPackage();
        System.out.println("sbexportd-client " + pkg.getImplementationVersion() + " from "
                + PortablePolicy.class.getProtectionDomain().getCodeSource().getLocation());
        Path model = Paths.get(args[1]).toAbsolutePath();
        Path out = Paths.get(args[2]).toAbsolutePath();
        int failures = 0;
        try (LocalDaemon daemon = LocalDaemon.start(args[0]); SbExportClient client = daemon.connect()) {
            client.initialize(null);
            String id = client.openModel(model.toString());
            client.export(id, "portable", out.toString(), true);
            PortablePolicy policy = PortablePolicy.load(out.resolve("portable").resolve("policy.sbx.msgpack"));
            System.out.println("loaded " + policy);

            int batch = 8;
            int[] shape = policy.observationShape();
            int[] batchShape = new int[shape.length + 1];
            batchShape[0] = batch;
            System.arraycopy(shape, 0, batchShape, 1, shape.length);
            float[] obs = new float[batch * policy.observationSize()];
            Random random = new Random(7);
            for (int i = 0; i < obs.length; i++) {
                obs[i] = (float) random.nextGaussian() * 0.5f;
            }
            Map<String, Object> params = new LinkedHashMap<>();
            params.put("obs", NdArray.of(obs, batchShape));
            params.put("backend", "numpy");
            Prediction reference = client.predict(id, params);
            Prediction local = policy.predict(obs, batch);

            boolean discrete = reference.action().dtype() == NdArray.DType.INT64;
            for (String name : reference.names()) {
                String localName = name.equals("actions") ? "action" : name;
                NdArray want = reference.get(name), got = local.get(localName);
                if (got == null) {
                    System.out.println(name + ": missing from PortablePolicy's outputs " + local.names());
                    failures++;
                    continue;
                }
                boolean isAction = localName.equals("action");
                double worst = 0;
                for (int i = 0; i < want.size(); i++) {
                    double d = Math.abs(got.getDouble(i) - want.getDouble(i));
                    worst = Math.max(worst, isAction ? d : d / Math.max(1, Math.abs(want.getDouble(i))));
                }
                boolean ok = want.size() == got.size() && (isAction && discrete ? worst == 0 : worst <= 1e-5);
                System.out.println(String.format("%-8s %s  worst error %.2e  %s", localName,
                        Arrays.toString(got.shape()), worst, ok ? "ok" : "DIFFERS"));
                if (!ok) {
                    failures++;
                }
            }
            System.out.println("actions " + local.action());
            client.close(id);
        }
        System.out.println(failures == 0 ? "UseTheJar: the portable export agrees with the daemon"
                : "UseTheJar: " + failures + " outputs differ");
        System.exit(failures == 0 ? 0 : 1);
    }
}
