/*
 * c-embeddings: a modelhost command module written in C.
 *
 * Embeds each line of stdin with a sentence-transformers model and prints one JSON array of
 * floats per line, in input order, on stdout, like the Rust document-processor's default output
 * (`"output": "vectors"`). Numbers have 9 significant digits (%.9g), enough for every f32 to read
 * back exactly: the Rust module prints the shortest such form, so the text differs but the
 * vectors are equal, number for number.
 *
 *   echo "A man is playing a guitar." | modelhost run target/modules/c-embeddings.wasm
 *
 * Settings (optional; empty settings mean the defaults):
 *
 *   {"model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384}
 *
 *   model      Hugging Face repository id of an embedding model
 *              (default sentence-transformers/all-MiniLM-L6-v2).
 *   dimension  the vector size the model must produce; registration fails with
 *              dimension-mismatch otherwise. Defaults to 384 when `model` is not given, and to
 *              no check when another model is named without a dimension.
 *
 * Anything else (other keys, other JSON types, \u escapes) fails `initialize` with the error code
 * invalid-requirement and a message that says what is expected.
 *
 * Lifecycle (world `command-module` in wit/): `modelhost run` calls `initialize(settings)`, which
 * registers the model under the id "embedder" (cache_embeddings true, device auto, precision
 * exact, everything else unset); then `run`, which reads stdin and sends up to 64 lines per
 * generate-embeddings call; then `cleanup`, which releases the model. A host error is printed to
 * stderr as `c-embeddings: <code>: <message>` and `run` fails (exit status 1).
 *
 * Memory ownership, as the wit-bindgen C bindings (command_module.h) define it:
 *   - Arguments we pass to an import are ours; the call only borrows them.
 *   - Results and errors an import hands back are ours: freed with the generated *_free functions.
 *   - The `settings` argument of the exported `initialize` is ours (the host allocated it with
 *     our cabi_realloc): freed with command_module_string_free.
 *   - The error an export hands back is freed by the generated post-return function, so its
 *     strings must come from malloc (command_module_string_dup) or be empty.
 *
 * Build: scripts/build-c-module (run by scripts/build-modules) -> target/modules/c-embeddings.wasm
 */

#define _POSIX_C_SOURCE 200809L /* getline */

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "command_module.h"

#define PROGRAM "c-embeddings"
#define MODEL_ID "embedder"
#define DEFAULT_MODEL "sentence-transformers/all-MiniLM-L6-v2"
#define DEFAULT_DIMENSION 384u
/* Lines sent to the host per generate-embeddings call. */
#define LINES_PER_CALL 64
#define SETTINGS_EXAMPLE "{\"model\": \"org/name\", \"dimension\": 384}"

typedef modelhost_models_types_error_t host_error_t;

/* Whether `initialize` registered MODEL_ID, so that `cleanup` releases it. */
static bool registered;

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/* The WIT names of error-code, indexed by its value (types.wit; append-only). */
static const char *const error_code_names[] = {
    "invalid-requirement", "model-not-found",    "invalid-model-files", "unsupported-architecture",
    "dimension-mismatch",  "wrong-model-type",   "not-registered",      "conflict",
    "invalid-input",       "unsupported",        "device-unavailable",  "load-failed",
    "inference-failed",    "overloaded",         "timeout",             "internal",
    "unauthorized",        "gated",              "network-unreachable", "disk-full",
    "corrupt-download",    "limit-exceeded",     "not-allowed",         "out-of-memory",
};

static const char *error_code_name(modelhost_models_types_error_code_t code) {
    size_t count = sizeof error_code_names / sizeof error_code_names[0];
    return code < count ? error_code_names[code] : "unknown-error";
}

/* Prints `c-embeddings: <code>: <message>` (and the details, when there are any) to stderr. */
static void print_error(const char *code, const uint8_t *message, size_t message_len,
                        const command_module_option_string_t *details) {
    fprintf(stderr, "%s: %s: ", PROGRAM, code);
    fwrite(message, 1, message_len, stderr);
    if (details != NULL && details->is_some && details->val.len > 0) {
        fputs(" (", stderr);
        fwrite(details->val.ptr, 1, details->val.len, stderr);
        fputc(')', stderr);
    }
    fputc('\n', stderr);
}

static void print_host_error(const host_error_t *error) {
    print_error(error_code_name(error->code), error->message.ptr, error->message.len,
                &error->details);
}

/* ---------------------------------------------------------------------------------------------
 * Settings: a deliberately small JSON reader for one flat object with two known keys. It reads
 * from a (pointer, length) view of the settings string, never past its end, and allocates only
 * the model name, which the caller frees.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *start; /* first byte of the settings, for error offsets */
    const uint8_t *at;    /* next byte to read */
    const uint8_t *end;   /* one past the last byte */
    char why[160];        /* what went wrong, once a parse function returned false */
} reader_t;

typedef struct {
    char *model;        /* malloc'd, NUL-terminated; NULL when not given */
    size_t model_len;   /* bytes in `model`, without the NUL */
    bool has_dimension; /* whether `dimension` was given */
    uint32_t dimension;
} settings_t;

static bool fail(reader_t *r, const char *what) {
    snprintf(r->why, sizeof r->why, "%s at byte %zu", what, (size_t)(r->at - r->start));
    return false;
}

static void skip_space(reader_t *r) {
    while (r->at < r->end && (*r->at == ' ' || *r->at == '\t' || *r->at == '\n' || *r->at == '\r'))
        r->at++;
}

static bool expect(reader_t *r, uint8_t c, const char *what) {
    skip_space(r);
    if (r->at >= r->end || *r->at != c) return fail(r, what);
    r->at++;
    return true;
}

/* Reads a JSON string into a new NUL-terminated buffer (*out, *out_len). The input is valid
 * UTF-8 (the canonical ABI guarantees it), and the escapes read here produce ASCII, so the
 * result is valid UTF-8 too. \u escapes are refused: names never need them. */
static bool read_string(reader_t *r, char **out, size_t *out_len) {
    if (!expect(r, '"', "expected a string")) return false;
    const uint8_t *from = r->at;
    /* The decoded string is never longer than its encoding. */
    size_t limit = 0;
    while (from + limit < r->end && from[limit] != '"') {
        if (from[limit] == '\\' && from + limit + 1 < r->end) limit++;
        limit++;
    }
    if (from + limit >= r->end) return fail(r, "unterminated string");
    char *text = malloc(limit + 1);
    if (text == NULL) return fail(r, "out of memory");
    size_t len = 0;
    while (*r->at != '"') {
        uint8_t c = *r->at++;
        if (c < 0x20) {
            free(text);
            r->at--;
            return fail(r, "control character in a string");
        }
        if (c == '\\') {
            uint8_t e = *r->at++; /* in bounds: the scan above saw the closing quote after it */
            switch (e) {
            case '"': case '\\': case '/': c = e; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            default:
                free(text);
                r->at -= 2;
                return fail(r, e == 'u' ? "\\u escapes are not supported (write the character)"
                                        : "invalid escape in a string");
            }
        }
        text[len++] = (char)c;
    }
    r->at++; /* the closing quote */
    text[len] = '\0';
    *out = text;
    *out_len = len;
    return true;
}

/* Reads a JSON number that must be a whole number from 1 to UINT32_MAX. */
static bool read_dimension(reader_t *r, uint32_t *out) {
    skip_space(r);
    const uint8_t *from = r->at;
    uint64_t value = 0;
    while (r->at < r->end && *r->at >= '0' && *r->at <= '9') {
        value = value * 10 + (uint64_t)(*r->at - '0');
        if (value > UINT32_MAX) {
            r->at = from;
            return fail(r, "`dimension` is too large (at most 4294967295)");
        }
        r->at++;
    }
    bool more = r->at < r->end && (*r->at == '.' || *r->at == 'e' || *r->at == 'E');
    if (r->at == from || more || value == 0 || (*from == '0' && r->at - from > 1)) {
        r->at = from;
        return fail(r, "`dimension` must be a whole number from 1 to 4294967295");
    }
    *out = (uint32_t)value;
    return true;
}

/* Parses `settings` into `s`. Empty (or all blank) settings leave the defaults. On failure
 * `r->why` says why, and whatever was allocated is freed. */
static bool parse_settings(const command_module_string_t *settings, settings_t *s, reader_t *r) {
    memset(s, 0, sizeof *s);
    r->start = r->at = settings->ptr;
    r->end = settings->ptr + settings->len;
    r->why[0] = '\0';
    skip_space(r);
    if (r->at == r->end) return true;
    if (!expect(r, '{', "expected a JSON object")) return false;
    skip_space(r);
    bool first = true;
    while (r->at < r->end && *r->at != '}') {
        if (!first && !expect(r, ',', "expected ',' or '}'")) goto fail;
        first = false;
        skip_space(r);
        const uint8_t *key_at = r->at;
        char *key = NULL;
        size_t key_len = 0;
        if (!read_string(r, &key, &key_len)) goto fail;
        bool is_model = key_len == 5 && memcmp(key, "model", 5) == 0;
        bool is_dimension = key_len == 9 && memcmp(key, "dimension", 9) == 0;
        free(key);
        if (!is_model && !is_dimension) {
            r->at = key_at;
            fail(r, "unknown key (the keys are \"model\" and \"dimension\")");
            goto fail;
        }
        if ((is_model && s->model != NULL) || (is_dimension && s->has_dimension)) {
            r->at = key_at;
            fail(r, "duplicate key");
            goto fail;
        }
        if (!expect(r, ':', "expected ':'")) goto fail;
        if (is_model) {
            skip_space(r);
            const uint8_t *value_at = r->at;
            if (!read_string(r, &s->model, &s->model_len)) goto fail;
            if (s->model_len == 0) {
                r->at = value_at;
                fail(r, "`model` must be a repository id like \"org/name\"");
                goto fail;
            }
        } else {
            if (!read_dimension(r, &s->dimension)) goto fail;
            s->has_dimension = true;
        }
        skip_space(r);
    }
    if (!expect(r, '}', "expected '}'")) goto fail;
    skip_space(r);
    if (r->at != r->end) {
        fail(r, "unexpected text after the object");
        goto fail;
    }
    return true;
fail:
    free(s->model);
    s->model = NULL;
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */

bool exports_modelhost_models_lifecycle_initialize(command_module_string_t *settings,
                                                   exports_modelhost_models_lifecycle_error_t *err) {
    settings_t s;
    reader_t r;
    bool parsed = parse_settings(settings, &s, &r);
    command_module_string_free(settings); /* ours: see the ownership note at the top */
    if (!parsed) {
        char message[sizeof r.why + 128];
        snprintf(message, sizeof message, "invalid settings: %s; expected a JSON object like %s",
                 r.why, SETTINGS_EXAMPLE);
        err->code = MODELHOST_MODELS_TYPES_ERROR_CODE_INVALID_REQUIREMENT;
        command_module_string_dup(&err->message, message); /* freed by the post-return */
        err->details.is_some = false;
        return false;
    }

    /* The specification's defaults: every option none, every number 0, every flag false, except
     * cache_embeddings; device auto and precision exact. The requirement borrows its strings. */
    modelhost_models_types_model_requirement_t requirement;
    memset(&requirement, 0, sizeof requirement);
    requirement.model_type = MODELHOST_MODELS_TYPES_MODEL_TYPE_EMBEDDING;
    if (s.model != NULL) {
        requirement.name.ptr = (uint8_t *)s.model;
        requirement.name.len = s.model_len;
    } else {
        command_module_string_set(&requirement.name, DEFAULT_MODEL);
    }
    requirement.device.tag = MODELHOST_MODELS_TYPES_DEVICE_AUTO;
    if (s.has_dimension || s.model == NULL) {
        requirement.dimension.is_some = true;
        requirement.dimension.val = s.has_dimension ? s.dimension : DEFAULT_DIMENSION;
    }
    requirement.cache_embeddings = true;
    requirement.precision = MODELHOST_MODELS_TYPES_PRECISION_EXACT;

    command_module_string_t id;
    command_module_string_set(&id, MODEL_ID);
    modelhost_models_types_registration_t registration;
    host_error_t host_error;
    bool ok = modelhost_models_model_manager_register_model(&id, &requirement, &registration,
                                                            &host_error);
    free(s.model);
    if (!ok) {
        /* Hand the host's error on unchanged: it came from our cabi_realloc, so the post-return
         * function frees it like any other error of ours. */
        *err = host_error;
        return false;
    }
    modelhost_models_types_registration_free(&registration);
    registered = true;
    return true;
}

void exports_modelhost_models_lifecycle_cleanup(void) {
    if (!registered) return;
    registered = false;
    command_module_string_t id;
    command_module_string_set(&id, MODEL_ID);
    modelhost_models_types_release_t release;
    host_error_t host_error;
    if (modelhost_models_model_manager_release_model(&id, &release, &host_error)) {
        modelhost_models_types_release_free(&release);
    } else {
        /* Not fatal: the host drops the module's references after cleanup anyway. */
        print_host_error(&host_error);
        modelhost_models_types_error_free(&host_error);
    }
}

/* ---------------------------------------------------------------------------------------------
 * run: stdin lines in, JSON vectors out
 * ------------------------------------------------------------------------------------------- */

/* Up to LINES_PER_CALL lines waiting to be embedded. Each `texts[i].ptr` is a malloc'd buffer
 * owned here (getline's, possibly with len 0), freed by batch_clear: not by the generated
 * command_module_string_free, which skips empty strings and would leak those buffers. */
typedef struct {
    command_module_string_t texts[LINES_PER_CALL];
    size_t count;
} batch_t;

static void batch_clear(batch_t *batch) {
    for (size_t i = 0; i < batch->count; i++) {
        free(batch->texts[i].ptr);
        batch->texts[i].ptr = NULL;
        batch->texts[i].len = 0;
    }
    batch->count = 0;
}

/* Whether bytes[0..len) is valid UTF-8 (the canonical ABI accepts nothing else in a string). */
static bool valid_utf8(const uint8_t *bytes, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t b = bytes[i];
        size_t extra;
        uint32_t cp;
        if (b < 0x80) { i++; continue; }
        else if (b >= 0xC2 && b <= 0xDF) { extra = 1; cp = b & 0x1F; }
        else if (b >= 0xE0 && b <= 0xEF) { extra = 2; cp = b & 0x0F; }
        else if (b >= 0xF0 && b <= 0xF4) { extra = 3; cp = b & 0x07; }
        else return false;
        if (len - i <= extra) return false;
        for (size_t k = 1; k <= extra; k++) {
            uint8_t c = bytes[i + k];
            if ((c & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (c & 0x3F);
        }
        /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

/* Prints one vector as a JSON array. %.9g round-trips every f32; JSON has no NaN or infinity,
 * so those print as null (as serde_json does). */
static void print_vector(const command_module_list_f32_t *vector) {
    putchar('[');
    for (size_t i = 0; i < vector->len; i++) {
        if (i > 0) putchar(',');
        float v = vector->ptr[i];
        if (isfinite(v))
            printf("%.9g", (double)v);
        else
            fputs("null", stdout);
    }
    fputs("]\n", stdout);
}

/* Embeds the batch and prints its vectors; false (with the error on stderr) when the host
 * refused. The batch stays owned by the caller. */
static bool embed_batch(const batch_t *batch) {
    command_module_string_t id;
    command_module_string_set(&id, MODEL_ID);
    command_module_list_string_t texts = {.ptr = (command_module_string_t *)batch->texts,
                                          .len = batch->count};
    modelhost_models_types_embeddings_t result;
    host_error_t host_error;
    if (!modelhost_models_model_manager_generate_embeddings(&id, &texts, &result, &host_error)) {
        print_host_error(&host_error);
        modelhost_models_types_error_free(&host_error);
        return false;
    }
    bool ok = result.embeddings.len == batch->count;
    if (ok) {
        for (size_t i = 0; i < result.embeddings.len; i++) print_vector(&result.embeddings.ptr[i]);
    } else {
        char message[128];
        snprintf(message, sizeof message, "the host returned %zu vectors for %zu texts",
                 result.embeddings.len, batch->count);
        print_error("internal", (const uint8_t *)message, strlen(message), NULL);
    }
    modelhost_models_types_embeddings_free(&result);
    return ok;
}

bool exports_wasi_cli_run_run(void) {
    batch_t batch = {.count = 0};
    char *line = NULL; /* getline's buffer; handed to the batch once a line is read */
    size_t capacity = 0;
    size_t line_number = 0;
    bool ok = true;
    ssize_t got;
    errno = 0;
    while (ok && (got = getline(&line, &capacity, stdin)) != -1) {
        line_number++;
        size_t len = (size_t)got;
        /* Like Rust's BufRead::lines: drop "\n" or "\r\n" at the end. */
        if (len > 0 && line[len - 1] == '\n') {
            len--;
            if (len > 0 && line[len - 1] == '\r') len--;
        }
        if (!valid_utf8((const uint8_t *)line, len)) {
            char message[160];
            snprintf(message, sizeof message,
                     "line %zu of stdin is not valid UTF-8; convert the input to UTF-8 first",
                     line_number);
            print_error("invalid-input", (const uint8_t *)message, strlen(message), NULL);
            ok = false;
            break;
        }
        batch.texts[batch.count].ptr = (uint8_t *)line;
        batch.texts[batch.count].len = len;
        batch.count++;
        line = NULL; /* the batch owns it now; getline allocates the next one */
        capacity = 0;
        if (batch.count == LINES_PER_CALL) {
            ok = embed_batch(&batch);
            batch_clear(&batch);
        }
        errno = 0;
    }
    if (ok && ferror(stdin)) {
        char message[160];
        snprintf(message, sizeof message, "cannot read stdin: %s", strerror(errno));
        print_error("invalid-input", (const uint8_t *)message, strlen(message), NULL);
        ok = false;
    }
    if (ok && batch.count > 0) ok = embed_batch(&batch);
    batch_clear(&batch);
    free(line);
    /* Nothing flushes stdout after `run` returns (there is no exit in a reactor): flush here. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (ok) {
            char message[160];
            snprintf(message, sizeof message, "cannot write stdout: %s", strerror(errno));
            print_error("internal", (const uint8_t *)message, strlen(message), NULL);
        }
        ok = false;
    }
    return ok;
}
