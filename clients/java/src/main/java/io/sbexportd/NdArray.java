package io.sbexportd;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;

/**
 * A dense, row-major n-dimensional array: a dtype, a shape and one primitive Java array.
 *
 * <p>Storage by dtype: float32 {@code float[]}, float64 {@code double[]}, int64/uint64
 * {@code long[]}, int32/uint32 {@code int[]}, int16/uint16 {@code short[]}, int8/uint8/bool
 * {@code byte[]} (unsigned types keep their bit pattern). This is the wire form of sbexportd's
 * arrays: {@code {dtype, shape, data}} with little-endian bytes (msgpack, the portable format)
 * or a flat number list (JSON).
 */
public final class NdArray {

    /** The dtypes sbexportd exchanges, by their NumPy names. */
    public enum DType {
        FLOAT32("float32", 4), FLOAT64("float64", 8), INT8("int8", 1), UINT8("uint8", 1),
        INT16("int16", 2), UINT16("uint16", 2), INT32("int32", 4), UINT32("uint32", 4),
        INT64("int64", 8), UINT64("uint64", 8), BOOL("bool", 1);

        public final String numpyName;
        public final int itemSize;

        DType(String numpyName, int itemSize) {
            this.numpyName = numpyName;
            this.itemSize = itemSize;
        }

        public static DType of(String name) {
            for (DType d : values()) {
                if (d.numpyName.equals(name)) {
                    return d;
                }
            }
            throw new IllegalArgumentException("unsupported dtype " + name);
        }

        public boolean isFloat() {
            return this == FLOAT32 || this == FLOAT64;
        }
    }

    private final DType dtype;
    private final int[] shape;
    private final Object data;
    private final int size;

    private NdArray(DType dtype, int[] shape, Object data) {
        this.dtype = dtype;
        this.shape = shape.clone();
        this.data = data;
        this.size = count(this.shape);
        if (java.lang.reflect.Array.getLength(data) != size) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " holds " + size
                    + " elements, data has " + java.lang.reflect.Array.getLength(data));
        }
    }

    /** The number of elements of a shape; throws on negative or overflowing dimensions. */
    public static int count(int[] shape) {
        long n = 1;
        for (int d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            }
            n *= d;
            if (n > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " is too large");
            }
        }
        return (int) n;
    }

    public static NdArray of(float[] data, int... shape) {
        return new NdArray(DType.FLOAT32, shape, data);
    }

    public static NdArray of(double[] data, int... shape) {
        return new NdArray(DType.FLOAT64, shape, data);
    }

    public static NdArray of(long[] data, int... shape) {
        return new NdArray(DType.INT64, shape, data);
    }

    public static NdArray of(int[] data, int... shape) {
        return new NdArray(DType.INT32, shape, data);
    }

    /** uint8 data (images): Java's signed bytes hold the unsigned values' bit patterns. */
    public static NdArray ofUint8(byte[] data, int... shape) {
        return new NdArray(DType.UINT8, shape, data);
    }

    /** Wraps a primitive array of the storage type {@code dtype} uses (no copy). */
    public static NdArray wrap(DType dtype, int[] shape, Object data) {
        Objects.requireNonNull(data, "data");
        Class<?> want = storageClass(dtype);
        if (data.getClass() != want) {
            throw new IllegalArgumentException(dtype.numpyName + " is stored as " + want.getSimpleName()
                    + ", got " + data.getClass().getSimpleName());
        }
        return new NdArray(dtype, shape, data);
    }

    private static Class<?> storageClass(DType d) {
        switch (d) {
            case FLOAT32: return float[].class;
            case FLOAT64: return double[].class;
            case INT64: case UINT64: return long[].class;
            case INT32: case UINT32: return int[].class;
            case INT16: case UINT16: return short[].class;
            default: return byte[].class;
        }
    }

    /** Decodes {@code data} (little-endian bytes) of the given dtype and shape. */
    public static NdArray fromBytes(String dtype, int[] shape, byte[] bytes) {
        DType d = DType.of(dtype);
        int n = count(shape);
        if ((long) n * d.itemSize != bytes.length) {
            throw new IllegalArgumentException(dtype + " " + Arrays.toString(shape) + " needs "
                    + ((long) n * d.itemSize) + " bytes, got " + bytes.length);
        }
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        Object data;
        switch (d) {
            case FLOAT32: { float[] a = new float[n]; b.asFloatBuffer().get(a); data = a; break; }
            case FLOAT64: { double[] a = new double[n]; b.asDoubleBuffer().get(a); data = a; break; }
            case INT64: case UINT64: { long[] a = new long[n]; b.asLongBuffer().get(a); data = a; break; }
            case INT32: case UINT32: { int[] a = new int[n]; b.asIntBuffer().get(a); data = a; break; }
            case INT16: case UINT16: { short[] a = new short[n]; b.asShortBuffer().get(a); data = a; break; }
            default: data = bytes.clone();
        }
        return new NdArray(d, shape, data);
    }

    /** Builds an array of {@code dtype} from numbers (a JSON array's flat data). */
    public static NdArray fromNumbers(String dtype, int[] shape, double[] values) {
        DType d = DType.of(dtype);
        int n = values.length;
        Object data;
        switch (d) {
            case FLOAT32: { float[] a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float) values[i]; data = a; break; }
            case FLOAT64: data = values.clone(); break;
            case INT64: case UINT64: { long[] a = new long[n]; for (int i = 0; i < n; i++) a[i] = (long) values[i]; data = a; break; }
            case INT32: case UINT32: { int[] a = new int[n]; for (int i = 0; i < n; i++) a[i] = (int) (long) values[i]; data = a; break; }
            case INT16: case UINT16: { short[] a = new short[n]; for (int i = 0; i < n; i++) a[i] = (short) (long) values[i]; data = a; break; }
            default: { byte[] a = new byte[n]; for (int i = 0; i < n; i++) a[i] = (byte) (long) values[i]; data = a; }
        }
        return new NdArray(d, shape, data);
    }

    /** Little-endian bytes of the data (the msgpack / portable wire form). */
    public byte[] toBytes() {
        ByteBuffer b = ByteBuffer.allocate(size * dtype.itemSize).order(ByteOrder.LITTLE_ENDIAN);
        switch (dtype) {
            case FLOAT32: b.asFloatBuffer().put((float[]) data); break;
            case FLOAT64: b.asDoubleBuffer().put((double[]) data); break;
            case INT64: case UINT64: b.asLongBuffer().put((long[]) data); break;
            case INT32: case UINT32: b.asIntBuffer().put((int[]) data); break;
            case INT16: case UINT16: b.asShortBuffer().put((short[]) data); break;
            default: b.put((byte[]) data);
        }
        return b.array();
    }

    public DType dtype() {
        return dtype;
    }

    public int[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public int dim(int axis) {
        return shape[axis];
    }

    public int size() {
        return size;
    }

    /** The backing array itself (float[], long[], ... by dtype; see the class comment). */
    public Object data() {
        return data;
    }

    /** The float32 data itself; throws unless the dtype is float32. */
    public float[] floats() {
        if (dtype != DType.FLOAT32) {
            throw new IllegalStateException("array is " + dtype.numpyName + ", not float32");
        }
        return (float[]) data;
    }

    /** The int64 data itself; throws unless the dtype is int64. */
    public long[] longs() {
        if (dtype != DType.INT64) {
            throw new IllegalStateException("array is " + dtype.numpyName + ", not int64");
        }
        return (long[]) data;
    }

    /** Element {@code i} of the flat data as a double (unsigned types read unsigned). */
    public double getDouble(int i) {
        switch (dtype) {
            case FLOAT32: return ((float[]) data)[i];
            case FLOAT64: return ((double[]) data)[i];
            case UINT64: {
                long v = ((long[]) data)[i];
                return v >= 0 ? v : (double) (v >>> 1) * 2.0 + (v & 1);
            }
            default: return getLong(i);
        }
    }

    /** Element {@code i} of the flat data as a long (floats truncate toward zero). */
    public long getLong(int i) {
        switch (dtype) {
            case FLOAT32: return (long) ((float[]) data)[i];
            case FLOAT64: return (long) ((double[]) data)[i];
            case INT64: case UINT64: return ((long[]) data)[i];
            case INT32: return ((int[]) data)[i];
            case UINT32: return ((int[]) data)[i] & 0xFFFFFFFFL;
            case INT16: return ((short[]) data)[i];
            case UINT16: return ((short[]) data)[i] & 0xFFFF;
            case INT8: return ((byte[]) data)[i];
            default: return ((byte[]) data)[i] & 0xFF;
        }
    }

    /** A float32 copy (or the array itself when it is float32). */
    public float[] toFloatArray() {
        if (dtype == DType.FLOAT32) {
            return (float[]) data;
        }
        float[] out = new float[size];
        for (int i = 0; i < size; i++) {
            out[i] = (float) getDouble(i);
        }
        return out;
    }

    /** A float64 copy of the data. */
    public double[] toDoubleArray() {
        double[] out = new double[size];
        for (int i = 0; i < size; i++) {
            out[i] = getDouble(i);
        }
        return out;
    }

    /** An int64 copy (or the array itself when it is int64). */
    public long[] toLongArray() {
        if (dtype == DType.INT64) {
            return (long[]) data;
        }
        long[] out = new long[size];
        for (int i = 0; i < size; i++) {
            out[i] = getLong(i);
        }
        return out;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof NdArray)) {
            return false;
        }
        NdArray other = (NdArray) o;
        return dtype == other.dtype && Arrays.equals(shape, other.shape)
                && Arrays.deepEquals(new Object[] {data}, new Object[] {other.data});
    }

    @Override
    public int hashCode() {
        return Objects.hash(dtype, Arrays.hashCode(shape), Arrays.deepHashCode(new Object[] {data}));
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder(dtype.numpyName).append(Arrays.toString(shape)).append(" [");
        int shown = Math.min(size, 8);
        for (int i = 0; i < shown; i++) {
            if (i > 0) {
                s.append(", ");
            }
            if (dtype.isFloat()) {
                s.append(String.format("%.6g", getDouble(i)));
            } else {
                s.append(getLong(i));
            }
        }
        return s.append(size > shown ? ", ...]" : "]").toString();
    }
}
