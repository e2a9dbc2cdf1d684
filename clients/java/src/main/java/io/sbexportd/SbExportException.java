package io.sbexportd;

import java.io.IOException;
import java.util.Collections;
import java.util.Map;

/**
 * An error answer of the daemon: the JSON-RPC {@code code}, its {@code message} and
 * {@code data} ({@code kind}, a stable word such as {@code file_not_found}; {@code file};
 * {@code hint}). See protocol.md, "Errors".
 */
public class SbExportException extends IOException {
    private static final long serialVersionUID = 1L;

    public static final int PARSE_ERROR = -32700;
    public static final int INVALID_REQUEST = -32600;
    public static final int METHOD_NOT_FOUND = -32601;
    public static final int INVALID_PARAMS = -32602;
    public static final int INTERNAL_ERROR = -32603;
    public static final int NOT_INITIALIZED = -32002;
    public static final int REQUEST_CANCELLED = -32800;
    public static final int OTHER = -33000;
    public static final int FILE_NOT_FOUND = -33001;
    public static final int BAD_MODEL_FILE = -33002;
    public static final int UNSUPPORTED_POLICY = -33003;
    public static final int UNKNOWN_MODEL = -33004;
    public static final int BAD_OBSERVATION = -33005;
    public static final int BACKEND_UNAVAILABLE = -33006;
    public static final int EXPORT_FAILED = -33010;
    public static final int PARITY_FAILED = -33011;
    public static final int OUTPUT_EXISTS = -33012;
    public static final int UNAUTHORIZED = -33020;
    public static final int PATH_NOT_ALLOWED = -33021;
    public static final int MESSAGE_TOO_LARGE = -33030;

    private final int code;
    private final transient Map<String, Object> data;
    private final String method;
    private final String serverMessage;

    public SbExportException(String method, int code, String message, Map<String, Object> data) {
        super(method + ": " + message + " (" + code + (data != null && data.get("kind") != null
                ? " " + data.get("kind") : "") + ")");
        this.method = method;
        this.serverMessage = message;
        this.code = code;
        this.data = data == null ? Collections.emptyMap() : Collections.unmodifiableMap(data);
    }

    /** The JSON-RPC error code (the constants of this class). */
    public int code() {
        return code;
    }

    /** The error's {@code message} as the daemon wrote it. */
    public String serverMessage() {
        return serverMessage;
    }

    /** The method whose request failed. */
    public String method() {
        return method;
    }

    /** The error's {@code data} object (empty when the daemon sent none). */
    public Map<String, Object> data() {
        return data;
    }

    /** {@code data.kind}: a stable word such as {@code file_not_found}, or null. */
    public String kind() {
        Object k = data.get("kind");
        return k == null ? null : k.toString();
    }

    /** {@code data.hint}: what to do, or null. */
    public String hint() {
        Object h = data.get("hint");
        return h == null ? null : h.toString();
    }

    /** {@code data.file}: the path concerned, or null. */
    public String file() {
        Object f = data.get("file");
        return f == null ? null : f.toString();
    }
}
