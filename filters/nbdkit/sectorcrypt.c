/*
 * nbdkit-sectorcrypt-filter: serves the plaintext of a sectorcrypt VM-mode disk (or a LUKS volume)
 * whose header and ciphertext any plugin underneath stores (file, memory, nbd, ...).
 *
 *   nbdkit --filter=./filters/nbdkit/nbdkit-sectorcrypt-filter.so file vm1.disk key-provider=native:KDK
 *   nbdkit --filter=./filters/nbdkit/nbdkit-sectorcrypt-filter.so file img.luks format=luks passphrase-file=F
 *
 * How it works: when the first client connects, the filter opens one shared context into the plugin
 * and opens the disk on it through sectorcrypt's C ABI (sc_disk_open_storage), with that context's
 * pread/pwrite/flush/zero as the store's functions. Every connection then reads and writes the one
 * volume, so the library's per-data-unit locks cover all of them: unaligned writes from two clients
 * to one data unit never lose each other's bytes, and a flush on any connection makes every
 * connection's completed writes durable (multi-conn). If the disk cannot be opened (wrong or
 * unavailable key, damaged header, no sectorcrypt disk), every connection is refused with one line
 * naming the cause, and nothing is written; a key provider that cannot be used at all (a missing
 * KDK file) stops nbdkit before it starts. Run with -f or --run to see the messages on the terminal
 * (a daemonised nbdkit logs them to syslog).
 *
 * Zeroing and trimming both discard: whole data units go to the plugin as zero requests (which may
 * punch holes), and read back as zeros (an all-zero ciphertext unit is an unwritten one, see
 * docs/FORMAT.md); partial units at the ends are written as encrypted zeros. Extents are not passed
 * through: the plugin's describe ciphertext, offset by the header. FUA is a write followed by a flush.
 *
 * With format=luks passphrase-file=FILE it serves a LUKS1 or LUKS2 volume (aes-xts-plain64) instead,
 * on the same data path; its header is never written, and zeroing or trimming writes encrypted zeros
 * (LUKS has no unwritten sectors).
 *
 * With deep-rekey=on [new-key-id=ID] it also starts a deep rekey of the disk (a new data key, every
 * data unit re-encrypted) in a thread of its own once the disk is open (when the first client
 * connects), while clients keep reading and writing it. Progress goes to the debug log (-v); a failure
 * is logged as an error and the disk stays served. When nbdkit stops before the rekey ends, the rekey
 * stops after the step it is writing and the disk is left in the middle of it, fully usable;
 * deep-rekey=on again (or `sectorcrypt disk rekey --deep`) resumes it. A disk left in the middle of a
 * rekey by a crash is resumed the same way.
 *
 * Datastore mode (a group striped over several stores) is not served here: a filter sits on one
 * plugin, so it sees one store. Open groups through the C ABI (sc_group_open, sc_group_open_storage).
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sectorcrypt.h"

static char *key_provider;
static int format_luks;
static char *passphrase_file;
static int deep_rekey;
static char *new_key_id;
static pthread_t rekey_thread;
static int rekey_running;
/* Set when nbdkit stops: an error the rekey meets from then on is part of stopping, not a failure to
 * report; so is ESHUTDOWN, which layers underneath return for I/O they abort as nbdkit begins to stop
 * (before this filter's cleanup runs). */
static atomic_int rekey_stopping;
static nbdkit_next *shared_next;
static sc_volume *volume;
/* Why the disk could not be opened: every connection is refused with it. */
static const char *open_error;

static int sectorcrypt_config(nbdkit_next_config *next, nbdkit_backend *nxdata, const char *key,
                              const char *value) {
    if (strcmp(key, "key-provider") == 0 || strcmp(key, "passphrase-file") == 0 ||
        strcmp(key, "new-key-id") == 0) {
        char **field = strcmp(key, "key-provider") == 0      ? &key_provider
                       : strcmp(key, "passphrase-file") == 0 ? &passphrase_file
                                                             : &new_key_id;
        free(*field);
        *field = strdup(value);
        if (*field == NULL) {
            nbdkit_error("strdup: %m");
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "deep-rekey") == 0) {
        deep_rekey = nbdkit_parse_bool(value);
        if (deep_rekey == -1) {
            nbdkit_error("sectorcrypt: deep-rekey=%s: expected on or off", value);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "format") == 0) {
        if (strcmp(value, "sectorcrypt") != 0 && strcmp(value, "luks") != 0) {
            nbdkit_error("sectorcrypt: format=%s: expected sectorcrypt or luks", value);
            return -1;
        }
        format_luks = strcmp(value, "luks") == 0;
        return 0;
    }
    return next(nxdata, key, value);
}

static int sectorcrypt_config_complete(nbdkit_next_config_complete *next, nbdkit_backend *nxdata) {
    if (format_luks && passphrase_file == NULL) {
        nbdkit_error("sectorcrypt: format=luks needs passphrase-file=FILE");
        return -1;
    }
    if (format_luks && (deep_rekey || new_key_id != NULL)) {
        nbdkit_error("sectorcrypt: deep-rekey and new-key-id are for sectorcrypt disks, not format=luks");
        return -1;
    }
    if (new_key_id != NULL && !deep_rekey) {
        nbdkit_error("sectorcrypt: new-key-id=ID needs deep-rekey=on");
        return -1;
    }
    if (!format_luks && key_provider == NULL) {
        nbdkit_error("sectorcrypt: key-provider=SPEC is required (e.g. key-provider=native:/path/to/kdk)");
        return -1;
    }
    if (sc_abi_version() != SC_ABI_VERSION) {
        nbdkit_error("sectorcrypt: built for ABI %d but linked with ABI %d", SC_ABI_VERSION, sc_abi_version());
        return -1;
    }
    return next(nxdata);
}

#define sectorcrypt_config_help                                                                     \
    "key-provider=<SPEC>     The key provider holding a sectorcrypt disk's key, e.g. native:/path/kdk.\n" \
    "format=sectorcrypt|luks A sectorcrypt VM disk (default) or a LUKS1/LUKS2 volume.\n"                 \
    "passphrase-file=<FILE>  The passphrase of a LUKS volume (one trailing newline is ignored).\n"       \
    "deep-rekey=on           Re-encrypt the disk to a new data key in the background while serving it.\n" \
    "new-key-id=<ID>         The key (KEK) that wraps the new data key (default: a new one).\n"           \
    "The cipher backend is the fastest this CPU has, or SECTORCRYPT_BACKEND from the environment."

static int sectorcrypt_thread_model(void) {
    return NBDKIT_THREAD_MODEL_PARALLEL;
}

/* The passphrase in passphrase_file, without one trailing newline; NULL (logged) if unreadable. The
 * caller wipes and frees it. */
static char *read_passphrase(size_t *len) {
    FILE *f = fopen(passphrase_file, "rb");
    if (f == NULL) {
        nbdkit_error("sectorcrypt: cannot read passphrase-file %s: %m", passphrase_file);
        return NULL;
    }
    char *buf = calloc(1, 4097);
    size_t n = buf ? fread(buf, 1, 4097, f) : 0;
    fclose(f);
    if (buf == NULL || n > 4096) {
        nbdkit_error("sectorcrypt: passphrase-file %s is longer than 4096 bytes", passphrase_file);
        free(buf);
        return NULL;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r') {
            n--;
        }
    }
    *len = n;
    return buf;
}

static void wipe(char *buf, size_t len) {
    if (buf != NULL) {
        explicit_bzero(buf, len);
        free(buf);
    }
}

/* Before nbdkit forks: a key provider or passphrase file that cannot be used at all stops it from
 * starting. */
static int sectorcrypt_get_ready(int thread_model) {
    (void)thread_model;
    if (format_luks) {
        size_t len = 0;
        char *passphrase = read_passphrase(&len);
        if (passphrase == NULL) {
            return -1;
        }
        wipe(passphrase, 4097);
        return 0;
    }
    if (sc_key_provider_check(key_provider) != 0) {
        nbdkit_error("sectorcrypt: %s", sc_last_error());
        return -1;
    }
    return 0;
}

/* ---- the store: the shared plugin context ---- */

/* nbdkit moves at most 2^32-1 bytes per call; sectorcrypt's pieces are far smaller, but stay safe. */
#define MAX_CALL (64u << 20)

static int store_read(void *ctx, void *buf, size_t len, uint64_t offset) {
    nbdkit_next *next = ctx;
    int err = 0;
    for (size_t done = 0; done < len;) {
        uint32_t n = (uint32_t)(len - done < MAX_CALL ? len - done : MAX_CALL);
        if (next->pread(next, (char *)buf + done, n, offset + done, 0, &err) == -1) {
            return err ? err : EIO;
        }
        done += n;
    }
    return 0;
}

static int store_write(void *ctx, const void *buf, size_t len, uint64_t offset) {
    nbdkit_next *next = ctx;
    int err = 0;
    for (size_t done = 0; done < len;) {
        uint32_t n = (uint32_t)(len - done < MAX_CALL ? len - done : MAX_CALL);
        if (next->pwrite(next, (const char *)buf + done, n, offset + done, 0, &err) == -1) {
            return err ? err : EIO;
        }
        done += n;
    }
    return 0;
}

static int store_flush(void *ctx) {
    nbdkit_next *next = ctx;
    int err = 0;
    if (next->flush(next, 0, &err) == -1) {
        return err ? err : EIO;
    }
    return 0;
}

/* Whole data units to zeros (which the plugin may turn into holes). */
static int store_zero(void *ctx, uint64_t offset, uint64_t len) {
    nbdkit_next *next = ctx;
    int err = 0;
    for (uint64_t done = 0; done < len;) {
        uint32_t n = (uint32_t)(len - done < MAX_CALL ? len - done : MAX_CALL);
        if (next->zero(next, n, offset + done, NBDKIT_FLAG_MAY_TRIM, &err) == -1) {
            return err ? err : EIO;
        }
        done += n;
    }
    return 0;
}

/* ---- the deep rekey, in a thread of its own ---- */

static void rekey_progress(void *ctx, uint64_t done, uint64_t total) {
    (void)ctx;
    nbdkit_debug("sectorcrypt: deep rekey: %" PRIu64 " of %" PRIu64 " bytes under the new data key", done,
                 total);
}

static void *rekey_main(void *arg) {
    (void)arg;
    int rc = sc_volume_deep_rekey(volume, key_provider, new_key_id, rekey_progress, NULL);
    if (rc == SC_OK) {
        nbdkit_debug("sectorcrypt: deep rekey finished: the disk is under its new data key");
    } else if (rc == SC_STOPPED || atomic_load(&rekey_stopping) || sc_last_errno() == ESHUTDOWN) {
        nbdkit_debug("sectorcrypt: deep rekey stopped with nbdkit%s%s; deep-rekey=on resumes it",
                     rc == SC_STOPPED ? "" : ": ", rc == SC_STOPPED ? "" : sc_last_error());
    } else {
        nbdkit_error("sectorcrypt: deep rekey: %s", sc_last_error());
    }
    return NULL;
}

/* Asks a running rekey to stop after the step it is writing, and waits for it. */
static void stop_rekey(void) {
    if (rekey_running) {
        atomic_store(&rekey_stopping, 1);
        sc_volume_deep_rekey_stop(volume);
        pthread_join(rekey_thread, NULL);
        rekey_running = 0;
    }
}

static void close_shared(void) {
    stop_rekey();
    sc_volume_close(volume);
    volume = NULL;
    if (shared_next != NULL) {
        shared_next->finalize(shared_next);
        nbdkit_next_context_close(shared_next);
        shared_next = NULL;
    }
}

/* Logs why the disk cannot be served and keeps it for refusing each connection. */
static void refuse(const char *what, const char *detail) {
    nbdkit_error("sectorcrypt: %s%s", what, detail);
    char *message = NULL;
    if (open_error == NULL) {
        open_error = asprintf(&message, "sectorcrypt: %s%s", what, detail) == -1
                         ? "sectorcrypt: the disk could not be opened"
                         : message;
    }
}

static nbdkit_backend *backend_after_fork;
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static int open_tried;

static int sectorcrypt_after_fork(nbdkit_backend *backend) {
    backend_after_fork = backend;
    return 0;
}

/* Opens the disk once for all connections, when the first one comes (only then does a filter learn
 * whether nbdkit runs read-only, -r): read-write where nbdkit and the plugin can write, else
 * read-only. Nothing here fails nbdkit itself: with --run, nbdkit has started its client already,
 * which would wait for ever on a server that exited. Each connection is refused with the cause
 * instead. */
static void open_shared(int readonly) {
    nbdkit_backend *backend = backend_after_fork;
    shared_next = readonly ? NULL : nbdkit_next_context_open(backend, 0, "", 1);
    if (shared_next == NULL) {
        readonly = 1;
        shared_next = nbdkit_next_context_open(backend, 1, "", 1);
    }
    if (shared_next == NULL || shared_next->prepare(shared_next) == -1) {
        shared_next = NULL;
        refuse("cannot open the plugin underneath", "");
        return;
    }
    int64_t size = shared_next->get_size(shared_next);
    if (size == -1) {
        close_shared();
        refuse("the plugin underneath has no size", "");
        return;
    }
    if (!readonly && shared_next->can_write(shared_next) != 1) {
        readonly = 1;
    }
    struct sc_storage store = {
        .ctx = shared_next,
        .name = "the plugin's export",
        .size = (uint64_t)size,
        .read_at = store_read,
        .write_at = readonly ? NULL : store_write,
        .flush = shared_next->can_flush(shared_next) == 1 ? store_flush : NULL,
        .discard = shared_next->can_zero(shared_next) > NBDKIT_ZERO_NONE ? store_zero : NULL,
    };
    uint32_t flags = readonly ? 0 : SC_OPEN_WRITE;
    int rc;
    if (format_luks) {
        size_t len = 0;
        char *passphrase = read_passphrase(&len);
        if (passphrase == NULL) {
            close_shared();
            refuse("cannot read the passphrase file", "");
            return;
        }
        rc = sc_luks_open_storage(&store, (const uint8_t *)passphrase, len, flags, &volume);
        wipe(passphrase, 4097);
    } else {
        rc = sc_disk_open_storage(&store, key_provider, flags, &volume);
    }
    if (rc != 0) {
        close_shared();
        refuse("", sc_last_error());
        return;
    }
    struct sc_volume_info info;
    if (sc_volume_get_info(volume, &info) == 0) {
        nbdkit_debug("sectorcrypt: %" PRIu64 " bytes, %" PRIu32 "-byte data units, XTS-AES-%" PRIu32
                     ", %s backend, %s",
                     info.size, info.data_unit, info.key_bits, info.backend,
                     info.writable ? "read-write" : "read-only");
    }
    for (size_t i = 0; i < sc_volume_notice_count(volume); i++) {
        nbdkit_debug("sectorcrypt: notice: %s", sc_volume_notice(volume, i));
    }
    if (deep_rekey) {
        if (readonly) {
            close_shared();
            refuse("deep-rekey=on needs a writable export (nbdkit runs with -r, or the plugin cannot write)",
                   "");
            return;
        }
        int err = pthread_create(&rekey_thread, NULL, rekey_main, NULL);
        if (err != 0) {
            close_shared();
            refuse("cannot start the deep rekey: ", strerror(err));
            return;
        }
        rekey_running = 1;
    }
    return;
}

static void *sectorcrypt_open(nbdkit_next_open *next, nbdkit_context *context, int readonly,
                              const char *exportname, int is_tls) {
    (void)is_tls;
    pthread_mutex_lock(&open_lock);
    if (!open_tried) {
        open_tried = 1;
        open_shared(readonly);
    }
    pthread_mutex_unlock(&open_lock);
    if (volume == NULL) {
        nbdkit_error("%s", open_error ? open_error : "sectorcrypt: the disk is not open");
        return NULL;
    }
    if (next(context, readonly, exportname) == -1) {
        return NULL;
    }
    return NBDKIT_HANDLE_NOT_NEEDED;
}

static void sectorcrypt_cleanup(nbdkit_backend *backend) {
    (void)backend;
    stop_rekey();
    if (volume != NULL && sc_volume_flush(volume) != 0) {
        nbdkit_error("sectorcrypt: final flush: %s", sc_last_error());
    }
    close_shared();
}

static void sectorcrypt_unload(void) {
    free(key_provider);
    free(passphrase_file);
    free(new_key_id);
}

/* ---- connections ---- */

/* The errno for sectorcrypt's failure `rc` on this thread, after logging its message. */
static int errno_of(int rc) {
    int err = sc_last_errno();
    nbdkit_error("sectorcrypt: %s", sc_last_error());
    if (err != 0) {
        return err;
    }
    switch (rc) {
    case SC_EINVAL:
        return EINVAL;
    case SC_EPERM:
        return EPERM;
    case SC_EBUSY:
        return EBUSY;
    case SC_EUNAVAILABLE:
        return EAGAIN;
    default:
        return EIO;
    }
}

static int64_t sectorcrypt_get_size(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return (int64_t)sc_volume_size(volume);
}

static int sectorcrypt_block_size(nbdkit_next *next, void *handle, uint32_t *minimum, uint32_t *preferred,
                                  uint32_t *maximum) {
    (void)next;
    (void)handle;
    struct sc_volume_info info;
    if (sc_volume_get_info(volume, &info) != 0) {
        nbdkit_error("sectorcrypt: %s", sc_last_error());
        return -1;
    }
    /* Any offset and length works; whole data units skip the read-modify-write. */
    *minimum = 1;
    *preferred = info.data_unit;
    *maximum = 0xffffffff;
    return 0;
}

static int sectorcrypt_can_write(nbdkit_next *next, void *handle) {
    (void)handle;
    struct sc_volume_info info;
    if (sc_volume_get_info(volume, &info) != 0) {
        return -1;
    }
    return info.writable && next->can_write(next) == 1;
}

static int sectorcrypt_can_flush(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return 1;
}

static int sectorcrypt_can_fua(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return NBDKIT_FUA_NATIVE; /* a write, then a flush of the shared volume */
}

static int sectorcrypt_can_trim(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return 1;
}

static int sectorcrypt_can_zero(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return NBDKIT_ZERO_NATIVE;
}

static int sectorcrypt_can_fast_zero(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return 0;
}

static int sectorcrypt_can_extents(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return 0; /* the plugin's extents describe ciphertext */
}

static int sectorcrypt_can_cache(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return NBDKIT_CACHE_NONE;
}

static int sectorcrypt_can_multi_conn(nbdkit_next *next, void *handle) {
    (void)next;
    (void)handle;
    return 1; /* every connection shares one volume and one plugin context */
}

static int fua(uint32_t flags, int *err) {
    if ((flags & NBDKIT_FLAG_FUA) && sc_volume_flush(volume) != 0) {
        *err = errno_of(SC_EIO);
        return -1;
    }
    return 0;
}

static int sectorcrypt_pread(nbdkit_next *next, void *handle, void *buf, uint32_t count, uint64_t offset,
                             uint32_t flags, int *err) {
    (void)next;
    (void)handle;
    (void)flags;
    int rc = sc_volume_read(volume, buf, count, offset);
    if (rc != 0) {
        *err = errno_of(rc);
        return -1;
    }
    return 0;
}

static int sectorcrypt_pwrite(nbdkit_next *next, void *handle, const void *buf, uint32_t count,
                              uint64_t offset, uint32_t flags, int *err) {
    (void)next;
    (void)handle;
    int rc = sc_volume_write(volume, buf, count, offset);
    if (rc != 0) {
        *err = errno_of(rc);
        return -1;
    }
    return fua(flags, err);
}

static int sectorcrypt_flush(nbdkit_next *next, void *handle, uint32_t flags, int *err) {
    (void)next;
    (void)handle;
    (void)flags;
    int rc = sc_volume_flush(volume);
    if (rc != 0) {
        *err = errno_of(rc);
        return -1;
    }
    return 0;
}

static int discard(uint32_t count, uint64_t offset, uint32_t flags, int *err) {
    int rc = sc_volume_discard(volume, offset, count);
    if (rc != 0) {
        *err = errno_of(rc);
        return -1;
    }
    return fua(flags, err);
}

static int sectorcrypt_trim(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                            int *err) {
    (void)next;
    (void)handle;
    return discard(count, offset, flags, err);
}

static int sectorcrypt_zero(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                            int *err) {
    (void)next;
    (void)handle;
    return discard(count, offset, flags, err);
}

static struct nbdkit_filter filter = {
    .name = "sectorcrypt",
    .longname = "nbdkit sectorcrypt filter",
    .description = "Serves the plaintext of a sectorcrypt XTS-AES encrypted VM disk",
    .unload = sectorcrypt_unload,
    .config = sectorcrypt_config,
    .config_complete = sectorcrypt_config_complete,
    .config_help = sectorcrypt_config_help,
    .thread_model = sectorcrypt_thread_model,
    .get_ready = sectorcrypt_get_ready,
    .after_fork = sectorcrypt_after_fork,
    .open = sectorcrypt_open,
    .cleanup = sectorcrypt_cleanup,
    .get_size = sectorcrypt_get_size,
    .block_size = sectorcrypt_block_size,
    .can_write = sectorcrypt_can_write,
    .can_flush = sectorcrypt_can_flush,
    .can_fua = sectorcrypt_can_fua,
    .can_trim = sectorcrypt_can_trim,
    .can_zero = sectorcrypt_can_zero,
    .can_fast_zero = sectorcrypt_can_fast_zero,
    .can_extents = sectorcrypt_can_extents,
    .can_cache = sectorcrypt_can_cache,
    .can_multi_conn = sectorcrypt_can_multi_conn,
    .pread = sectorcrypt_pread,
    .pwrite = sectorcrypt_pwrite,
    .flush = sectorcrypt_flush,
    .trim = sectorcrypt_trim,
    .zero = sectorcrypt_zero,
};

NBDKIT_REGISTER_FILTER(filter)
