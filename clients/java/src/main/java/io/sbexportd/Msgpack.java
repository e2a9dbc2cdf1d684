package io.sbexportd;

import java.io.IOException;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.msgpack.core.MessageBufferPacker;
import org.msgpack.core.MessagePack;
import org.msgpack.core.MessagePacker;
import org.msgpack.core.MessageUnpacker;
import org.msgpack.value.Value;

/**
 * msgpack to and from plain Java values: Map&lt;String, Object&gt;, List, String, Long,
 * Double, Boolean, byte[] (bin), null; and {@link NdArray} written as
 * {@code {dtype, shape, data: bin}}.
 */
final class Msgpack {
    private Msgpack() {
    }

    static Object decode(byte[] bytes) throws IOException {
        try (MessageUnpacker u = MessagePack.newDefaultUnpacker(bytes)) {
            Object v = toJava(u.unpackValue(), 0);
            if (u.hasNext()) {
                throw new IOException("trailing bytes after the msgpack document");
            }
            return v;
        } catch (org.msgpack.core.MessagePackException e) {
            throw new IOException("bad msgpack: " + e.getMessage(), e);
        }
    }

    private static Object toJava(Value v, int depth) throws IOException {
        if (depth > 64) {
            throw new IOException("msgpack nested too deeply");
        }
        switch (v.getValueType()) {
            case NIL: return null;
            case BOOLEAN: return v.asBooleanValue().getBoolean();
            case INTEGER:
                if (v.asIntegerValue().isInLongRange()) {
                    return v.asIntegerValue().toLong();
                }
                return new BigInteger(v.asIntegerValue().toString());
            case FLOAT: return v.asFloatValue().toDouble();
            case STRING: return v.asStringValue().asString();
            case BINARY: return v.asBinaryValue().asByteArray();
            case ARRAY: {
                List<Object> out = new ArrayList<>();
                for (Value e : v.asArrayValue()) {
                    out.add(toJava(e, depth + 1));
                }
                return out;
            }
            case MAP: {
                Map<String, Object> out = new LinkedHashMap<>();
                for (Map.Entry<Value, Value> e : v.asMapValue().entrySet()) {
                    if (!e.getKey().isStringValue()) {
                        throw new IOException("msgpack map key is not a string: " + e.getKey());
                    }
                    out.put(e.getKey().asStringValue().asString(), toJava(e.getValue(), depth + 1));
                }
                return out;
            }
            default:
                throw new IOException("unsupported msgpack value " + v.getValueType());
        }
    }

    static byte[] encode(Object value) throws IOException {
        try (MessageBufferPacker p = MessagePack.newDefaultBufferPacker()) {
            pack(p, value, 0);
            return p.toByteArray();
        }
    }

    @SuppressWarnings("unchecked")
    private static void pack(MessagePacker p, Object v, int depth) throws IOException {
        if (depth > 64) {
            throw new IOException("value nested too deeply");
        }
        if (v == null) {
            p.packNil();
        } else if (v instanceof Boolean) {
            p.packBoolean((Boolean) v);
        } else if (v instanceof Integer || v instanceof Long || v instanceof Short || v instanceof Byte) {
            p.packLong(((Number) v).longValue());
        } else if (v instanceof BigInteger) {
            p.packBigInteger((BigInteger) v);
        } else if (v instanceof Float || v instanceof Double) {
            p.packDouble(((Number) v).doubleValue());
        } else if (v instanceof CharSequence) {
            p.packString(v.toString());
        } else if (v instanceof byte[]) {
            byte[] b = (byte[]) v;
            p.packBinaryHeader(b.length);
            p.writePayload(b);
        } else if (v instanceof NdArray) {
            NdArray a = (NdArray) v;
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("dtype", a.dtype().numpyName);
            List<Object> shape = new ArrayList<>();
            for (int d : a.shape()) {
                shape.add((long) d);
            }
            m.put("shape", shape);
            m.put("data", a.toBytes());
            pack(p, m, depth);
        } else if (v instanceof Map) {
            Map<Object, Object> m = (Map<Object, Object>) v;
            p.packMapHeader(m.size());
            for (Map.Entry<Object, Object> e : m.entrySet()) {
                p.packString(String.valueOf(e.getKey()));
                pack(p, e.getValue(), depth + 1);
            }
        } else if (v instanceof Iterable) {
            List<Object> l = new ArrayList<>();
            ((Iterable<Object>) v).forEach(l::add);
            p.packArrayHeader(l.size());
            for (Object e : l) {
                pack(p, e, depth + 1);
            }
        } else if (v instanceof Object[]) {
            Object[] a = (Object[]) v;
            p.packArrayHeader(a.length);
            for (Object e : a) {
                pack(p, e, depth + 1);
            }
        } else if (v instanceof int[]) {
            int[] a = (int[]) v;
            p.packArrayHeader(a.length);
            for (int e : a) {
                p.packLong(e);
            }
        } else if (v instanceof long[]) {
            long[] a = (long[]) v;
            p.packArrayHeader(a.length);
            for (long e : a) {
                p.packLong(e);
            }
        } else if (v instanceof double[]) {
            double[] a = (double[]) v;
            p.packArrayHeader(a.length);
            for (double e : a) {
                p.packDouble(e);
            }
        } else if (v instanceof float[]) {
            float[] a = (float[]) v;
            p.packArrayHeader(a.length);
            for (float e : a) {
                p.packDouble(e);
            }
        } else {
            throw new IOException("cannot encode " + v.getClass().getName() + " as msgpack");
        }
    }
}
