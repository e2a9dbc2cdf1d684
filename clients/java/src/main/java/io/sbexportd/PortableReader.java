package io.sbexportd;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a portable file (docs/portable.md): the msgpack document, its format and
 * version, and every tensor checked against its dtype and byte count. Also the typed
 * access to the document the compiler uses, each failing with an {@link IOException}
 * that names the field.
 */
final class PortableReader {
    static final String FORMAT = "sbexportd-portable";
    static final long MAX_FILE = 1L << 30;

    private PortableReader() {
    }

    /** The top-level document of a portable v1 file (its tensors still as bytes). */
    @SuppressWarnings("unchecked")
    static Map<String, Object> document(byte[] bytes) throws IOException {
        if (bytes.length > MAX_FILE) {
            throw new IOException("larger than " + MAX_FILE + " bytes");
        }
        Object root = Msgpack.decode(bytes);
        if (!(root instanceof Map)) {
            throw new IOException("not an " + FORMAT + " file (top level is not a map)");
        }
        Map<String, Object> doc = (Map<String, Object>) root;
        if (!FORMAT.equals(doc.get("format")) || !Long.valueOf(1).equals(doc.get("format_version"))) {
            throw new IOException("not an " + FORMAT + " v1 file (format " + doc.get("format") + ", version "
                    + doc.get("format_version") + ")");
        }
        return doc;
    }

    /** The document's tensors by name, each checked (dtype known, bytes = shape x item size). */
    static Map<String, NdArray> tensors(Map<String, Object> doc) throws IOException {
        Map<String, NdArray> tensors = new HashMap<>();
        for (Map.Entry<String, Object> e : map(doc, "tensors").entrySet()) {
            Map<String, Object> t = asMap(e.getValue(), "tensor " + e.getKey());
            String dtype = str(t, "dtype");
            NdArray.DType d;
            try {
                d = NdArray.DType.of(dtype);
            } catch (IllegalArgumentException x) {
                throw new IOException("tensor " + e.getKey() + " has dtype " + dtype);
            }
            Object data = t.get("data");
            if (!(data instanceof byte[])) {
                throw new IOException("tensor " + e.getKey() + ": data is not bytes");
            }
            int[] shape = ints(t.get("shape"), "tensor " + e.getKey() + " shape");
            long want = (long) NdArray.count(shape) * d.itemSize;
            if (want != ((byte[]) data).length) {
                throw new IOException("tensor " + e.getKey() + " has " + ((byte[]) data).length
                        + " bytes for shape " + Arrays.toString(shape));
            }
            tensors.put(e.getKey(), NdArray.fromBytes(dtype, shape, (byte[]) data));
        }
        return tensors;
    }

    // ---------------------------------------------------------------- document access

    static Map<String, Object> map(Map<String, Object> m, String key) throws IOException {
        return asMap(m.get(key), key);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> asMap(Object o, String what) throws IOException {
        if (!(o instanceof Map)) {
            throw new IOException(what + " is not a map");
        }
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Map<String, Object> m, String key) throws IOException {
        Object o = m.get(key);
        if (!(o instanceof List)) {
            throw new IOException(key + " is not a list");
        }
        return (List<Object>) o;
    }

    static List<String> strings(Map<String, Object> m, String key) throws IOException {
        List<String> out = new ArrayList<>();
        for (Object o : list(m, key)) {
            if (!(o instanceof String)) {
                throw new IOException(key + " holds a non-string");
            }
            out.add((String) o);
        }
        return out;
    }

    static String str(Map<String, Object> m, String key) {
        Object o = m.get(key);
        if (!(o instanceof String)) {
            throw new IllegalArgumentException(key + " is not a string");
        }
        return (String) o;
    }

    static double num(Map<String, Object> m, String key) throws IOException {
        Object o = m.get(key);
        if (o instanceof Number) {
            return ((Number) o).doubleValue();
        }
        if (o instanceof String) {   // JSON has no infinity: "inf" / "-inf"
            String s = (String) o;
            if (s.equals("inf")) {
                return Double.POSITIVE_INFINITY;
            }
            if (s.equals("-inf")) {
                return Double.NEGATIVE_INFINITY;
            }
        }
        throw new IOException(key + " is not a number");
    }

    static int[] ints(Object o, String what) throws IOException {
        if (!(o instanceof List)) {
            throw new IOException(what + " is not a list");
        }
        List<?> l = (List<?>) o;
        int[] out = new int[l.size()];
        for (int i = 0; i < out.length; i++) {
            Object v = l.get(i);
            if (!(v instanceof Long) || (Long) v < 0 || (Long) v > Integer.MAX_VALUE) {
                throw new IOException(what + " holds " + v + ", not a size");
            }
            out[i] = (int) (long) (Long) v;
        }
        return out;
    }
}
