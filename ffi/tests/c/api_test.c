/*
 * Every function of include/sectorcrypt.h, called from C as a storage filter would call it: the
 * cipher against IEEE 1619 vector 2 and against itself (in place, out of place, with a tweak step,
 * from two threads), encrypted disks and groups on files and on the caller's stores, and each
 * refusal (NULL, bad sizes, overlap, wrong key, no disk, read-only, a failing store).
 *
 * Usage: api_test KDK OTHER_KDK DIR LUKS   (two native key files, an empty directory, and a LUKS2
 * image made by cryptsetup with the passphrase "luks passphrase")
 * Built with -Wall -Wextra -Werror and run under valgrind by ffi/tests/c_api.rs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sectorcrypt.h"

static int failures;

#define CHECK(cond)                                                                                  \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    sc_last_error());                                                                \
            failures++;                                                                              \
        }                                                                                            \
    } while (0)

/* A call that must fail with `code` and leave a message. */
#define REFUSED(call, code)                                                                 \
    do {                                                                                    \
        int rc_ = (call);                                                                   \
        if (rc_ != (code)) {                                                                \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
                    #call, sc_strerror(rc_), sc_strerror(code), sc_last_error());           \
            failures++;                                                                     \
        } else {                                                                            \
            CHECK(sc_last_error()[0] != '\0');                                              \
        }                                                                                   \
    } while (0)

/* A deep rekey's progress: counts the calls and keeps the total. */
static void count_progress(void *ctx, uint64_t done, uint64_t total) {
    uint64_t *steps = ctx;
    steps[0]++;
    steps[1] = total;
    (void)done;
}

static void fill(uint8_t *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((i * 131u + seed * 7u + (i >> 9)) & 0xff);
    }
}

static void hex(const char *text, uint8_t *out, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned byte = 0;
        sscanf(text + 2 * i, "%2x", &byte);
        out[i] = (uint8_t)byte;
    }
}

/* ---- the cipher ---- */

static const char *BACKENDS[] = {NULL, "auto", "portable", "aesni", "vaes256", "vaes512"};

static void test_vector_2(void) {
    uint8_t key[32], plain[32], expected[32], buf[32], out[32];
    hex("1111111111111111111111111111111122222222222222222222222222222222", key, 32);
    hex("4444444444444444444444444444444444444444444444444444444444444444", plain, 32);
    hex("c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0", expected, 32);
    for (size_t b = 0; b < sizeof BACKENDS / sizeof *BACKENDS; b++) {
        sc_xts *xts = NULL;
        int rc = sc_xts_new(key, sizeof key, BACKENDS[b], &xts);
        if (rc == SC_EUNSUPPORTED) {
            continue; /* this CPU (or valgrind's) lacks the backend */
        }
        CHECK(rc == SC_OK && xts != NULL);
        /* One 32-byte data unit (shorter than data_unit) numbered 0x3333333333. */
        memcpy(buf, plain, sizeof buf);
        CHECK(sc_xts_encrypt(xts, buf, sizeof buf, 512, 0x3333333333ull) == SC_OK);
        CHECK(memcmp(buf, expected, sizeof buf) == 0);
        CHECK(sc_xts_decrypt(xts, buf, sizeof buf, 512, 0x3333333333ull) == SC_OK);
        CHECK(memcmp(buf, plain, sizeof buf) == 0);
        CHECK(sc_xts_encrypt_to(xts, plain, out, sizeof out, 512, 0x3333333333ull) == SC_OK);
        CHECK(memcmp(out, expected, sizeof out) == 0);
        CHECK(sc_xts_decrypt_to(xts, expected, out, sizeof out, 512, 0x3333333333ull) == SC_OK);
        CHECK(memcmp(out, plain, sizeof out) == 0);
        sc_xts_free(xts);
    }
}

static void test_in_and_out_of_place(void) {
    enum { LEN = 7 * 4096 + 100 };
    uint8_t key[64];
    fill(key, sizeof key, 1);
    uint8_t *plain = malloc(LEN), *a = malloc(LEN), *b = malloc(LEN), *c = malloc(LEN);
    fill(plain, LEN, 2);
    for (size_t n = 0; n < sizeof BACKENDS / sizeof *BACKENDS; n++) {
        sc_xts *xts = NULL;
        if (sc_xts_new(key, sizeof key, BACKENDS[n], &xts) != SC_OK) {
            continue;
        }
        memcpy(a, plain, LEN);
        CHECK(sc_xts_encrypt(xts, a, LEN, 4096, 1000) == SC_OK);
        CHECK(memcmp(a, plain, LEN) != 0);
        memset(b, 0xee, LEN);
        CHECK(sc_xts_encrypt_to(xts, plain, b, LEN, 4096, 1000) == SC_OK);
        CHECK(memcmp(a, b, LEN) == 0);
        /* src == dst is in place. */
        memcpy(c, plain, LEN);
        CHECK(sc_xts_encrypt_to(xts, c, c, LEN, 4096, 1000) == SC_OK);
        CHECK(memcmp(a, c, LEN) == 0);
        CHECK(sc_xts_decrypt_to(xts, b, c, LEN, 4096, 1000) == SC_OK);
        CHECK(memcmp(c, plain, LEN) == 0);
        CHECK(sc_xts_decrypt(xts, a, LEN, 4096, 1000) == SC_OK);
        CHECK(memcmp(a, plain, LEN) == 0);
        /* A tweak step of 8: unit i has number 16 + 8 i, the same as one call per unit. */
        memcpy(a, plain, 2 * 4096);
        CHECK(sc_xts_encrypt_step(xts, a, 2 * 4096, 4096, 16, 8) == SC_OK);
        memcpy(b, plain, 2 * 4096);
        CHECK(sc_xts_encrypt(xts, b, 4096, 4096, 16) == SC_OK);
        CHECK(sc_xts_encrypt(xts, b + 4096, 4096, 4096, 24) == SC_OK);
        CHECK(memcmp(a, b, 2 * 4096) == 0);
        CHECK(sc_xts_decrypt_step(xts, a, 2 * 4096, 4096, 16, 8) == SC_OK);
        CHECK(memcmp(a, plain, 2 * 4096) == 0);
        /* Zero bytes: nothing to do, and the buffer may be NULL. */
        CHECK(sc_xts_encrypt(xts, NULL, 0, 4096, 0) == SC_OK);
        sc_xts_free(xts);
    }
    free(plain);
    free(a);
    free(b);
    free(c);
}

static void test_cipher_refusals(void) {
    uint8_t key[64], equal[64], buf[1024];
    fill(key, sizeof key, 3);
    memset(equal, 0x42, sizeof equal);
    fill(buf, sizeof buf, 4);
    uint8_t before[1024];
    memcpy(before, buf, sizeof buf);
    sc_xts *xts = NULL;
    REFUSED(sc_xts_new(NULL, 64, NULL, &xts), SC_EINVAL);
    REFUSED(sc_xts_new(key, 33, NULL, &xts), SC_EINVAL);
    REFUSED(sc_xts_new(equal, 64, NULL, &xts), SC_EINVAL);
    REFUSED(sc_xts_new(key, 64, "avx9000", &xts), SC_EINVAL);
    REFUSED(sc_xts_new(key, 64, NULL, NULL), SC_EINVAL);
    CHECK(xts == NULL);
    CHECK(sc_xts_new(key, 64, NULL, &xts) == SC_OK);
    REFUSED(sc_xts_encrypt(NULL, buf, 512, 512, 0), SC_EINVAL);
    REFUSED(sc_xts_encrypt(xts, NULL, 512, 512, 0), SC_EINVAL);
    REFUSED(sc_xts_encrypt(xts, buf, 512, 1000, 0), SC_EINVAL);    /* not a power of two */
    REFUSED(sc_xts_encrypt(xts, buf, 512, 256, 0), SC_EINVAL);     /* below 512 */
    REFUSED(sc_xts_encrypt(xts, buf, 512 + 8, 512, 0), SC_EINVAL); /* a last unit of 8 bytes */
    REFUSED(sc_xts_encrypt(xts, buf, 8, 512, 0), SC_EINVAL);
    REFUSED(sc_xts_encrypt(xts, buf, 1024, 512, UINT64_MAX), SC_EINVAL); /* unit 2^64 */
    REFUSED(sc_xts_encrypt_step(xts, buf, 1024, 512, 0, 0), SC_EINVAL);
    REFUSED(sc_xts_encrypt_to(xts, buf, buf + 16, 512, 512, 0), SC_EINVAL); /* overlap */
    REFUSED(sc_xts_decrypt_to(xts, buf + 16, buf, 512, 512, 0), SC_EINVAL);
    REFUSED(sc_xts_encrypt_to(xts, NULL, buf, 512, 512, 0), SC_EINVAL);
    CHECK(memcmp(buf, before, sizeof buf) == 0); /* nothing refused touched the buffer */
    CHECK(strcmp(sc_strerror(SC_EINVAL), "SC_EINVAL") == 0);
    CHECK(strcmp(sc_strerror(SC_EINTERNAL), "SC_EINTERNAL") == 0);
    CHECK(strcmp(sc_strerror(12345), "SC_E?") == 0);
    CHECK(sc_last_errno() == 0);
    CHECK(sc_last_error_transient() == 0);
    sc_xts_free(xts);
    sc_xts_free(NULL);
}

struct job {
    const sc_xts *xts;
    uint8_t *buf;
    size_t len;
    uint64_t first;
    int rc;
};

static void *encrypt_job(void *arg) {
    struct job *job = arg;
    for (int i = 0; i < 20 && job->rc == SC_OK; i++) {
        job->rc = sc_xts_encrypt(job->xts, job->buf, job->len, 4096, job->first);
        if (job->rc == SC_OK) {
            job->rc = sc_xts_decrypt(job->xts, job->buf, job->len, 4096, job->first);
        }
    }
    if (job->rc == SC_OK) {
        job->rc = sc_xts_encrypt(job->xts, job->buf, job->len, 4096, job->first);
    }
    return NULL;
}

static void test_shared_between_threads(void) {
    enum { LEN = 16 * 4096 };
    uint8_t key[32];
    fill(key, sizeof key, 5);
    sc_xts *xts = NULL;
    CHECK(sc_xts_new(key, sizeof key, NULL, &xts) == SC_OK);
    uint8_t *bufs[2] = {malloc(LEN), malloc(LEN)}, *expected = malloc(LEN);
    struct job jobs[2];
    pthread_t threads[2];
    for (int t = 0; t < 2; t++) {
        fill(bufs[t], LEN, 6);
        jobs[t] = (struct job){xts, bufs[t], LEN, 77, SC_OK};
        pthread_create(&threads[t], NULL, encrypt_job, &jobs[t]);
    }
    fill(expected, LEN, 6);
    CHECK(sc_xts_encrypt(xts, expected, LEN, 4096, 77) == SC_OK);
    for (int t = 0; t < 2; t++) {
        pthread_join(threads[t], NULL);
        CHECK(jobs[t].rc == SC_OK);
        CHECK(memcmp(bufs[t], expected, LEN) == 0);
        free(bufs[t]);
    }
    free(expected);
    sc_xts_free(xts);
}

/* ---- volumes on files ---- */

static char provider[4200], other_provider[4200];

static void path_in(char *out, size_t size, const char *dir, const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
}

static void test_disk_files(const char *dir) {
    char path[4200], not_a_disk[4200];
    path_in(path, sizeof path, dir, "vm1.disk");
    path_in(not_a_disk, sizeof not_a_disk, dir, "plain.img");
    const uint64_t size = 8u << 20;
    CHECK(sc_disk_create(path, size, provider, NULL) == SC_OK);
    REFUSED(sc_disk_create(path, size, provider, NULL), SC_EEXIST);
    REFUSED(sc_disk_create(NULL, size, provider, NULL), SC_EINVAL);
    REFUSED(sc_disk_create(not_a_disk, 1000, provider, NULL), SC_EINVAL); /* not whole units */
    REFUSED(sc_disk_create(not_a_disk, size, "nosuch:x", NULL), SC_EINVAL);

    sc_volume *v = NULL;
    CHECK(sc_disk_open(path, provider, SC_OPEN_WRITE | SC_OPEN_BUFFERED, &v) == SC_OK);
    CHECK(sc_volume_size(v) == size);
    struct sc_volume_info info;
    CHECK(sc_volume_get_info(v, &info) == SC_OK);
    CHECK(info.size == size && info.data_unit == 4096 && info.key_bits == 256);
    CHECK(info.mode == SC_MODE_DISK && info.members == 1 && info.generation == 1 && info.writable == 1);
    CHECK(info.backend != NULL && info.backend[0] != '\0');
    CHECK(sc_volume_notice_count(v) <= 4);
    CHECK(sc_volume_notice(v, 1000) == NULL);
    for (size_t i = 0; i < sc_volume_notice_count(v); i++) {
        CHECK(sc_volume_notice(v, i) != NULL);
    }

    /* Any offset and length: a write over parts of three data units. */
    enum { LEN = 9000 };
    uint8_t *data = malloc(LEN), *back = malloc(LEN);
    fill(data, LEN, 7);
    CHECK(sc_volume_write(v, data, LEN, 1000) == SC_OK);
    CHECK(sc_volume_flush(v) == SC_OK);
    CHECK(sc_volume_read(v, back, LEN, 1000) == SC_OK);
    CHECK(memcmp(data, back, LEN) == 0);
    /* Untouched bytes read as zeros; discarded ones too. */
    CHECK(sc_volume_read(v, back, 1000, 0) == SC_OK);
    for (int i = 0; i < 1000; i++) {
        CHECK(back[i] == 0);
        if (back[i] != 0) {
            break;
        }
    }
    CHECK(sc_volume_discard(v, 0, 16384) == SC_OK);
    CHECK(sc_volume_read(v, back, LEN, 1000) == SC_OK);
    for (int i = 0; i < LEN; i++) {
        if (back[i] != (i + 1000 < 16384 ? 0 : data[i])) {
            CHECK(!"discarded bytes read back wrong");
            break;
        }
    }
    CHECK(sc_volume_write(v, data, LEN, 1000) == SC_OK);
    /* Deep rekey: a new data key, the data the same, the generation next. */
    uint64_t steps[2] = {0, 0};
    CHECK(sc_volume_deep_rekey(v, provider, "c-deep", count_progress, steps) == SC_OK);
    CHECK(steps[0] > 0 && steps[1] == size);
    CHECK(sc_volume_read(v, back, LEN, 1000) == SC_OK);
    CHECK(memcmp(data, back, LEN) == 0);
    /* Asked to stop (here before it starts): SC_STOPPED, the disk mid-rekey and usable; a rerun ends it. */
    CHECK(sc_volume_deep_rekey_stop(v) == SC_OK);
    CHECK(sc_volume_deep_rekey(v, provider, NULL, NULL, NULL) == SC_STOPPED);
    CHECK(sc_volume_read(v, back, LEN, 1000) == SC_OK);
    CHECK(memcmp(data, back, LEN) == 0);
    CHECK(sc_volume_deep_rekey(v, provider, NULL, NULL, NULL) == SC_OK);
    CHECK(sc_volume_read(v, back, LEN, 1000) == SC_OK);
    CHECK(memcmp(data, back, LEN) == 0);
    REFUSED(sc_volume_deep_rekey_stop(NULL), SC_EINVAL);
    REFUSED(sc_volume_deep_rekey(NULL, provider, NULL, NULL, NULL), SC_EINVAL);
    REFUSED(sc_volume_deep_rekey(v, "vault:x", NULL, NULL, NULL), SC_EINVAL);
    REFUSED(sc_volume_read(v, back, 2, size - 1), SC_EINVAL);
    REFUSED(sc_volume_write(v, data, 2, size - 1), SC_EINVAL);
    REFUSED(sc_volume_read(v, NULL, 10, 0), SC_EINVAL);
    REFUSED(sc_volume_read(NULL, back, 10, 0), SC_EINVAL);
    REFUSED(sc_volume_get_info(v, NULL), SC_EINVAL);
    REFUSED(sc_volume_flush(NULL), SC_EINVAL);
    REFUSED(sc_volume_discard(NULL, 0, 1), SC_EINVAL);
    CHECK(sc_volume_size(NULL) == 0);
    CHECK(sc_volume_notice_count(NULL) == 0);
    /* A second writer is refused while the first holds the disk. */
    sc_volume *second = NULL;
    REFUSED(sc_disk_open(path, provider, SC_OPEN_WRITE, &second), SC_EBUSY);
    CHECK(sc_last_error_transient() == 1);
    sc_volume_close(v);
    sc_volume_close(NULL);

    /* The file holds ciphertext: the plaintext's first 64 bytes are nowhere in it. */
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f) {
        uint8_t *raw = malloc(1 << 20);
        CHECK(fseek(f, 1 << 20, SEEK_SET) == 0);
        size_t got = fread(raw, 1, 1 << 20, f);
        CHECK(got == 1 << 20);
        for (size_t i = 0; i + 64 <= got; i++) {
            if (memcmp(raw + i, data, 64) == 0) {
                CHECK(!"plaintext found in the disk file");
                break;
            }
        }
        free(raw);
        fclose(f);
    }

    /* Read-only: reads work, writes are refused. */
    CHECK(sc_disk_open(path, provider, 0, &v) == SC_OK);
    CHECK(sc_volume_read(v, back, LEN, 1000) == SC_OK);
    CHECK(memcmp(data, back, LEN) == 0);
    REFUSED(sc_volume_write(v, data, 10, 0), SC_EPERM);
    CHECK(sc_volume_get_info(v, &info) == SC_OK && info.writable == 0);
    sc_volume_close(v);

    /* The refusals of open: wrong key, no disk, nothing there, bad arguments. */
    v = NULL;
    REFUSED(sc_disk_open(path, other_provider, 0, &v), SC_EREFUSED); /* another KDK */
    /* Zeros where both header copies would be: no sectorcrypt disk. A copy of the disk's first 8 KiB
     * alone: a sectorcrypt disk whose second header copy and data are cut off. */
    f = fopen(not_a_disk, "wb");
    if (f) {
        uint8_t *zeros = calloc(1, 2u << 20);
        fwrite(zeros, 1, 2u << 20, f);
        fclose(f);
        free(zeros);
    }
    REFUSED(sc_disk_open(not_a_disk, provider, 0, &v), SC_EINVAL);
    char cut[4200];
    path_in(cut, sizeof cut, dir, "cut.disk");
    FILE *from = fopen(path, "rb"), *to = fopen(cut, "wb");
    if (from && to) {
        uint8_t head[8192];
        CHECK(fread(head, 1, sizeof head, from) == sizeof head);
        fwrite(head, 1, sizeof head, to);
    }
    if (from) {
        fclose(from);
    }
    if (to) {
        fclose(to);
    }
    REFUSED(sc_disk_open(cut, provider, 0, &v), SC_ECORRUPT);
    char missing[4200];
    path_in(missing, sizeof missing, dir, "missing.disk");
    REFUSED(sc_disk_open(missing, provider, 0, &v), SC_ENOTFOUND);
    CHECK(sc_last_errno() == ENOENT);
    REFUSED(sc_disk_open(path, provider, 0x80, &v), SC_EINVAL);
    REFUSED(sc_disk_open(path, NULL, 0, &v), SC_EINVAL);
    REFUSED(sc_disk_open(path, provider, 0, NULL), SC_EINVAL);
    CHECK(v == NULL);
    free(data);
    free(back);
}

static void test_group_files(const char *dir) {
    char a[4200], b[4200];
    path_in(a, sizeof a, dir, "ds-a.member");
    path_in(b, sizeof b, dir, "ds-b.member");
    const char *members[] = {a, b};
    const char *reversed[] = {b, a};
    struct sc_create_options options = {512, 128, 65536, "group-key"};
    CHECK(sc_group_create(members, 2, 4u << 20, provider, &options) == SC_OK);
    REFUSED(sc_group_create(members, 0, 4u << 20, provider, &options), SC_EINVAL);
    struct sc_create_options bad = {512, 192, 0, NULL};
    char c[4200];
    path_in(c, sizeof c, dir, "ds-c.member");
    const char *third[] = {c};
    REFUSED(sc_group_create(third, 1, 4u << 20, provider, &bad), SC_EINVAL);

    sc_volume *v = NULL;
    CHECK(sc_group_open(reversed, 2, provider, SC_OPEN_WRITE, &v) == SC_OK);
    struct sc_volume_info info;
    CHECK(sc_volume_get_info(v, &info) == SC_OK);
    CHECK(info.mode == SC_MODE_GROUP && info.members == 2 && info.data_unit == 512 && info.key_bits == 128);
    CHECK(info.size == 8u << 20);
    /* Across the stripe boundary at 64 KiB, onto the second member. */
    enum { LEN = 70000 };
    uint8_t *data = malloc(LEN), *back = malloc(LEN);
    fill(data, LEN, 8);
    CHECK(sc_volume_write(v, data, LEN, 30000) == SC_OK);
    CHECK(sc_volume_read(v, back, LEN, 30000) == SC_OK);
    CHECK(memcmp(data, back, LEN) == 0);
    sc_volume_close(v);
    REFUSED(sc_group_open(members, 1, provider, 0, &v), SC_ENOTFOUND); /* a member missing */
    free(data);
    free(back);
}

/* ---- volumes on the caller's stores ---- */

struct memstore {
    uint8_t *bytes;
    size_t size;
    int fail_reads; /* errno to return from reads, 0 for none */
    int flushes, discards;
};

static int mem_read(void *ctx, void *buf, size_t len, uint64_t offset) {
    struct memstore *m = ctx;
    if (m->fail_reads) {
        return m->fail_reads;
    }
    if (offset > m->size || len > m->size - offset) {
        return EIO;
    }
    memcpy(buf, m->bytes + offset, len);
    return 0;
}

static int mem_write(void *ctx, const void *buf, size_t len, uint64_t offset) {
    struct memstore *m = ctx;
    if (offset > m->size || len > m->size - offset) {
        return -EIO; /* the sign is ignored */
    }
    memcpy(m->bytes + offset, buf, len);
    return 0;
}

static int mem_flush(void *ctx) {
    ((struct memstore *)ctx)->flushes++;
    return 0;
}

static int mem_discard(void *ctx, uint64_t offset, uint64_t len) {
    struct memstore *m = ctx;
    if (offset > m->size || len > m->size - offset) {
        return EIO;
    }
    memset(m->bytes + offset, 0, len);
    m->discards++;
    return 0;
}

static struct sc_storage store_of(struct memstore *m, const char *name) {
    struct sc_storage s = {m, name, m->size, mem_read, mem_write, mem_flush, mem_discard};
    return s;
}

static void test_storage(void) {
    const uint64_t data_size = 4u << 20;
    struct memstore m = {calloc(1, (1u << 20) + data_size), (1u << 20) + data_size, 0, 0, 0};
    struct sc_storage s = store_of(&m, "memory disk");
    CHECK(sc_disk_create_storage(&s, data_size, provider, NULL) == SC_OK);
    REFUSED(sc_disk_create_storage(&s, data_size + 4096, provider, NULL), SC_EINVAL); /* too small */

    sc_volume *v = NULL;
    CHECK(sc_disk_open_storage(&s, provider, SC_OPEN_WRITE, &v) == SC_OK);
    enum { LEN = 20000 };
    uint8_t *data = malloc(LEN), *back = malloc(LEN);
    fill(data, LEN, 9);
    CHECK(sc_volume_write(v, data, LEN, 12345) == SC_OK);
    CHECK(sc_volume_read(v, back, LEN, 12345) == SC_OK);
    CHECK(memcmp(data, back, LEN) == 0);
    CHECK(sc_volume_flush(v) == SC_OK);
    CHECK(m.flushes > 0);
    CHECK(sc_volume_discard(v, 16384, 8192) == SC_OK);
    CHECK(m.discards == 1);
    sc_volume_close(v);

    /* A store that fails: the OS error comes through. */
    m.fail_reads = EIO;
    REFUSED(sc_disk_open_storage(&s, provider, 0, &v), SC_EIO);
    CHECK(sc_last_errno() == EIO);
    m.fail_reads = 0;
    struct sc_storage no_read = s;
    no_read.read_at = NULL;
    REFUSED(sc_disk_open_storage(&no_read, provider, 0, &v), SC_EINVAL);
    REFUSED(sc_disk_open_storage(NULL, provider, 0, &v), SC_EINVAL);

    /* A group of two stores, opened in the other order, without optional functions. */
    struct memstore ma = {calloc(1, (1u << 20) + data_size), (1u << 20) + data_size, 0, 0, 0};
    struct memstore mb = {calloc(1, (1u << 20) + data_size), (1u << 20) + data_size, 0, 0, 0};
    struct sc_storage members[2] = {store_of(&ma, "a"), store_of(&mb, "b")};
    members[1].flush = NULL;
    members[1].discard = NULL;
    struct sc_create_options options = {4096, 256, 1u << 20, NULL};
    CHECK(sc_group_create_storage(members, 2, data_size, provider, &options) == SC_OK);
    struct sc_storage swapped[2] = {members[1], members[0]};
    CHECK(sc_group_open_storage(swapped, 2, provider, SC_OPEN_WRITE, &v) == SC_OK);
    CHECK(sc_volume_size(v) == 2 * data_size);
    CHECK(sc_volume_write(v, data, LEN, (1u << 20) - 5000) == SC_OK);
    CHECK(sc_volume_read(v, back, LEN, (1u << 20) - 5000) == SC_OK);
    CHECK(memcmp(data, back, LEN) == 0);
    CHECK(sc_volume_discard(v, 1u << 20, 1u << 20) == SC_OK); /* on member b: zeros written */
    CHECK(sc_volume_flush(v) == SC_OK);
    sc_volume_close(v);
    REFUSED(sc_group_open_storage(members, 1, provider, 0, &v), SC_ENOTFOUND);

    free(ma.bytes);
    free(mb.bytes);
    free(m.bytes);
    free(data);
    free(back);
}

/* ---- LUKS volumes ---- */

static void test_luks(const char *path) {
    static const char pass[] = "luks passphrase";
    sc_volume *v = NULL;
    REFUSED(sc_luks_open(path, (const uint8_t *)"wrong", 5, 0, &v), SC_EKEY);
    REFUSED(sc_luks_open(path, NULL, 5, 0, &v), SC_EINVAL);
    CHECK(sc_luks_open(path, (const uint8_t *)pass, strlen(pass), SC_OPEN_WRITE, &v) == SC_OK);
    struct sc_volume_info info;
    CHECK(sc_volume_get_info(v, &info) == SC_OK);
    CHECK(info.mode == SC_MODE_LUKS && info.members == 1 && info.writable == 1);
    enum { LEN = 10000 };
    uint8_t *data = malloc(LEN), *back = malloc(LEN);
    fill(data, LEN, 11);
    CHECK(sc_volume_write(v, data, LEN, 3000) == SC_OK);
    CHECK(sc_volume_flush(v) == SC_OK);
    sc_volume_close(v);

    /* The same volume from memory, through the caller's functions. */
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f) {
        CHECK(fseek(f, 0, SEEK_END) == 0);
        long size = ftell(f);
        rewind(f);
        struct memstore m = {malloc((size_t)size), (size_t)size, 0, 0, 0};
        CHECK(fread(m.bytes, 1, (size_t)size, f) == (size_t)size);
        fclose(f);
        struct sc_storage s = store_of(&m, "luks in memory");
        CHECK(sc_luks_open_storage(&s, (const uint8_t *)pass, strlen(pass), 0, &v) == SC_OK);
        CHECK(sc_volume_read(v, back, LEN, 3000) == SC_OK);
        CHECK(memcmp(data, back, LEN) == 0);
        REFUSED(sc_volume_write(v, data, 10, 0), SC_EPERM);
        sc_volume_close(v);
        REFUSED(sc_luks_open_storage(NULL, (const uint8_t *)pass, strlen(pass), 0, &v), SC_EINVAL);
        free(m.bytes);
    }
    free(data);
    free(back);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s KDK OTHER_KDK DIR LUKS\n", argv[0]);
        return 2;
    }
    snprintf(provider, sizeof provider, "native:%s", argv[1]);
    snprintf(other_provider, sizeof other_provider, "native:%s", argv[2]);
    CHECK(sc_abi_version() == SC_ABI_VERSION);
    CHECK(strlen(sc_version()) > 0);
    CHECK(sc_last_error()[0] == '\0'); /* nothing has failed yet on this thread */
    CHECK(sc_key_provider_check(provider) == SC_OK);
    REFUSED(sc_key_provider_check("native:/nonexistent/kdk"), SC_EREFUSED);
    REFUSED(sc_key_provider_check("vault:nowhere"), SC_EINVAL);      /* no such provider */
    REFUSED(sc_key_provider_check("kmip:/nonexistent.toml"), SC_EREFUSED); /* no such configuration */
    REFUSED(sc_key_provider_check(NULL), SC_EINVAL);

    test_vector_2();
    test_in_and_out_of_place();
    test_cipher_refusals();
    test_shared_between_threads();
    test_disk_files(argv[3]);
    test_group_files(argv[3]);
    test_storage();
    test_luks(argv[4]);

    if (failures) {
        fprintf(stderr, "c api: %d checks failed\n", failures);
        return 1;
    }
    printf("c api: all checks passed\n");
    return 0;
}
