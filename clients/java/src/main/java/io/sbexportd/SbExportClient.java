package io.sbexportd;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.math.BigInteger;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BiConsumer;
import java.util.function.Consumer;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;

/**
 * A TCP client of the sbexportd daemon ({@code sbexportd serve --tcp}), as protocol.md
 * specifies it: JSON-RPC 2.0 in LSP base-protocol frames, bodies in JSON or msgpack.
 *
 * <p>Thread-safe: any number of threads may issue requests at once. Each request gets an
 * id from an {@link AtomicLong}; one reader thread reads the answers and completes each
 * request's future by id, so requests are in flight concurrently and answers may come in
 * any order. Synchronous methods wait up to the request timeout (on a timeout the request
 * is cancelled with {@code $/cancelRequest}); {@link #callAsync} returns a future whose
 * {@code cancel} does the same.
 *
 * <p>Errors the daemon answers are thrown as {@link SbExportException} (code, kind,
 * data); a broken connection as an {@link IOException}.
 *
 * <pre>{@code
 * try (SbExportClient c = SbExportClient.connect("127.0.0.1", 8765)) {
 *     c.initialize();
 *     String id = c.openModel("agent.zip");
 *     Prediction p = c.predict(id, NdArray.of(new float[] {0.1f, 0.2f, 0.3f, 0.4f}, 1, 4));
 * }
 * }</pre>
 */
public final class SbExportClient implements AutoCloseable {
    /** This client speaks protocol 1.x. */
    public static final int PROTOCOL_MAJOR = 1;
    public static final String VERSION = "0.1.0";

    /** Body encoding of the requests (answers come back in the same one). */
    public enum Encoding {
        /** UTF-8 JSON; arrays are sent and asked back as base64 binary (exact). */
        JSON("application/vscode-jsonrpc; charset=utf-8"),
        /** msgpack; arrays travel as raw little-endian bytes. */
        MSGPACK("application/msgpack");

        final String contentType;

        Encoding(String contentType) {
            this.contentType = contentType;
        }
    }

    /** Connection options (a mutable builder; copied at connect). */
    public static final class Options {
        Duration connectTimeout = Duration.ofSeconds(10);
        Duration requestTimeout = Duration.ofSeconds(120);
        Encoding encoding = Encoding.MSGPACK;
        int maxMessageBytes = 256 << 20;
        String token;
        Path connectionFile;

        /**
         * The daemon's token. By default the client finds it: in {@link #connectionFile},
         * else in the connection file of the daemon at the host and port connected to
         * ({@link ConnectionFile#find}), else in {@code $SBEXPORTD_TOKEN}.
         */
        public Options token(String t) {
            token = t;
            return this;
        }

        /** Read host, port and token from this connection file (the daemon's --connection-file). */
        public Options connectionFile(Path p) {
            connectionFile = p;
            return this;
        }

        public Options connectTimeout(Duration d) {
            connectTimeout = d;
            return this;
        }

        /** How long synchronous calls wait for their answer (default 120 s). */
        public Options requestTimeout(Duration d) {
            requestTimeout = d;
            return this;
        }

        public Options encoding(Encoding e) {
            encoding = e;
            return this;
        }

        /** The largest frame sent or accepted (the daemon's default limit: 256 MiB). */
        public Options maxMessageBytes(int n) {
            maxMessageBytes = n;
            return this;
        }

        Options copy() {
            return new Options().connectTimeout(connectTimeout).requestTimeout(requestTimeout).encoding(encoding)
                    .maxMessageBytes(maxMessageBytes).token(token).connectionFile(connectionFile);
        }
    }

    /** A request in flight: its id, and {@code cancel} sends {@code $/cancelRequest}. */
    public final class Request extends CompletableFuture<Object> {
        private final long id;
        private final String method;

        Request(long id, String method) {
            this.id = id;
            this.method = method;
        }

        public long id() {
            return id;
        }

        public String method() {
            return method;
        }

        @Override
        public boolean cancel(boolean mayInterruptIfRunning) {
            boolean done = super.cancel(mayInterruptIfRunning);
            if (done) {
                pending.remove(id);
                sendCancel(id);
            }
            return done;
        }
    }

    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().serializeNulls().create();

    private final Options options;
    private final Socket socket;
    private final InputStream in;
    private final OutputStream out;
    private final Object writeLock = new Object();
    private final AtomicLong ids = new AtomicLong();
    private final ConcurrentHashMap<Long, Request> pending = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<String, Consumer<Map<String, Object>>> progress = new ConcurrentHashMap<>();
    private final Thread reader;
    private volatile BiConsumer<String, Object> notifications = (m, p) -> { };
    private volatile IOException broken;
    private volatile boolean closed;
    private volatile boolean initialized;
    private volatile Map<String, Object> serverInfo = Collections.emptyMap();
    private final String token;

    private SbExportClient(Socket socket, Options options, String token) throws IOException {
        this.options = options;
        this.token = token;
        this.socket = socket;
        this.in = new BufferedInputStream(socket.getInputStream(), 1 << 16);
        this.out = new BufferedOutputStream(socket.getOutputStream(), 1 << 16);
        this.reader = new Thread(this::readLoop, "sbexportd-client-reader " + socket.getRemoteSocketAddress());
        this.reader.setDaemon(true);
        this.reader.start();
    }

    /**
     * Connect to the running daemon this user started last (the newest live TCP connection
     * file, see {@link ConnectionFile}), or to the one {@link Options#connectionFile} names.
     */
    public static SbExportClient connect(Options options) throws IOException {
        ConnectionFile f;
        if (options.connectionFile != null) {
            f = ConnectionFile.read(options.connectionFile);
        } else {
            f = ConnectionFile.find(null, null).orElseThrow(() -> new IOException(
                    "no running sbexportd daemon found: no live connection file in " + ConnectionFile.runtimeDir()
                            + " (start one with `sbexportd serve --tcp 127.0.0.1:0`, or give its host and port)"));
        }
        return connect(f.host(), f.port(), options.copy().connectionFile(f.path()));
    }

    public static SbExportClient connect() throws IOException {
        return connect(new Options());
    }

    public static SbExportClient connect(String host, int port) throws IOException {
        return connect(host, port, new Options());
    }

    public static SbExportClient connect(String host, int port, Options options) throws IOException {
        Options o = options.copy();
        String token = o.token;
        if (token == null && o.connectionFile != null) {
            token = ConnectionFile.read(o.connectionFile).token();
        } else if (token == null) {
            Optional<ConnectionFile> found = ConnectionFile.find(host, port);
            token = found.isPresent() ? found.get().token() : System.getenv("SBEXPORTD_TOKEN");
        }
        Socket s = new Socket();
        try {
            s.setTcpNoDelay(true);
            s.connect(new InetSocketAddress(host, port), (int) o.connectTimeout.toMillis());
        } catch (IOException e) {
            s.close();
            throw new IOException("cannot connect to sbexportd at " + host + ":" + port + ": " + e.getMessage(), e);
        }
        return new SbExportClient(s, o, token);
    }

    /** Called on the reader thread for every notification (method, params) the daemon sends. */
    public void onNotification(BiConsumer<String, Object> listener) {
        notifications = listener == null ? (m, p) -> { } : listener;
    }

    public Encoding encoding() {
        return options.encoding;
    }

    /** The {@code experimental.sbexportd} capabilities of {@link #initialize} (version, targets, ...). */
    public Map<String, Object> serverInfo() {
        return serverInfo;
    }

    // ---------------------------------------------------------------- the protocol's methods

    /** {@link #initialize(String)} with the token found at connect (see {@link Options#token}). */
    public Map<String, Object> initialize() throws IOException {
        return initialize(null);
    }

    /**
     * {@code initialize} with {@code initializationOptions.token} ({@code token}, or when null
     * the one found at connect, if any), then the {@code initialized} notification. Returns
     * the result; throws if the daemon speaks another major protocol version. A wrong token
     * is answered {@link SbExportException#UNAUTHORIZED} and the daemon closes the connection.
     */
    @SuppressWarnings("unchecked")
    public Map<String, Object> initialize(String token) throws IOException {
        if (token == null) {
            token = this.token;
        }
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("processId", ProcessHandle.current().pid());
        p.put("clientInfo", map("name", "sbexportd-java", "version", VERSION));
        p.put("capabilities", new LinkedHashMap<>());
        if (token != null) {
            p.put("initializationOptions", map("token", token));
        }
        Map<String, Object> result = asMap(call("initialize", p), "initialize");
        Object caps = result.get("capabilities");
        Map<String, Object> info = Collections.emptyMap();
        if (caps instanceof Map && ((Map<String, Object>) caps).get("experimental") instanceof Map) {
            Object s = ((Map<String, Object>) ((Map<String, Object>) caps).get("experimental")).get("sbexportd");
            if (s instanceof Map) {
                info = Collections.unmodifiableMap((Map<String, Object>) s);
            }
        }
        Object version = info.get("protocolVersion");
        if (version == null || !String.valueOf(version).startsWith(PROTOCOL_MAJOR + ".")) {
            throw new IOException("the daemon speaks protocol " + version + "; this client speaks "
                    + PROTOCOL_MAJOR + ".x");
        }
        serverInfo = info;
        initialized = true;
        notify("initialized", new LinkedHashMap<>());
        return result;
    }

    /** {@code sbexport/open} of a file with the default options. */
    public Map<String, Object> open(String path) throws IOException {
        return open(path, null);
    }

    /**
     * {@code sbexport/open}. {@code options}: vecnormalize, algo, activation, frameStack, backends,
     * workDoneToken (may be null). The result holds {@code modelId}, {@code cached},
     * {@code seconds}, {@code summary}.
     */
    public Map<String, Object> open(String path, Map<String, Object> options) throws IOException {
        Map<String, Object> p = new LinkedHashMap<>();
        if (options != null) {
            p.putAll(options);
        }
        p.put("path", path);
        return asMap(call("sbexport/open", p), "sbexport/open");
    }

    /** {@code sbexport/open}, returning only the modelId. */
    public String openModel(String path) throws IOException {
        return (String) open(path).get("modelId");
    }

    /** {@code sbexport/inspect}: what {@code sbexportd inspect --json} prints. */
    public Map<String, Object> inspect(String modelId) throws IOException {
        return asMap(call("sbexport/inspect", map("modelId", modelId)), "sbexport/inspect");
    }

    /**
     * {@code sbexport/parameters}: statistics of the stored parameters ({@code names} null
     * = all); with {@code values}, each parameter's {@code value} as an {@link NdArray}.
     */
    public Map<String, Object> parameters(String modelId, List<String> names, boolean values) throws IOException {
        Map<String, Object> p = map("modelId", modelId, "values", values);
        if (names != null) {
            p.put("names", names);
        }
        if (options.encoding == Encoding.JSON) {
            p.put("encoding", "base64");
        }
        return asMap(call("sbexport/parameters", p), "sbexport/parameters");
    }

    /** {@code sbexport/predict}: a batch of observations, SB2's deterministic action and more. */
    public Prediction predict(String modelId, NdArray obs) throws IOException {
        return predict(modelId, obs, null, null);
    }

    /** Recurrent policies: state (N, 2*n_lstm) and mask (N,), null for zeros. */
    public Prediction predict(String modelId, NdArray obs, NdArray state, NdArray mask) throws IOException {
        return predict(modelId, predictParams(obs, state, mask));
    }

    /**
     * {@code sbexport/predict} with any params of protocol.md (obs, state, mask,
     * deterministic, seed, outputs, backend, encoding; obs may be a goal dict Map for HER).
     */
    public Prediction predict(String modelId, Map<String, Object> params) throws IOException {
        return prediction(call("sbexport/predict", predictPayload(modelId, params)));
    }

    /** {@link #predict(String, NdArray, NdArray, NdArray)} without waiting. */
    public CompletableFuture<Prediction> predictAsync(String modelId, NdArray obs, NdArray state, NdArray mask) {
        return callAsync("sbexport/predict", predictPayload(modelId, predictParams(obs, state, mask)))
                .thenApply(SbExportClient::predictionUnchecked);
    }

    private static Map<String, Object> predictParams(NdArray obs, NdArray state, NdArray mask) {
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("obs", obs);
        if (state != null) {
            p.put("state", state);
        }
        if (mask != null) {
            p.put("mask", mask);
        }
        return p;
    }

    private Map<String, Object> predictPayload(String modelId, Map<String, Object> params) {
        Map<String, Object> p = new LinkedHashMap<>(params);
        p.put("modelId", modelId);
        if (options.encoding == Encoding.JSON && !p.containsKey("encoding")) {
            p.put("encoding", "base64");   // exact floats, and dtypes kept
        }
        return p;
    }

    @SuppressWarnings("unchecked")
    private static Prediction prediction(Object result) throws IOException {
        Map<String, Object> r = asMap(result, "sbexport/predict");
        Map<String, Object> outs = asMap(r.get("outputs"), "sbexport/predict outputs");
        Map<String, NdArray> arrays = new LinkedHashMap<>();
        for (Map.Entry<String, Object> e : outs.entrySet()) {
            Object v = e.getValue();
            arrays.put(e.getKey(), v instanceof NdArray ? (NdArray) v : fromNested(v));
        }
        return new Prediction(arrays);
    }

    private static Prediction predictionUnchecked(Object result) {
        try {
            return prediction(result);
        } catch (IOException e) {
            throw new java.util.concurrent.CompletionException(e);
        }
    }

    /** {@code sbexport/export} of a model to targets ("portable", "onnx,tflite", "all") under {@code out}. */
    public ExportResult export(String modelId, String to, String out, boolean force) throws IOException {
        return export(modelId, map("to", to, "out", out, "force", force), null);
    }

    /**
     * {@code sbexport/export} with any params (to, out, force, verify, allOrNothing).
     * {@code progress} (may be null) receives each {@code $/progress} value on the reader
     * thread. Targets that failed are in {@link ExportResult#failed()}; when none could be
     * made, the request throws.
     */
    public ExportResult export(String modelId, Map<String, Object> params,
                               Consumer<Map<String, Object>> progressListener) throws IOException {
        Map<String, Object> p = new LinkedHashMap<>(params);
        p.put("modelId", modelId);
        String token = null;
        if (progressListener != null) {
            token = "java-export-" + ids.incrementAndGet();
            p.put("workDoneToken", token);
            progress.put(token, progressListener);
        }
        try {
            return new ExportResult(asMap(call("sbexport/export", p), "sbexport/export"));
        } finally {
            if (token != null) {
                progress.remove(token);
            }
        }
    }

    /** {@code sbexport/close}: releases a model this connection opened. */
    public Map<String, Object> close(String modelId) throws IOException {
        return asMap(call("sbexport/close", map("modelId", modelId)), "sbexport/close");
    }

    /** {@code sbexport/status}: models, caches, counters of the daemon. */
    public Map<String, Object> status() throws IOException {
        return asMap(call("sbexport/status", new LinkedHashMap<>()), "sbexport/status");
    }

    /** {@code sbexport/targets}: the export targets, as (name, summary) maps. */
    @SuppressWarnings("unchecked")
    public List<Map<String, Object>> targets() throws IOException {
        Object t = asMap(call("sbexport/targets", new LinkedHashMap<>()), "sbexport/targets").get("targets");
        return (List<Map<String, Object>>) t;
    }

    /** {@code shutdown}: afterwards the connection refuses requests. */
    public void shutdown() throws IOException {
        call("shutdown", null);
    }

    /** The {@code exit} notification: the daemon closes this connection (on TCP). */
    public void exit() throws IOException {
        notify("exit", null);
    }

    // ---------------------------------------------------------------- generic calls

    /** A request in this client's encoding, waiting up to the request timeout. */
    public Object call(String method, Object params) throws IOException {
        return call(method, params, options.encoding, options.requestTimeout);
    }

    /** A request in the given encoding (connections may mix encodings), waiting up to {@code timeout}. */
    public Object call(String method, Object params, Encoding encoding, Duration timeout) throws IOException {
        Request r = callAsync(method, params, encoding);
        try {
            return r.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            r.cancel(false);
            throw new SocketTimeoutException(method + ": no answer within " + timeout.toMillis() + " ms (cancelled)");
        } catch (InterruptedException e) {
            r.cancel(false);
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException(method + ": interrupted");
        } catch (CancellationException e) {
            throw new java.io.InterruptedIOException(method + ": cancelled");
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof SbExportException) {
                SbExportException s = (SbExportException) c;
                // a fresh exception, so that the stack trace shows the caller
                SbExportException copy = new SbExportException(method, s.code(), s.serverMessage(), s.data());
                copy.initCause(s);
                throw copy;
            }
            if (c instanceof IOException) {
                throw new IOException(c.getMessage(), c);
            }
            throw new IOException(method + ": " + c, c);
        }
    }

    public Request callAsync(String method, Object params) {
        return callAsync(method, params, options.encoding);
    }

    /** Sends a request; the future completes with the result (arrays as NdArray) or the error. */
    public Request callAsync(String method, Object params, Encoding encoding) {
        long id = ids.incrementAndGet();
        Request r = new Request(id, method);
        IOException b = broken;
        if (b != null || closed) {
            r.completeExceptionally(b != null ? b : new IOException("client is closed"));
            return r;
        }
        Map<String, Object> msg = new LinkedHashMap<>();
        msg.put("jsonrpc", "2.0");
        msg.put("id", id);
        msg.put("method", method);
        if (params != null) {
            msg.put("params", params);
        }
        pending.put(id, r);
        try {
            send(msg, encoding);
        } catch (IOException | RuntimeException e) {
            pending.remove(id);
            r.completeExceptionally(e instanceof IOException ? e : new IOException(method + ": " + e.getMessage(), e));
        }
        if (broken != null && pending.remove(id) != null) {   // the reader died meanwhile
            r.completeExceptionally(broken);
        }
        return r;
    }

    /** Sends a notification (no answer). */
    public void notify(String method, Object params) throws IOException {
        Map<String, Object> msg = new LinkedHashMap<>();
        msg.put("jsonrpc", "2.0");
        msg.put("method", method);
        if (params != null) {
            msg.put("params", params);
        }
        send(msg, options.encoding);
    }

    private void sendCancel(long id) {
        try {
            notify("$/cancelRequest", map("id", id));
        } catch (IOException ignored) {
            // the connection is gone: nothing left to cancel
        }
    }

    // ---------------------------------------------------------------- framing

    private void send(Map<String, Object> msg, Encoding encoding) throws IOException {
        byte[] body = encoding == Encoding.MSGPACK ? Msgpack.encode(msg)
                : GSON.toJson(toJson(msg, 0)).getBytes(StandardCharsets.UTF_8);
        if (body.length > options.maxMessageBytes) {
            throw new IOException(msg.get("method") + ": message of " + body.length + " bytes exceeds the limit of "
                    + options.maxMessageBytes);
        }
        byte[] header = ("Content-Length: " + body.length + "\r\nContent-Type: " + encoding.contentType + "\r\n\r\n")
                .getBytes(StandardCharsets.US_ASCII);
        synchronized (writeLock) {
            if (closed) {
                throw new IOException("client is closed");
            }
            out.write(header);
            out.write(body);
            out.flush();
        }
    }

    private void readLoop() {
        IOException why = null;
        try {
            while (true) {
                Object[] frame = readFrame();
                if (frame == null) {
                    why = new EOFException("the daemon closed the connection");
                    break;
                }
                dispatch(frame[0], (String) frame[1]);
            }
        } catch (IOException e) {
            why = closed ? new IOException("client is closed") : e;
        } catch (RuntimeException e) {
            why = new IOException("reader failed: " + e, e);
        } finally {
            broken = why != null ? why : new IOException("connection closed");
            for (Long id : new ArrayList<>(pending.keySet())) {
                Request r = pending.remove(id);
                if (r != null) {
                    r.completeExceptionally(new IOException(r.method + ": " + broken.getMessage(), broken));
                }
            }
        }
    }

    /** One frame: {decoded body, content type}, or null at a clean end of stream. */
    private Object[] readFrame() throws IOException {
        long length = -1;
        String type = null;
        int lines = 0;
        while (true) {
            String line = readHeaderLine(lines == 0);
            if (line == null) {
                return null;
            }
            if (line.isEmpty()) {
                if (lines == 0) {
                    continue;
                }
                break;
            }
            if (++lines > 32) {
                throw new IOException("bad frame from the daemon: more than 32 header lines");
            }
            int colon = line.indexOf(':');
            if (colon < 0) {
                throw new IOException("bad frame from the daemon: header line " + line);
            }
            String name = line.substring(0, colon).trim().toLowerCase(Locale.ROOT);
            String value = line.substring(colon + 1).trim();
            if (name.equals("content-length")) {
                try {
                    length = Long.parseLong(value);
                } catch (NumberFormatException e) {
                    throw new IOException("bad frame from the daemon: Content-Length " + value);
                }
            } else if (name.equals("content-type")) {
                type = value;
            }
        }
        if (length < 0 || length > options.maxMessageBytes) {
            throw new IOException("bad frame from the daemon: Content-Length " + length);
        }
        byte[] body = in.readNBytes((int) length);
        if (body.length != length) {
            throw new EOFException("the daemon closed the connection inside a message");
        }
        boolean msgpack = type != null && type.toLowerCase(Locale.ROOT).contains("msgpack");
        Object decoded = msgpack ? Msgpack.decode(body) : fromJson(JsonParser.parseString(
                new String(body, StandardCharsets.UTF_8)));
        return new Object[] {decoded, type};
    }

    private String readHeaderLine(boolean first) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream(64);
        while (true) {
            int c = in.read();
            if (c < 0) {
                if (first && b.size() == 0) {
                    return null;
                }
                throw new EOFException("the daemon closed the connection inside a header");
            }
            if (c == '\n') {
                break;
            }
            if (b.size() > 8192) {
                throw new IOException("bad frame from the daemon: header line over 8192 bytes");
            }
            b.write(c);
        }
        String s = b.toString(StandardCharsets.US_ASCII);
        return s.endsWith("\r") ? s.substring(0, s.length() - 1) : s;
    }

    @SuppressWarnings("unchecked")
    private void dispatch(Object message, String type) {
        if (!(message instanceof Map)) {
            return;
        }
        Map<String, Object> m = (Map<String, Object>) message;
        Object method = m.get("method");
        Object id = m.get("id");
        if (method instanceof String) {
            if (id != null) {   // a request from the daemon: none is defined, answer politely
                Map<String, Object> err = new LinkedHashMap<>();
                err.put("jsonrpc", "2.0");
                err.put("id", id);
                err.put("error", map("code", SbExportException.METHOD_NOT_FOUND, "message",
                        "the Java client answers no requests"));
                try {
                    send(err, type != null && type.contains("msgpack") ? Encoding.MSGPACK : Encoding.JSON);
                } catch (IOException ignored) {
                    // the reader will see the connection end
                }
                return;
            }
            Object params = arrays(m.get("params"));
            if ("$/progress".equals(method) && params instanceof Map) {
                Map<String, Object> p = (Map<String, Object>) params;
                Consumer<Map<String, Object>> l = progress.get(String.valueOf(p.get("token")));
                if (l != null && p.get("value") instanceof Map) {
                    safely(() -> l.accept((Map<String, Object>) p.get("value")));
                }
            }
            BiConsumer<String, Object> n = notifications;
            safely(() -> n.accept((String) method, params));
            return;
        }
        Long key = id instanceof Number ? ((Number) id).longValue() : null;
        if (key == null) {   // an error the daemon could not attribute (a frame it could not parse)
            BiConsumer<String, Object> n = notifications;
            safely(() -> n.accept("$/error", m.get("error")));
            return;
        }
        Request r = pending.remove(key);
        if (r == null) {
            return;   // timed out or cancelled meanwhile
        }
        if (m.containsKey("error") && m.get("error") instanceof Map) {
            Map<String, Object> e = (Map<String, Object>) m.get("error");
            int code = e.get("code") instanceof Number ? ((Number) e.get("code")).intValue() : 0;
            Map<String, Object> data = e.get("data") instanceof Map ? (Map<String, Object>) e.get("data") : null;
            r.completeExceptionally(new SbExportException(r.method, code, String.valueOf(e.get("message")), data));
        } else {
            try {
                r.complete(arrays(m.get("result")));
            } catch (RuntimeException x) {
                r.completeExceptionally(new IOException(r.method + ": bad result: " + x.getMessage(), x));
            }
        }
    }

    private static void safely(Runnable r) {
        try {
            r.run();
        } catch (RuntimeException ignored) {
            // a listener's failure must not stop the reader
        }
    }

    // ---------------------------------------------------------------- values

    /** Results with {dtype, shape, data} objects replaced by NdArrays, recursively. */
    @SuppressWarnings("unchecked")
    static Object arrays(Object v) {
        if (v instanceof Map) {
            Map<String, Object> m = (Map<String, Object>) v;
            if (m.size() == 3 && m.containsKey("dtype") && m.containsKey("shape") && m.containsKey("data")
                    && m.get("dtype") instanceof String && m.get("shape") instanceof List) {
                return toArray(m);
            }
            Map<String, Object> out = new LinkedHashMap<>();
            m.forEach((k, x) -> out.put(k, arrays(x)));
            return out;
        }
        if (v instanceof List) {
            List<Object> out = new ArrayList<>();
            for (Object x : (List<Object>) v) {
                out.add(arrays(x));
            }
            return out;
        }
        return v;
    }

    @SuppressWarnings("unchecked")
    private static NdArray toArray(Map<String, Object> m) {
        List<Object> shapeList = (List<Object>) m.get("shape");
        int[] shape = new int[shapeList.size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = ((Number) shapeList.get(i)).intValue();
        }
        String dtype = (String) m.get("dtype");
        Object data = m.get("data");
        if (dtype.equals("float16")) {
            throw new IllegalArgumentException("float16 arrays are not supported");
        }
        if (data instanceof byte[]) {
            return NdArray.fromBytes(dtype, shape, (byte[]) data);
        }
        if (data instanceof String) {
            return NdArray.fromBytes(dtype, shape, Base64.getDecoder().decode((String) data));
        }
        List<Object> flat = (List<Object>) data;
        double[] values = new double[flat.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = flat.get(i) == null ? Double.NaN : ((Number) flat.get(i)).doubleValue();
        }
        return NdArray.fromNumbers(dtype, shape, values);
    }

    /**
     * Nested lists (the "list" encoding) to an array: int64 when every value is an integer,
     * else float64 (null, JSON's stand-in for NaN and infinities, becomes NaN).
     */
    static NdArray fromNested(Object v) {
        List<Integer> shape = new ArrayList<>();
        Object x = v;
        while (x instanceof List) {
            List<?> l = (List<?>) x;
            shape.add(l.size());
            x = l.isEmpty() ? null : l.get(0);
        }
        int[] s = shape.stream().mapToInt(Integer::intValue).toArray();
        List<Object> flat = new ArrayList<>();
        flatten(v, 0, s, flat);
        boolean ints = flat.stream().allMatch(o -> o instanceof Long || o instanceof Integer);
        if (ints) {
            long[] a = new long[flat.size()];
            for (int i = 0; i < a.length; i++) {
                a[i] = ((Number) flat.get(i)).longValue();
            }
            return NdArray.of(a, s);
        }
        double[] a = new double[flat.size()];
        for (int i = 0; i < a.length; i++) {
            Object o = flat.get(i);
            a[i] = o instanceof Number ? ((Number) o).doubleValue() : o instanceof Boolean ? ((Boolean) o ? 1 : 0)
                    : Double.NaN;
        }
        return NdArray.of(a, s);
    }

    private static void flatten(Object v, int depth, int[] shape, List<Object> out) {
        if (depth == shape.length) {
            if (v instanceof List) {
                throw new IllegalArgumentException("ragged nested lists");
            }
            out.add(v);
            return;
        }
        if (!(v instanceof List) || ((List<?>) v).size() != shape[depth]) {
            throw new IllegalArgumentException("ragged nested lists");
        }
        for (Object e : (List<?>) v) {
            flatten(e, depth + 1, shape, out);
        }
    }

    @SuppressWarnings("unchecked")
    private static JsonElement toJson(Object v, int depth) {
        if (depth > 64) {
            throw new IllegalArgumentException("value nested too deeply");
        }
        if (v == null) {
            return JsonNull.INSTANCE;
        }
        if (v instanceof Boolean) {
            return new JsonPrimitive((Boolean) v);
        }
        if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new IllegalArgumentException("JSON has no NaN or infinity; send arrays as NdArray");
            }
            return new JsonPrimitive((Number) v);
        }
        if (v instanceof Number) {
            return new JsonPrimitive((Number) v);
        }
        if (v instanceof CharSequence) {
            return new JsonPrimitive(v.toString());
        }
        if (v instanceof NdArray) {
            NdArray a = (NdArray) v;
            JsonObject o = new JsonObject();
            o.addProperty("dtype", a.dtype().numpyName);
            JsonArray shape = new JsonArray();
            for (int d : a.shape()) {
                shape.add(d);
            }
            o.add("shape", shape);
            o.addProperty("data", Base64.getEncoder().encodeToString(a.toBytes()));
            return o;
        }
        if (v instanceof Map) {
            JsonObject o = new JsonObject();
            ((Map<Object, Object>) v).forEach((k, x) -> o.add(String.valueOf(k), toJson(x, depth + 1)));
            return o;
        }
        if (v instanceof Iterable) {
            JsonArray a = new JsonArray();
            for (Object x : (Iterable<Object>) v) {
                a.add(toJson(x, depth + 1));
            }
            return a;
        }
        if (v instanceof Object[]) {
            JsonArray a = new JsonArray();
            for (Object x : (Object[]) v) {
                a.add(toJson(x, depth + 1));
            }
            return a;
        }
        if (v.getClass().isArray()) {   // primitive arrays
            JsonArray a = new JsonArray();
            int n = java.lang.reflect.Array.getLength(v);
            for (int i = 0; i < n; i++) {
                a.add(toJson(java.lang.reflect.Array.get(v, i), depth + 1));
            }
            return a;
        }
        throw new IllegalArgumentException("cannot encode " + v.getClass().getName() + " as JSON");
    }

    private static Object fromJson(JsonElement e) {
        if (e == null || e.isJsonNull()) {
            return null;
        }
        if (e.isJsonObject()) {
            Map<String, Object> m = new LinkedHashMap<>();
            for (Map.Entry<String, JsonElement> x : e.getAsJsonObject().entrySet()) {
                m.put(x.getKey(), fromJson(x.getValue()));
            }
            return m;
        }
        if (e.isJsonArray()) {
            List<Object> l = new ArrayList<>();
            for (JsonElement x : e.getAsJsonArray()) {
                l.add(fromJson(x));
            }
            return l;
        }
        JsonPrimitive p = e.getAsJsonPrimitive();
        if (p.isBoolean()) {
            return p.getAsBoolean();
        }
        if (p.isString()) {
            return p.getAsString();
        }
        String s = p.getAsNumber().toString();
        if (s.indexOf('.') < 0 && s.indexOf('e') < 0 && s.indexOf('E') < 0) {
            try {
                return Long.parseLong(s);
            } catch (NumberFormatException big) {
                return new BigInteger(s);
            }
        }
        return Double.parseDouble(s);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> asMap(Object o, String what) throws IOException {
        if (!(o instanceof Map)) {
            throw new IOException(what + ": expected an object as the result, got " + o);
        }
        return (Map<String, Object>) o;
    }

    private static Map<String, Object> map(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    // ---------------------------------------------------------------- closing

    public boolean isOpen() {
        return !closed && broken == null;
    }

    /**
     * Sends {@code shutdown} and {@code exit} when the session was initialized and the
     * connection still works (a few seconds at most), then closes the socket. Requests still
     * in flight fail with an IOException.
     */
    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        if (initialized && broken == null) {
            try {
                call("shutdown", null, options.encoding, Duration.ofSeconds(5));
                exit();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
        closed = true;
        socket.close();
        try {
            reader.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
