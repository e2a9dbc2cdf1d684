package io.sbexportd;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A daemon's connection file (protocol.md, "Authentication"): the JSON that
 * {@code sbexportd serve --tcp/--ws} writes, mode 0600, with its transport, host, port
 * and token, so that clients need no token on their command line. It is
 * {@code $SBEXPORTD_RUNTIME_DIR/sbexportd-<pid>.json}, else
 * {@code $XDG_RUNTIME_DIR/sbexportd/...}, else {@code ~/.local/share/sbexportd/runtime/...},
 * or where {@code $SBEXPORTD_CONNECTION_FILE} (the daemon's {@code --connection-file}) says.
 */
public final class ConnectionFile {
    private static final Gson GSON = new Gson();
    private static final List<String> LOOPBACK = Arrays.asList("127.0.0.1", "localhost", "::1");

    private final Path path;
    private final String transport;
    private final String host;
    private final int port;
    private final String token;
    private final long pid;

    private ConnectionFile(Path path, String transport, String host, int port, String token, long pid) {
        this.path = path;
        this.transport = transport;
        this.host = host;
        this.port = port;
        this.token = token;
        this.pid = pid;
    }

    /** Where daemons write their connection files on this machine. */
    public static Path runtimeDir() {
        return runtimeDir(System.getenv());
    }

    static Path runtimeDir(Map<String, String> env) {
        String own = env.get("SBEXPORTD_RUNTIME_DIR");
        if (own != null && !own.isEmpty()) {
            return Paths.get(own);
        }
        String xdg = env.get("XDG_RUNTIME_DIR");
        if (xdg != null && !xdg.isEmpty()) {
            return Paths.get(xdg, "sbexportd");
        }
        return Paths.get(System.getProperty("user.home"), ".local", "share", "sbexportd", "runtime");
    }

    /** Read one connection file. */
    public static ConnectionFile read(Path path) throws IOException {
        try {
            JsonObject o = GSON.fromJson(new String(Files.readAllBytes(path), StandardCharsets.UTF_8), JsonObject.class);
            if (o == null || !o.has("port") || !o.has("host")) {
                throw new IOException(path + ": not an sbexportd connection file (no host and port)");
            }
            String token = o.has("token") && !o.get("token").isJsonNull() ? o.get("token").getAsString() : null;
            String transport = o.has("transport") ? o.get("transport").getAsString() : "tcp";
            long pid = o.has("pid") ? o.get("pid").getAsLong() : -1;
            return new ConnectionFile(path, transport, o.get("host").getAsString(), o.get("port").getAsInt(), token,
                    pid);
        } catch (JsonParseException | IllegalStateException | UnsupportedOperationException | NumberFormatException e) {
            throw new IOException(path + ": not an sbexportd connection file: " + e.getMessage(), e);
        }
    }

    /**
     * The connection file of the running TCP daemon at {@code host:port} (any, the newest,
     * when {@code port} is null): {@code $SBEXPORTD_CONNECTION_FILE} if set, else the runtime
     * folder's files whose process is alive.
     */
    public static Optional<ConnectionFile> find(String host, Integer port) throws IOException {
        String explicit = System.getenv("SBEXPORTD_CONNECTION_FILE");
        if (explicit != null && !explicit.isEmpty()) {
            ConnectionFile f = read(Paths.get(explicit));
            return f.matches(host, port) ? Optional.of(f) : Optional.empty();
        }
        Path dir = runtimeDir();
        if (!Files.isDirectory(dir)) {
            return Optional.empty();
        }
        List<ConnectionFile> found = new ArrayList<>();
        try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "sbexportd-*.json")) {
            for (Path p : files) {
                ConnectionFile f;
                try {
                    f = read(p);
                } catch (IOException e) {
                    continue; // being written, or not ours
                }
                if ("tcp".equals(f.transport) && f.alive() && f.matches(host, port)) {
                    found.add(f);
                }
            }
        }
        found.sort((a, b) -> Long.compare(modified(b.path), modified(a.path)));
        return found.isEmpty() ? Optional.empty() : Optional.of(found.get(0));
    }

    private static long modified(Path p) {
        try {
            return Files.getLastModifiedTime(p).toMillis();
        } catch (IOException e) {
            return 0;
        }
    }

    private boolean matches(String h, Integer p) {
        if (p == null) {
            return true;
        }
        return p == port && (h == null || h.equals(host) || (LOOPBACK.contains(h) && LOOPBACK.contains(host)));
    }

    private boolean alive() {
        return pid <= 0 || ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    }

    public Path path() {
        return path;
    }

    public String transport() {
        return transport;
    }

    public String host() {
        return host;
    }

    public int port() {
        return port;
    }

    /** The token clients present in initialize, or null (a daemon started with --no-auth). */
    public String token() {
        return token;
    }

    public long pid() {
        return pid;
    }
}
