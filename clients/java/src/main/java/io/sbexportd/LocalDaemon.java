package io.sbexportd;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An {@code sbexportd serve --tcp 127.0.0.1:0} child process: started, its port read from
 * the line it prints when ready ({@code sbexportd: listening on HOST:PORT (tcp)}), its
 * stderr drained and kept (the last 200 lines), stopped by {@link #close()}.
 */
public final class LocalDaemon implements AutoCloseable {
    static final Pattern LISTENING = Pattern.compile("^sbexportd: listening on (\\S+):(\\d+) \\(tcp\\)\\s*$");
    static final Pattern CONNECTION_FILE = Pattern.compile("^sbexportd: connection file (.+?)\\s*$");

    private final Process process;
    private final String host;
    private final int port;
    private final Deque<String> log;
    private final ConnectionFile connection;

    private LocalDaemon(Process process, String host, int port, Deque<String> log, ConnectionFile connection) {
        this.process = process;
        this.host = host;
        this.port = port;
        this.log = log;
        this.connection = connection;
    }

    /** {@code python -m sbexportd.cli serve --tcp 127.0.0.1:0 [extraArgs]}. */
    public static LocalDaemon start(String python, String... extraArgs) throws IOException {
        List<String> cmd = new ArrayList<>(Arrays.asList(python, "-m", "sbexportd.cli", "serve", "--tcp",
                "127.0.0.1:0"));
        cmd.addAll(Arrays.asList(extraArgs));
        return start(cmd, Duration.ofSeconds(60));
    }

    /** Any command that runs {@code sbexportd serve --tcp ...}. */
    public static LocalDaemon start(List<String> command, Duration timeout) throws IOException {
        return start(command, Collections.emptyMap(), timeout);
    }

    /** Any command that runs {@code sbexportd serve --tcp ...}, with more environment variables. */
    public static LocalDaemon start(List<String> command, Map<String, String> env, Duration timeout)
            throws IOException {
        ProcessBuilder pb = new ProcessBuilder(command).redirectOutput(ProcessBuilder.Redirect.DISCARD);
        pb.environment().putAll(env);
        Process p = pb.start();
        Deque<String> log = new ArrayDeque<>();
        CompletableFuture<String[]> ready = new CompletableFuture<>();
        String[] connectionFile = new String[1];
        Thread drain = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getErrorStream(),
                    StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    synchronized (log) {
                        log.addLast(line);
                        if (log.size() > 200) {
                            log.removeFirst();
                        }
                    }
                    Matcher cf = CONNECTION_FILE.matcher(line);
                    if (cf.matches()) {
                        connectionFile[0] = cf.group(1);
                    }
                    Matcher m = LISTENING.matcher(line);
                    if (!ready.isDone() && m.matches()) {
                        ready.complete(new String[] {m.group(1), m.group(2)});
                    }
                }
            } catch (IOException ignored) {
                // the process is gone
            }
            ready.completeExceptionally(new IOException("the daemon exited before listening"));
        }, "sbexportd-daemon-stderr");
        drain.setDaemon(true);
        drain.start();
        try {
            String[] hp = ready.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            // the daemon writes its connection file before it says it listens
            ConnectionFile cf = connectionFile[0] == null ? null : ConnectionFile.read(Paths.get(connectionFile[0]));
            return new LocalDaemon(p, hp[0], Integer.parseInt(hp[1]), log, cf);
        } catch (ExecutionException | TimeoutException | InterruptedException e) {
            p.destroyForcibly();
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            String why = e instanceof TimeoutException ? "did not listen within " + timeout.toSeconds() + " s"
                    : e.getCause() != null ? e.getCause().getMessage() : e.toString();
            String tail;
            synchronized (log) {
                tail = String.join("\n", log);
            }
            throw new IOException(String.join(" ", command) + ": " + why + (tail.isEmpty() ? "" : "; stderr:\n" + tail));
        }
    }

    public String host() {
        return host;
    }

    public int port() {
        return port;
    }

    public Process process() {
        return process;
    }

    /** The daemon's recent stderr lines. */
    public List<String> log() {
        synchronized (log) {
            return new ArrayList<>(log);
        }
    }

    /** The daemon's connection file (its token), or null if it wrote none. */
    public ConnectionFile connectionFile() {
        return connection;
    }

    /** A connection to this daemon, with its token (from its connection file) for initialize. */
    public SbExportClient connect() throws IOException {
        return connect(new SbExportClient.Options());
    }

    public SbExportClient connect(SbExportClient.Options options) throws IOException {
        SbExportClient.Options o = options.copy();
        if (o.token == null && o.connectionFile == null && connection != null) {
            o.connectionFile(connection.path());
        }
        return SbExportClient.connect(host, port, o);
    }

    /** SIGTERM, then a kill after 10 s. */
    @Override
    public void close() {
        process.destroy();
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}
