package io.sbexportd;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The answer of {@code sbexport/export} (protocol.md): the targets written, each a map
 * ({@code target, path, files, bytes, parity, manifest, cached, seconds}), and the
 * targets that failed, each with the daemon's error. Unless the request asked for
 * {@code allOrNothing}, a target that fails leaves nothing under its name and the others
 * are kept; a request none of whose targets could be made throws instead.
 */
public final class ExportResult {
    /** A target that could not be exported: its name and the daemon's error for it. */
    public static final class Failure {
        private final String target;
        private final SbExportException error;

        Failure(String target, SbExportException error) {
            this.target = target;
            this.error = error;
        }

        public String target() {
            return target;
        }

        public SbExportException error() {
            return error;
        }

        @Override
        public String toString() {
            return target + ": " + error.getMessage();
        }
    }

    private final Map<String, Object> raw;
    private final List<Map<String, Object>> results;
    private final List<Failure> failed;

    @SuppressWarnings("unchecked")
    ExportResult(Map<String, Object> raw) {
        this.raw = Collections.unmodifiableMap(raw);
        Object r = raw.get("results");
        this.results = r instanceof List ? Collections.unmodifiableList((List<Map<String, Object>>) r)
                : Collections.emptyList();
        List<Failure> f = new ArrayList<>();
        Object failures = raw.get("failed");
        if (failures instanceof List) {
            for (Object o : (List<Object>) failures) {
                Map<String, Object> m = (Map<String, Object>) o;
                Map<String, Object> e = (Map<String, Object>) m.get("error");
                Object data = e.get("data");
                f.add(new Failure(String.valueOf(m.get("target")), new SbExportException("sbexport/export",
                        ((Number) e.get("code")).intValue(), String.valueOf(e.get("message")),
                        data instanceof Map ? (Map<String, Object>) data : null)));
            }
        }
        this.failed = Collections.unmodifiableList(f);
    }

    /** The targets written (complete and, unless verify was false, verified), in request order. */
    public List<Map<String, Object>> results() {
        return results;
    }

    /** The target written under this name, or null. */
    public Map<String, Object> result(String target) {
        for (Map<String, Object> r : results) {
            if (target.equals(r.get("target"))) {
                return r;
            }
        }
        return null;
    }

    /** The targets that failed (nothing written under their names). */
    public List<Failure> failed() {
        return failed;
    }

    /** Whether every target asked for was written. */
    public boolean complete() {
        return failed.isEmpty();
    }

    /** The result object as the daemon sent it. */
    public Map<String, Object> raw() {
        return raw;
    }
}
