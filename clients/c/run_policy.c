/* run_policy: run an sbexportd `graphdef` export (frozen_graph.pb) through the
 * TensorFlow C API and print the policy's deterministic action (SB2's
 * predict(obs, deterministic=True)), one row per observation.
 *
 * usage: run_policy FROZEN_GRAPH.pb OBS_FILE N D1 [D2 ...]
 *   OBS_FILE  N * D1 * D2 * ... float32 values, little-endian, row-major: a batch of
 *             raw environment observations (as the environment gives them, before any
 *             normalization: the graph does that). They are cast to the graph's `obs`
 *             dtype (uint8 images, int32 Discrete indices...) as SB2's feed_dict did.
 *   Recurrent policies: the state input is fed zeros and mask zeros (a first step,
 *   as SB2's predict without a state).
 * Output: one line per observation; Discrete/MultiDiscrete actions as integers, Box
 * and MultiBinary actions as floats (%.9g, enough to round-trip float32).
 * Exit status: 0, or 1 with a message on stderr, 2 on a usage error.
 *
 * The Session runs with Grappler's remapper off, as the export's io.json asks: with
 * oneDNN (TensorFlow's default on x86) it fuses layer norms into a kernel that is off
 * by up to 1e-3 from SB2.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"

#define MAX_DIMS 8

/* ConfigProto{graph_options{rewrite_options{remapping: OFF}}}, serialized (io.json's
 * session_config.serialized_hex: 520452027002). */
static const unsigned char SESSION_CONFIG[] = {0x52, 0x04, 0x52, 0x02, 0x70, 0x02};

static void die(const char *fmt, const char *detail) {
    fprintf(stderr, "run_policy: ");
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
    exit(1);
}

static void check(TF_Status *status, const char *what) {
    if (TF_GetCode(status) != TF_OK) {
        fprintf(stderr, "run_policy: %s: %s\n", what, TF_Message(status));
        exit(1);
    }
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "run_policy: cannot open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek %s", path);
    long n = ftell(f);
    if (n < 0) die("cannot size %s", path);
    rewind(f);
    unsigned char *data = malloc(n > 0 ? (size_t)n : 1);
    if (!data) die("out of memory reading %s", path);
    if (n > 0 && fread(data, 1, (size_t)n, f) != (size_t)n) die("cannot read %s", path);
    fclose(f);
    *size = (size_t)n;
    return data;
}

static int is_little_endian(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static float load_f32le(const unsigned char *p) {
    uint32_t bits = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static long parse_dim(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v <= 0 || v > (1L << 30)) die("bad %s (a positive integer expected)", what);
    return v;
}

/* A tensor of the placeholder's dtype from float32 values (C casts, as NumPy's astype). */
static TF_Tensor *make_input(TF_DataType dtype, const int64_t *dims, int ndims, const float *values, size_t count) {
    size_t width = TF_DataTypeSize(dtype);
    if (width == 0) die("unsupported obs dtype %s", "(variable width)");
    TF_Tensor *t = TF_AllocateTensor(dtype, dims, ndims, width * count);
    if (!t) die("cannot allocate the %s tensor", "obs");
    void *out = TF_TensorData(t);
    for (size_t i = 0; i < count; i++) {
        float v = values[i];
        switch (dtype) {
            case TF_FLOAT: ((float *)out)[i] = v; break;
            case TF_DOUBLE: ((double *)out)[i] = (double)v; break;
            case TF_UINT8: ((uint8_t *)out)[i] = (uint8_t)v; break;
            case TF_INT8: ((int8_t *)out)[i] = (int8_t)v; break;
            case TF_INT16: ((int16_t *)out)[i] = (int16_t)v; break;
            case TF_UINT16: ((uint16_t *)out)[i] = (uint16_t)v; break;
            case TF_INT32: ((int32_t *)out)[i] = (int32_t)v; break;
            case TF_INT64: ((int64_t *)out)[i] = (int64_t)v; break;
            case TF_BOOL: ((unsigned char *)out)[i] = v != 0.0f; break;
            default: die("unsupported obs dtype (TF_DataType %s)", "other than float/int/uint8/bool");
        }
    }
    return t;
}

static TF_Operation *find_op(TF_Graph *graph, const char *name, int required) {
    TF_Operation *op = TF_GraphOperationByName(graph, name);
    if (!op && required) die("the graph has no node named %s (is this an sbexportd graphdef export?)", name);
    return op;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s FROZEN_GRAPH.pb OBS_FILE N D1 [D2 ...]\n"
                        "  OBS_FILE: N*D1*D2*... little-endian float32 observations\n", argv[0]);
        return 2;
    }
    int obs_ndims = argc - 3;
    if (obs_ndims > MAX_DIMS) die("too many dimensions (at most %s)", "8");
    int64_t dims[MAX_DIMS];
    size_t count = 1;
    for (int i = 0; i < obs_ndims; i++) {
        dims[i] = parse_dim(argv[3 + i], i == 0 ? "N" : "dimension");
        count *= (size_t)dims[i];
        if (count > (1UL << 31)) die("the observation batch is too large (%s)", argv[3 + i]);
    }
    const long n = (long)dims[0];

    size_t obs_bytes;
    unsigned char *raw = read_file(argv[2], &obs_bytes);
    if (obs_bytes != count * 4) {
        fprintf(stderr, "run_policy: %s has %zu bytes; N x dims gives %zu float32 values = %zu bytes\n", argv[2],
                obs_bytes, count, count * 4);
        return 1;
    }
    float *obs = malloc(count * sizeof(float));
    if (!obs) die("out of memory (%s)", "observations");
    if (is_little_endian()) {
        memcpy(obs, raw, count * 4);
    } else {
        for (size_t i = 0; i < count; i++) obs[i] = load_f32le(raw + 4 * i);
    }
    free(raw);

    size_t graph_bytes;
    unsigned char *graph_data = read_file(argv[1], &graph_bytes);
    TF_Buffer *graph_def = TF_NewBufferFromString(graph_data, graph_bytes);
    free(graph_data);
    TF_Status *status = TF_NewStatus();
    TF_Graph *graph = TF_NewGraph();
    TF_ImportGraphDefOptions *import_opts = TF_NewImportGraphDefOptions();
    TF_GraphImportGraphDef(graph, graph_def, import_opts, status);
    check(status, "cannot import the frozen graph");
    TF_DeleteImportGraphDefOptions(import_opts);
    TF_DeleteBuffer(graph_def);

    TF_Operation *obs_op = find_op(graph, "obs", 1);
    TF_Operation *action_op = find_op(graph, "action", 1);
    TF_Operation *state_op = find_op(graph, "state", 0);
    TF_Operation *mask_op = state_op ? find_op(graph, "mask", 1) : NULL;

    TF_Output inputs[3];
    TF_Tensor *values[3];
    int n_inputs = 0;
    TF_Output obs_out = {obs_op, 0};
    /* The graph's own obs shape must match the command line's (batch aside). */
    int graph_ndims = TF_GraphGetTensorNumDims(graph, obs_out, status);
    check(status, "cannot read the obs shape");
    if (graph_ndims >= 1 && graph_ndims != obs_ndims) {
        fprintf(stderr, "run_policy: the policy takes obs of rank %d (batch first); the command line gives %d\n",
                graph_ndims, obs_ndims);
        return 1;
    }
    if (graph_ndims > 1) {
        int64_t gdims[MAX_DIMS];
        TF_GraphGetTensorShape(graph, obs_out, gdims, graph_ndims, status);
        check(status, "cannot read the obs shape");
        for (int i = 1; i < graph_ndims; i++) {
            if (gdims[i] >= 0 && gdims[i] != dims[i]) {
                fprintf(stderr, "run_policy: obs dimension %d is %" PRId64 " in the policy, %" PRId64
                        " on the command line\n", i, gdims[i], dims[i]);
                return 1;
            }
        }
    }
    inputs[n_inputs] = obs_out;
    values[n_inputs++] = make_input(TF_OperationOutputType(obs_out), dims, obs_ndims, obs, count);
    free(obs);
    if (state_op) {
        TF_Output state_out = {state_op, 0};
        int64_t sdims[2];
        TF_GraphGetTensorShape(graph, state_out, sdims, 2, status);
        check(status, "cannot read the state shape");
        int64_t state_dims[2] = {n, sdims[1]};
        TF_Tensor *state = TF_AllocateTensor(TF_FLOAT, state_dims, 2, sizeof(float) * (size_t)n * (size_t)sdims[1]);
        memset(TF_TensorData(state), 0, TF_TensorByteSize(state));
        int64_t mask_dims[1] = {n};
        TF_Tensor *mask = TF_AllocateTensor(TF_FLOAT, mask_dims, 1, sizeof(float) * (size_t)n);
        memset(TF_TensorData(mask), 0, TF_TensorByteSize(mask));
        inputs[n_inputs] = state_out;
        values[n_inputs++] = state;
        inputs[n_inputs] = (TF_Output){mask_op, 0};
        values[n_inputs++] = mask;
    }

    TF_SessionOptions *session_opts = TF_NewSessionOptions();
    TF_SetConfig(session_opts, SESSION_CONFIG, sizeof SESSION_CONFIG, status);
    check(status, "cannot configure the session");
    TF_Session *session = TF_NewSession(graph, session_opts, status);
    check(status, "cannot create a session");
    TF_DeleteSessionOptions(session_opts);

    TF_Output fetch = {action_op, 0};
    TF_Tensor *result = NULL;
    TF_SessionRun(session, NULL, inputs, values, n_inputs, &fetch, &result, 1, NULL, 0, NULL, status);
    check(status, "running the policy failed");

    int rank = TF_NumDims(result);
    if (rank < 1 || TF_Dim(result, 0) != n) die("unexpected action shape (%s)", "batch mismatch");
    int64_t per_row = 1;
    for (int i = 1; i < rank; i++) per_row *= TF_Dim(result, i);
    TF_DataType out_type = TF_TensorType(result);
    const void *data = TF_TensorData(result);
    for (long row = 0; row < n; row++) {
        for (int64_t j = 0; j < per_row; j++) {
            size_t k = (size_t)(row * per_row + j);
            if (j) putchar(' ');
            switch (out_type) {
                case TF_INT64: printf("%" PRId64, ((const int64_t *)data)[k]); break;
                case TF_INT32: printf("%" PRId32, ((const int32_t *)data)[k]); break;
                case TF_FLOAT: printf("%.9g", (double)((const float *)data)[k]); break;
                case TF_DOUBLE: printf("%.17g", ((const double *)data)[k]); break;
                default: die("unsupported action dtype (%s)", "not int32/int64/float/double");
            }
        }
        putchar('\n');
    }
    if (fflush(stdout) != 0) die("cannot write the actions (%s)", strerror(errno));

    TF_DeleteTensor(result);
    for (int i = 0; i < n_inputs; i++) TF_DeleteTensor(values[i]);
    TF_CloseSession(session, status);
    TF_DeleteSession(session, status);
    TF_DeleteGraph(graph);
    TF_DeleteStatus(status);
    return 0;
}
