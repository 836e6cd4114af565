/*
 * A fake libnvidia-ml.so.1 for tests, benchmarks and the demo.
 *
 * It implements the subset of the NVML C API that powerplane and nvidia-ml-py's ctypes wrappers
 * call, with the real struct layouts, return codes and versioned entry points.  The GPUs it
 * shows are described by a line-oriented config file named by $FAKENVML_CONFIG (written by
 * powerplane.lab.fakenvml); the file is re-read whenever it changes, so a test can lose a GPU
 * or inject an XID while an exporter runs.  Power limits set through
 * nvmlDeviceSetPowerManagementLimit are kept in a state file beside the config so that every
 * process using the same config (controller, exporter) sees them.
 *
 * Power is a function of wall-clock time (a sine around a base utilisation), capped by the
 * current power limit; the energy counter integrates that power in 10 ms steps.  When the config
 * names a `shared_state` file, another process (the lab's node model) drives the GPUs instead:
 * it publishes each GPU's demand, power, energy and utilisation there (a memory-mapped file
 * under a sequence lock) and the library serves those, so the GPU exporter, the controller and
 * the node's other meters all see one machine.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NO_PERMISSION = 4, NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7, NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15, NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25, NVML_ERROR_UNKNOWN = 999,
};

#define MAX_GPUS 64
#define MAX_MIG 7
#define MAX_XIDS 256
#define MAX_SETS 64
#define STEP_S 0.01

/* Features that a GPU may declare unsupported (bits of gpu.unsupported). */
enum {
    F_POWER = 1 << 0, F_ENERGY = 1 << 1, F_TEMPERATURE = 1 << 2, F_MEMORY_TEMP = 1 << 3,
    F_ECC = 1 << 4, F_CLOCKS = 1 << 5, F_UTILIZATION = 1 << 6, F_POWER_LIMIT = 1 << 7,
    F_CLOCK_EVENTS = 1 << 8, F_MEMORY = 1 << 9, F_MIG = 1 << 10, F_PCIE = 1 << 11,
    F_EVENTS = 1 << 12, F_SERIAL = 1 << 13,
};
static const struct { const char *name; int bit; } FEATURES[] = {
    {"power", F_POWER}, {"energy", F_ENERGY}, {"temperature", F_TEMPERATURE},
    {"memory_temperature", F_MEMORY_TEMP}, {"ecc", F_ECC}, {"clocks", F_CLOCKS},
    {"utilization", F_UTILIZATION}, {"power_limit", F_POWER_LIMIT}, {"clock_events", F_CLOCK_EVENTS},
    {"memory", F_MEMORY}, {"mig", F_MIG}, {"pcie", F_PCIE}, {"events", F_EVENTS}, {"serial", F_SERIAL},
};

struct device;
typedef struct device *nvmlDevice_t;

struct mig {
    unsigned gi, ci;
    unsigned long long memory_total, memory_used;
    char uuid[96];
};

struct device {
    unsigned magic;
    int index;      /* GPU index, or the parent's for a MIG device */
    int mig_index;  /* -1 for a physical GPU */
};

struct gpu {
    char name[96], uuid[96], serial[32], bus_id[32];
    unsigned pci_device_id, pci_subsystem_id, minor;
    unsigned long long memory_total, memory_used;
    double memory_used_amplitude;
    unsigned power_idle_mw, power_max_mw, limit_default_mw, limit_min_mw, limit_max_mw;
    double util_base, util_amplitude, util_period_s, phase;
    double temp_idle, temp_per_watt, memory_temp_offset;
    unsigned sm_clock_max, sm_clock_idle, mem_clock;
    unsigned long long ecc_corrected, ecc_uncorrected, ecc_corrected_volatile, ecc_uncorrected_volatile;
    unsigned long long pcie_replays;
    double energy_offset_mj;
    int lost, set_limit; /* set_limit: 0 allow, 1 deny, 2 root only */
    unsigned unsupported;
    int nxids;
    unsigned xids[MAX_XIDS];
    int mig_mode, nmig;
    struct mig migs[MAX_MIG];
};

/* What survives a config reload, per GPU index. */
struct runtime {
    int started;
    double energy_mj, energy_t;
};

struct event_set {
    int used;
    unsigned long long types[MAX_GPUS];
    int delivered[MAX_GPUS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static char config_path[4096], state_path[4200];
static struct timespec config_mtime, state_mtime;
static off_t config_size, state_size;
static ino_t config_ino, state_ino;
static char driver_version[80] = "550.90.07", nvml_version[80] = "12.550.90.07";
static int cuda_version = 12040;
static int ngpus;
static struct gpu gpus[MAX_GPUS];
static unsigned limits_mw[MAX_GPUS];  /* 0: the default limit */
static struct runtime rt[MAX_GPUS];
static struct device handles[MAX_GPUS];
static struct device mig_handles[MAX_GPUS][MAX_MIG];
static struct event_set sets[MAX_SETS];
static unsigned long long calls;

/* The shared state a driving process publishes (layout mirrored by powerplane.lab.fakenvml). */
#define SHARED_MAGIC 0x31534c4d564e4650ULL /* "PFNVMLS1" little-endian */
struct shared_gpu { double demand_mw, power_mw, energy_mj, utilization; };
struct shared_state {
    uint64_t magic, seq;      /* seq: odd while the writer is in the middle of an update */
    uint32_t version, ngpus;
    uint64_t reserved[5];
    struct shared_gpu gpu[MAX_GPUS];
};
static char shared_path[4096], mapped_path[4096];
static const struct shared_state *shared;

#define MAGIC 0x6e766d6cu

EXPORT unsigned long long fakenvml_call_count(void) { return __atomic_load_n(&calls, __ATOMIC_RELAXED); }
EXPORT void fakenvml_reset_call_count(void) { __atomic_store_n(&calls, 0, __ATOMIC_RELAXED); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_defaults(struct gpu *g, int index) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "NVIDIA H100 80GB HBM3");
    snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-0000-0000-%012d", index);
    snprintf(g->serial, sizeof g->serial, "165000000%04d", index);
    snprintf(g->bus_id, sizeof g->bus_id, "00000000:%02X:00.0", 0x18 + index);
    g->pci_device_id = 0x233010DE;
    g->pci_subsystem_id = 0x16C110DE;
    g->minor = (unsigned)index;
    g->memory_total = 85520809984ULL;
    g->power_idle_mw = 70000; g->power_max_mw = 700000;
    g->limit_default_mw = 700000; g->limit_min_mw = 200000; g->limit_max_mw = 700000;
    g->util_base = 0.5; g->util_period_s = 60; g->temp_idle = 30; g->temp_per_watt = 0.06;
    g->memory_temp_offset = 6; g->sm_clock_max = 1980; g->sm_clock_idle = 345; g->mem_clock = 2619;
}

static void copy_str(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src);
}

static unsigned parse_features(const char *value) {
    unsigned bits = 0;
    char buf[1024];
    copy_str(buf, sizeof buf, value);
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
        for (size_t i = 0; i < sizeof FEATURES / sizeof FEATURES[0]; i++)
            if (strcmp(tok, FEATURES[i].name) == 0) bits |= FEATURES[i].bit;
    return bits;
}

/* Parse the config; on any error keep what was read so far (the writer replaces files atomically). */
static void load_config(FILE *f) {
    char line[2048];
    struct gpu *g = NULL;
    ngpus = 0;
    shared_path[0] = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] == '#' || line[0] == 0) continue;
        char *value = strchr(line, ' ');
        if (value) *value++ = 0; else value = line + strlen(line);
        const char *key = line;
        if (strcmp(key, "gpu") == 0) {
            if (ngpus >= MAX_GPUS) { g = NULL; continue; }
            g = &gpus[ngpus];
            set_defaults(g, ngpus);
            ngpus++;
            continue;
        }
        if (strcmp(key, "driver_version") == 0) { copy_str(driver_version, sizeof driver_version, value); continue; }
        if (strcmp(key, "nvml_version") == 0) { copy_str(nvml_version, sizeof nvml_version, value); continue; }
        if (strcmp(key, "cuda_version") == 0) { cuda_version = atoi(value); continue; }
        if (strcmp(key, "state_file") == 0) { copy_str(state_path, sizeof state_path, value); continue; }
        if (strcmp(key, "shared_state") == 0) { copy_str(shared_path, sizeof shared_path, value); continue; }
        if (!g) continue;
#define S(k, field) if (strcmp(key, k) == 0) { copy_str(g->field, sizeof g->field, value); continue; }
#define U(k, field) if (strcmp(key, k) == 0) { g->field = (unsigned)strtoul(value, NULL, 0); continue; }
#define ULL(k, field) if (strcmp(key, k) == 0) { g->field = strtoull(value, NULL, 0); continue; }
#define D(k, field) if (strcmp(key, k) == 0) { g->field = strtod(value, NULL); continue; }
        S("name", name) S("uuid", uuid) S("serial", serial) S("pci_bus_id", bus_id)
        U("pci_device_id", pci_device_id) U("pci_subsystem_id", pci_subsystem_id) U("minor", minor)
        ULL("memory_total_bytes", memory_total) ULL("memory_used_bytes", memory_used)
        D("memory_used_amplitude", memory_used_amplitude)
        U("power_idle_mw", power_idle_mw) U("power_max_mw", power_max_mw)
        U("power_limit_default_mw", limit_default_mw) U("power_limit_min_mw", limit_min_mw)
        U("power_limit_max_mw", limit_max_mw)
        D("util_base", util_base) D("util_amplitude", util_amplitude) D("util_period_s", util_period_s)
        D("phase", phase) D("temp_idle", temp_idle) D("temp_per_watt", temp_per_watt)
        D("memory_temp_offset", memory_temp_offset)
        U("sm_clock_max_mhz", sm_clock_max) U("sm_clock_idle_mhz", sm_clock_idle) U("mem_clock_mhz", mem_clock)
        ULL("ecc_corrected", ecc_corrected) ULL("ecc_uncorrected", ecc_uncorrected)
        ULL("ecc_corrected_volatile", ecc_corrected_volatile)
        ULL("ecc_uncorrected_volatile", ecc_uncorrected_volatile)
        ULL("pcie_replays", pcie_replays) D("energy_offset_mj", energy_offset_mj)
        if (strcmp(key, "lost") == 0) { g->lost = atoi(value); continue; }
        if (strcmp(key, "set_limit") == 0) {
            g->set_limit = strcmp(value, "deny") == 0 ? 1 : strcmp(value, "root") == 0 ? 2 : 0;
            continue;
        }
        if (strcmp(key, "unsupported") == 0) { g->unsupported = parse_features(value); continue; }
        if (strcmp(key, "xids") == 0) {
            g->nxids = 0;
            char *save = NULL;
            for (char *tok = strtok_r(value, ", ", &save); tok && g->nxids < MAX_XIDS; tok = strtok_r(NULL, ", ", &save))
                g->xids[g->nxids++] = (unsigned)strtoul(tok, NULL, 10);
            continue;
        }
        if (strcmp(key, "mig_mode") == 0) { g->mig_mode = atoi(value); continue; }
        if (strcmp(key, "mig") == 0 && g->nmig < MAX_MIG) {
            struct mig *m = &g->migs[g->nmig];
            if (sscanf(value, "%u %u %llu %llu %95s", &m->gi, &m->ci, &m->memory_total, &m->memory_used, m->uuid) == 5)
                g->nmig++;
            continue;
        }
#undef S
#undef U
#undef ULL
#undef D
    }
}

static int changed(const char *path, struct timespec *mtime, off_t *size, ino_t *ino) {
    struct stat st;
    if (stat(path, &st) != 0) {
        int was = mtime->tv_sec || mtime->tv_nsec;
        memset(mtime, 0, sizeof *mtime); *size = 0; *ino = 0;
        return was;
    }
    if (st.st_mtim.tv_sec == mtime->tv_sec && st.st_mtim.tv_nsec == mtime->tv_nsec && st.st_size == *size && st.st_ino == *ino)
        return 0;
    *mtime = st.st_mtim; *size = st.st_size; *ino = st.st_ino;
    return 1;
}

static void load_state(void) {
    memset(limits_mw, 0, sizeof limits_mw);
    FILE *f = fopen(state_path, "r");
    if (!f) return;
    int index; unsigned mw;
    while (fscanf(f, "limit %d %u\n", &index, &mw) == 2)
        if (index >= 0 && index < MAX_GPUS) limits_mw[index] = mw;
    fclose(f);
}

/* Map the shared state the config names (again when the file was replaced); without a usable
 * one the built-in model serves, so a file that is missing, short or not ours is never fatal.
 * The writer creates the file at its full size and never truncates it. */
static void map_shared(void) {
    static dev_t mapped_dev;
    static ino_t mapped_ino;
    struct stat st;
    int exists = shared_path[0] && stat(shared_path, &st) == 0;
    if (strcmp(shared_path, mapped_path) == 0 && (!exists || (st.st_dev == mapped_dev && st.st_ino == mapped_ino)))
        return;
    if (shared) munmap((void *)shared, sizeof *shared);
    shared = NULL;
    copy_str(mapped_path, sizeof mapped_path, shared_path);
    mapped_dev = 0; mapped_ino = 0;
    if (!exists) return;
    int fd = open(shared_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof(struct shared_state)) {
        void *p = mmap(NULL, sizeof(struct shared_state), PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            if (((const struct shared_state *)p)->magic == SHARED_MAGIC) {
                shared = p; mapped_dev = st.st_dev; mapped_ino = st.st_ino;
            } else {
                munmap(p, sizeof(struct shared_state));
            }
        }
    }
    close(fd);
}

static double sane(double v) { return isfinite(v) && v > 0 ? v : 0; }

/* GPU i's published readings; 0 when nothing (valid) has been published for it. */
static int shared_gpu(int i, struct shared_gpu *out) {
    if (!shared || i < 0 || i >= MAX_GPUS) return 0;
    for (int tries = 0; tries < 10000; tries++) {
        uint64_t before = __atomic_load_n(&shared->seq, __ATOMIC_ACQUIRE);
        if (before == 0) return 0; /* never published */
        if (before & 1) { sched_yield(); continue; }
        if ((unsigned)i >= __atomic_load_n(&shared->ngpus, __ATOMIC_RELAXED)) return 0;
        struct shared_gpu copy;
        memcpy(&copy, (const void *)&shared->gpu[i], sizeof copy);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&shared->seq, __ATOMIC_RELAXED) == before) {
            /* Whatever the writer put there, never a negative or NaN reading. */
            out->demand_mw = sane(copy.demand_mw); out->power_mw = sane(copy.power_mw);
            out->energy_mj = sane(copy.energy_mj); out->utilization = sane(copy.utilization);
            return 1;
        }
    }
    return 0;
}

/* Re-read the config and state files when they change.  Called with the lock held. */
static void refresh(void) {
    if (changed(config_path, &config_mtime, &config_size, &config_ino)) {
        FILE *f = fopen(config_path, "r");
        if (f) {
            char saved_state[sizeof state_path];
            copy_str(saved_state, sizeof saved_state, state_path);
            snprintf(state_path, sizeof state_path, "%s.state", config_path);
            load_config(f);
            fclose(f);
            map_shared();
            if (strcmp(saved_state, state_path) != 0) {
                memset(&state_mtime, 0, sizeof state_mtime);
                memset(limits_mw, 0, sizeof limits_mw);
            }
        }
    }
    if (changed(state_path, &state_mtime, &state_size, &state_ino)) load_state();
}

static unsigned current_limit(int i) {
    unsigned mw = limits_mw[i];
    return mw ? mw : gpus[i].limit_default_mw;
}

static double utilization_at(const struct gpu *g, double t) {
    struct shared_gpu sg;
    if (shared_gpu((int)(g - gpus), &sg)) return sg.utilization > 1 ? 1 : sg.utilization;
    double u = g->util_base;
    if (g->util_amplitude != 0 && g->util_period_s > 0)
        u += g->util_amplitude * sin(2 * M_PI * (t / g->util_period_s + g->phase));
    return u < 0 ? 0 : u > 1 ? 1 : u;
}

static double demand_mw(const struct gpu *g, double t) {
    struct shared_gpu sg;
    if (shared_gpu((int)(g - gpus), &sg)) return sg.demand_mw;
    return g->power_idle_mw + (g->power_max_mw - (double)g->power_idle_mw) * utilization_at(g, t);
}

/* Power follows the limit: the board never draws more than its enforced limit. */
static double power_mw(int i, double t) {
    struct shared_gpu sg;
    if (shared_gpu(i, &sg)) return sg.power_mw;
    double d = demand_mw(&gpus[i], t), cap = current_limit(i);
    return d > cap ? cap : d;
}

static double energy_mj(int i) {
    struct shared_gpu sg;
    if (shared_gpu(i, &sg)) return sg.energy_mj; /* the driving model integrates it */
    struct runtime *r = &rt[i];
    double t = now_s();
    if (!r->started) {
        /* As if the driver had been loaded an hour ago at idle power. */
        r->energy_mj = gpus[i].energy_offset_mj + 3600.0 * gpus[i].power_idle_mw;
        r->energy_t = t;
        r->started = 1;
        return r->energy_mj;
    }
    /* A process that has not asked for hours: coarse steps for the bulk, fine ones at the end. */
    while (t - r->energy_t > 60) {
        r->energy_mj += power_mw(i, r->energy_t + 0.5) * 1.0;
        r->energy_t += 1.0;
    }
    while (r->energy_t + STEP_S <= t) {
        r->energy_mj += power_mw(i, r->energy_t + STEP_S / 2) * STEP_S;
        r->energy_t += STEP_S;
    }
    /* Whole steps only: a partial step could be undone by the next, and counters never drop. */
    return r->energy_mj;
}

/* Entry: count the call, take the lock, check initialisation. */
#define ENTER() \
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED); \
    pthread_mutex_lock(&lock); \
    if (!initialized) { pthread_mutex_unlock(&lock); return NVML_ERROR_UNINITIALIZED; } \
    refresh()
#define RETURN(code) do { nvmlReturn_t rc_ = (code); pthread_mutex_unlock(&lock); return rc_; } while (0)

/* Resolve a handle to a GPU index; MIG handles set *mig. */
static nvmlReturn_t resolve(nvmlDevice_t h, int *index, int *mig) {
    if (!h || h->magic != MAGIC) return NVML_ERROR_INVALID_ARGUMENT;
    if (h->index < 0 || h->index >= ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    if (gpus[h->index].lost) return NVML_ERROR_GPU_IS_LOST;
    if (h->mig_index >= 0 && (!gpus[h->index].mig_mode || h->mig_index >= gpus[h->index].nmig))
        return NVML_ERROR_INVALID_ARGUMENT;
    *index = h->index;
    if (mig) *mig = h->mig_index;
    return NVML_SUCCESS;
}

#define DEVICE(h, feature) \
    int idx, mig; \
    ENTER(); \
    { nvmlReturn_t r_ = resolve(h, &idx, &mig); if (r_) RETURN(r_); } \
    if ((feature) && (gpus[idx].unsupported & (feature))) RETURN(NVML_ERROR_NOT_SUPPORTED); \
    struct gpu *g = &gpus[idx]; (void)g; (void)mig
/* Most queries are not valid on a MIG device handle. */
#define NOT_MIG() if (mig >= 0) RETURN(NVML_ERROR_NOT_SUPPORTED)

static nvmlReturn_t put_string(char *dst, unsigned length, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

/* ---- initialisation and system queries ----------------------------------------------- */

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    const char *path = getenv("FAKENVML_CONFIG");
    if (!path || !*path || access(path, R_OK) != 0) return NVML_ERROR_DRIVER_NOT_LOADED;
    pthread_mutex_lock(&lock);
    if (strcmp(path, config_path) != 0) {
        /* A different simulated machine: forget everything about the previous one. */
        copy_str(config_path, sizeof config_path, path);
        memset(&config_mtime, 0, sizeof config_mtime);
        memset(&state_mtime, 0, sizeof state_mtime);
        config_size = state_size = 0; config_ino = state_ino = 0;
        memset(rt, 0, sizeof rt);
        memset(sets, 0, sizeof sets);
        memset(limits_mw, 0, sizeof limits_mw);
        state_path[0] = 0;
    }
    for (int i = 0; i < MAX_GPUS; i++) {
        handles[i] = (struct device){MAGIC, i, -1};
        for (int m = 0; m < MAX_MIG; m++) mig_handles[i][m] = (struct device){MAGIC, i, m};
    }
    initialized++;
    refresh();
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
    ENTER();
    initialized--;
    RETURN(NVML_SUCCESS);
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned length) {
    ENTER();
    RETURN(put_string(version, length, driver_version));
}

EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned length) {
    ENTER();
    RETURN(put_string(version, length, nvml_version));
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    ENTER();
    if (!version) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *version = cuda_version;
    RETURN(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) { return nvmlSystemGetCudaDriverVersion(version); }

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
    ENTER();
    if (!count) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *count = (unsigned)ngpus;
    RETURN(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned *count) { return nvmlDeviceGetCount_v2(count); }

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device) {
    ENTER();
    if (!device || index >= (unsigned)ngpus) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    /* Real NVML hands out handles of lost GPUs too; calls on them fail. */
    *device = &handles[index];
    RETURN(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    ENTER();
    if (!uuid || !device) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    for (int i = 0; i < ngpus; i++)
        if (strcmp(gpus[i].uuid, uuid) == 0) { *device = &handles[i]; RETURN(NVML_SUCCESS); }
    RETURN(NVML_ERROR_NOT_FOUND);
}

/* ---- identity ----------------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t h, unsigned *index) {
    DEVICE(h, 0);
    NOT_MIG();
    if (!index) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *index = (unsigned)idx;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t h, unsigned *minor) {
    DEVICE(h, 0);
    NOT_MIG();
    if (!minor) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *minor = g->minor;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t h, char *name, unsigned length) {
    DEVICE(h, 0);
    if (mig >= 0) {
        char buf[160];
        snprintf(buf, sizeof buf, "%s MIG %u.%u", g->name, g->migs[mig].gi, g->migs[mig].ci);
        RETURN(put_string(name, length, buf));
    }
    RETURN(put_string(name, length, g->name));
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t h, char *uuid, unsigned length) {
    DEVICE(h, 0);
    RETURN(put_string(uuid, length, mig >= 0 ? g->migs[mig].uuid : g->uuid));
}

EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t h, char *serial, unsigned length) {
    DEVICE(h, F_SERIAL);
    NOT_MIG();
    RETURN(put_string(serial, length, g->serial));
}

typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t h, nvmlPciInfo_t *pci) {
    DEVICE(h, 0);
    if (!pci) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    memset(pci, 0, sizeof *pci);
    unsigned domain = 0, bus = 0, dev = 0, fn = 0;
    sscanf(g->bus_id, "%x:%x:%x.%x", &domain, &bus, &dev, &fn);
    pci->domain = domain; pci->bus = bus; pci->device = dev;
    pci->pciDeviceId = g->pci_device_id; pci->pciSubSystemId = g->pci_subsystem_id;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.%X", domain, bus, dev, fn);
    copy_str(pci->busId, sizeof pci->busId, g->bus_id);
    RETURN(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t h, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(h, pci); }
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t h, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(h, pci); }

/* ---- power ---------------------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t h, unsigned *power) {
    DEVICE(h, F_POWER);
    NOT_MIG();
    if (!power) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *power = (unsigned)power_mw(idx, now_s());
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t h, unsigned long long *energy) {
    DEVICE(h, F_ENERGY);
    NOT_MIG();
    if (!energy) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *energy = (unsigned long long)energy_mj(idx);
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t h, unsigned *limit) {
    DEVICE(h, F_POWER_LIMIT);
    NOT_MIG();
    if (!limit) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *limit = current_limit(idx);
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t h, unsigned *limit) {
    return nvmlDeviceGetPowerManagementLimit(h, limit);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t h, unsigned *limit) {
    DEVICE(h, F_POWER_LIMIT);
    NOT_MIG();
    if (!limit) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *limit = g->limit_default_mw;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t h, unsigned *min, unsigned *max) {
    DEVICE(h, F_POWER_LIMIT);
    NOT_MIG();
    if (!min || !max) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *min = g->limit_min_mw;
    *max = g->limit_max_mw;
    RETURN(NVML_SUCCESS);
}

static nvmlReturn_t write_state(void) {
    char tmp[sizeof state_path + 16];
    snprintf(tmp, sizeof tmp, "%s.%d", state_path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return NVML_ERROR_UNKNOWN;
    for (int i = 0; i < MAX_GPUS; i++)
        if (limits_mw[i]) fprintf(f, "limit %d %u\n", i, limits_mw[i]);
    if (fclose(f) != 0 || rename(tmp, state_path) != 0) { unlink(tmp); return NVML_ERROR_UNKNOWN; }
    return NVML_SUCCESS;
}

static nvmlReturn_t set_limit(nvmlDevice_t h, unsigned limit) {
    DEVICE(h, F_POWER_LIMIT);
    NOT_MIG();
    if (g->set_limit == 1 || (g->set_limit == 2 && geteuid() != 0)) RETURN(NVML_ERROR_NO_PERMISSION);
    if (limit < g->limit_min_mw || limit > g->limit_max_mw) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    /* Integrate energy up to now under the old limit before the new one applies. */
    if (!(g->unsupported & F_ENERGY)) energy_mj(idx);
    limits_mw[idx] = limit == g->limit_default_mw ? 0 : limit;
    nvmlReturn_t rc = write_state();
    struct stat st;
    if (rc == NVML_SUCCESS && stat(state_path, &st) == 0) {
        state_mtime = st.st_mtim; state_size = st.st_size; state_ino = st.st_ino;
    }
    RETURN(rc);
}

EXPORT nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t h, unsigned limit) { return set_limit(h, limit); }

typedef struct { unsigned version; unsigned powerScope; unsigned powerValueMw; } nvmlPowerValue_v2_t;
EXPORT nvmlReturn_t nvmlDeviceSetPowerManagementLimit_v2(nvmlDevice_t h, nvmlPowerValue_v2_t *value) {
    if (!value) return NVML_ERROR_INVALID_ARGUMENT;
    if (value->version != 0x0200000C) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (value->powerScope != 0) return NVML_ERROR_NOT_SUPPORTED; /* only NVML_POWER_SCOPE_GPU */
    return set_limit(h, value->powerValueMw);
}

/* ---- thermals, memory, utilisation, clocks --------------------------------------------- */

static double gpu_temperature(int i, double t) {
    return gpus[i].temp_idle + gpus[i].temp_per_watt * power_mw(i, t) / 1000.0;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t h, int sensor, unsigned *temp) {
    DEVICE(h, F_TEMPERATURE);
    NOT_MIG();
    if (!temp || sensor != 0) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *temp = (unsigned)lround(gpu_temperature(idx, now_s()));
    RETURN(NVML_SUCCESS);
}

typedef struct { unsigned version; int sensorType; int temperature; } nvmlTemperature_v1_t;
EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t h, nvmlTemperature_v1_t *t) {
    DEVICE(h, F_TEMPERATURE);
    NOT_MIG();
    if (!t) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (t->version != 0x100000C) RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    if (t->sensorType != 0) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    t->temperature = (int)lround(gpu_temperature(idx, now_s()));
    RETURN(NVML_SUCCESS);
}

static void memory_of(int i, int mig, double t, unsigned long long *total, unsigned long long *used) {
    const struct gpu *g = &gpus[i];
    if (mig >= 0) { *total = g->migs[mig].memory_total; *used = g->migs[mig].memory_used; return; }
    *total = g->memory_total;
    double u = (double)g->memory_used;
    if (g->memory_used_amplitude != 0 && g->util_period_s > 0)
        u += g->memory_used_amplitude * sin(2 * M_PI * (t / g->util_period_s + g->phase));
    if (u < 0) u = 0;
    if (u > (double)g->memory_total) u = (double)g->memory_total;
    /* Page granularity, like the driver's accounting. */
    *used = ((unsigned long long)u) & ~0xFFFFFULL;
}

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t h, nvmlMemory_t *m) {
    DEVICE(h, F_MEMORY);
    if (!m) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    memory_of(idx, mig, now_s(), &m->total, &m->used);
    m->free = m->total - m->used;
    RETURN(NVML_SUCCESS);
}

typedef struct { unsigned version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t h, nvmlMemory_v2_t *m) {
    DEVICE(h, F_MEMORY);
    if (!m) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (m->version != 0x02000028) RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    memory_of(idx, mig, now_s(), &m->total, &m->used);
    m->reserved = mig >= 0 ? 0 : 512ULL << 20;
    m->free = m->total - m->used - m->reserved;
    RETURN(NVML_SUCCESS);
}

typedef struct { unsigned gpu, memory; } nvmlUtilization_t;
EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t h, nvmlUtilization_t *u) {
    DEVICE(h, F_UTILIZATION);
    NOT_MIG();
    if (!u) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    double x = utilization_at(g, now_s());
    u->gpu = (unsigned)lround(100 * x);
    u->memory = (unsigned)lround(60 * x);
    RETURN(NVML_SUCCESS);
}

static int power_capped(int i, double t) { return demand_mw(&gpus[i], t) > current_limit(i); }

static unsigned sm_clock(int i, double t) {
    const struct gpu *g = &gpus[i];
    double u = utilization_at(g, t);
    if (u < 0.05) return g->sm_clock_idle;
    if (!power_capped(i, t)) return g->sm_clock_max;
    /* Under a power cap the clock drops with the share of the dynamic power that is allowed. */
    double share = (current_limit(i) - (double)g->power_idle_mw) / (demand_mw(g, t) - g->power_idle_mw);
    double mhz = g->sm_clock_idle + (g->sm_clock_max - (double)g->sm_clock_idle) * (share < 0 ? 0 : share);
    return (unsigned)mhz / 15 * 15;
}

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t h, int type, unsigned *clock) {
    DEVICE(h, F_CLOCKS);
    NOT_MIG();
    if (!clock || type < 0 || type > 3) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *clock = type == 2 ? g->mem_clock : type == 3 ? sm_clock(idx, now_s()) * 9 / 10 : sm_clock(idx, now_s());
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t h, int type, unsigned *clock) {
    DEVICE(h, F_CLOCKS);
    NOT_MIG();
    if (!clock || type < 0 || type > 3) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *clock = type == 2 ? g->mem_clock : type == 3 ? g->sm_clock_max * 9 / 10 : g->sm_clock_max;
    RETURN(NVML_SUCCESS);
}

static unsigned long long clock_events(int i, double t) {
    unsigned long long reasons = 0;
    if (utilization_at(&gpus[i], t) < 0.05) reasons |= 0x1;  /* GPU idle */
    if (power_capped(i, t)) reasons |= 0x4;                    /* SW power cap */
    if (gpu_temperature(i, t) >= 87) reasons |= 0x20;          /* SW thermal slowdown */
    return reasons;
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t h, unsigned long long *reasons) {
    DEVICE(h, F_CLOCK_EVENTS);
    NOT_MIG();
    if (!reasons) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *reasons = clock_events(idx, now_s());
    RETURN(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t h, unsigned long long *reasons) {
    return nvmlDeviceGetCurrentClocksEventReasons(h, reasons);
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t h, int errorType, int counterType,
                                                unsigned long long *count) {
    DEVICE(h, F_ECC);
    NOT_MIG();
    if (!count || errorType < 0 || errorType > 1 || counterType < 0 || counterType > 1)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (counterType == 0) *count = errorType == 0 ? g->ecc_corrected_volatile : g->ecc_uncorrected_volatile;
    else *count = errorType == 0 ? g->ecc_corrected : g->ecc_uncorrected;
    RETURN(NVML_SUCCESS);
}

/* ---- field values ---------------------------------------------------------------------- */

typedef union { double dVal; unsigned uiVal; unsigned long ulVal; unsigned long long ullVal;
                long long sllVal; int siVal; unsigned short usVal; } nvmlValue_t;
typedef struct {
    unsigned fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

enum { VT_UINT = 1, VT_ULL = 3 };

static nvmlReturn_t field(int i, double t, nvmlFieldValue_t *v) {
    const struct gpu *g = &gpus[i];
#define NEED(bit) if (g->unsupported & (bit)) return NVML_ERROR_NOT_SUPPORTED
    switch (v->fieldId) {
    case 3: NEED(F_ECC); v->valueType = VT_ULL; v->value.ullVal = g->ecc_corrected_volatile; return 0;
    case 4: NEED(F_ECC); v->valueType = VT_ULL; v->value.ullVal = g->ecc_uncorrected_volatile; return 0;
    case 5: NEED(F_ECC); v->valueType = VT_ULL; v->value.ullVal = g->ecc_corrected; return 0;
    case 6: NEED(F_ECC); v->valueType = VT_ULL; v->value.ullVal = g->ecc_uncorrected; return 0;
    case 82:
        NEED(F_MEMORY_TEMP); NEED(F_TEMPERATURE);
        v->valueType = VT_UINT;
        v->value.uiVal = (unsigned)lround(gpu_temperature(i, t) + g->memory_temp_offset);
        return 0;
    case 83: NEED(F_ENERGY); v->valueType = VT_ULL; v->value.ullVal = (unsigned long long)energy_mj(i); return 0;
    /* The driver answers the replay counter as an unsigned int (seen on R580). */
    case 94: NEED(F_PCIE); v->valueType = VT_UINT; v->value.uiVal = (unsigned)g->pcie_replays; return 0;
    case 185: case 186:
        NEED(F_POWER); v->valueType = VT_UINT; v->value.uiVal = (unsigned)power_mw(i, t); return 0;
    case 187: NEED(F_POWER_LIMIT); v->valueType = VT_UINT; v->value.uiVal = g->limit_min_mw; return 0;
    case 188: NEED(F_POWER_LIMIT); v->valueType = VT_UINT; v->value.uiVal = g->limit_max_mw; return 0;
    case 189: NEED(F_POWER_LIMIT); v->valueType = VT_UINT; v->value.uiVal = g->limit_default_mw; return 0;
    case 190: case 192:
        NEED(F_POWER_LIMIT); v->valueType = VT_UINT; v->value.uiVal = current_limit(i); return 0;
    default: return NVML_ERROR_NOT_SUPPORTED;
    }
#undef NEED
}

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t h, int count, nvmlFieldValue_t *values) {
    DEVICE(h, 0);
    NOT_MIG();
    if (!values || count <= 0) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    double t = now_s();
    for (int k = 0; k < count; k++) {
        values[k].timestamp = (long long)(t * 1e6);
        values[k].latencyUsec = 0;
        memset(&values[k].value, 0, sizeof values[k].value);
        values[k].nvmlReturn = field(idx, t, &values[k]);
    }
    RETURN(NVML_SUCCESS);
}

/* ---- MIG ----------------------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t h, unsigned *current, unsigned *pending) {
    DEVICE(h, F_MIG);
    NOT_MIG();
    if (!current || !pending) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *current = *pending = g->mig_mode ? 1 : 0;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t h, unsigned *count) {
    DEVICE(h, F_MIG);
    NOT_MIG();
    if (!count) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *count = MAX_MIG;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t h, unsigned index, nvmlDevice_t *out) {
    DEVICE(h, F_MIG);
    NOT_MIG();
    if (!out || index >= MAX_MIG) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (!g->mig_mode) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (index >= (unsigned)g->nmig) RETURN(NVML_ERROR_NOT_FOUND);
    *out = &mig_handles[idx][index];
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t h, unsigned *is_mig) {
    DEVICE(h, 0);
    if (!is_mig) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *is_mig = mig >= 0;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t h, unsigned *id) {
    DEVICE(h, 0);
    if (!id) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (mig < 0) RETURN(NVML_ERROR_NOT_SUPPORTED);
    *id = g->migs[mig].gi;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t h, unsigned *id) {
    DEVICE(h, 0);
    if (!id) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (mig < 0) RETURN(NVML_ERROR_NOT_SUPPORTED);
    *id = g->migs[mig].ci;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t h, nvmlDevice_t *out) {
    DEVICE(h, 0);
    if (!out) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (mig < 0) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *out = &handles[idx];
    RETURN(NVML_SUCCESS);
}

/* ---- events (XIDs) ---------------------------------------------------------------------- */

typedef struct event_set *nvmlEventSet_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

#define XID_EVENT 0x8ULL
#define SUPPORTED_EVENTS (0x1ULL | 0x2ULL | 0x4ULL | 0x8ULL | 0x10ULL)

EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    ENTER();
    if (!set) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    for (int i = 0; i < MAX_SETS; i++)
        if (!sets[i].used) {
            memset(&sets[i], 0, sizeof sets[i]);
            sets[i].used = 1;
            *set = &sets[i];
            RETURN(NVML_SUCCESS);
        }
    RETURN(NVML_ERROR_UNKNOWN);
}

static int valid_set(nvmlEventSet_t set) {
    return set >= sets && set < sets + MAX_SETS && set->used;
}

EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t h, unsigned long long *types) {
    DEVICE(h, F_EVENTS);
    NOT_MIG();
    if (!types) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *types = SUPPORTED_EVENTS;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t h, unsigned long long types, nvmlEventSet_t set) {
    DEVICE(h, F_EVENTS);
    NOT_MIG();
    if (!valid_set(set)) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (types & ~SUPPORTED_EVENTS) RETURN(NVML_ERROR_NOT_SUPPORTED);
    if (!set->types[idx]) set->delivered[idx] = g->nxids; /* only events from now on */
    set->types[idx] |= types;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeout_ms) {
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    double deadline = now_s() + timeout_ms / 1000.0;
    for (;;) {
        pthread_mutex_lock(&lock);
        if (!initialized) RETURN(NVML_ERROR_UNINITIALIZED);
        if (!valid_set(set) || !data) RETURN(NVML_ERROR_INVALID_ARGUMENT);
        refresh();
        for (int i = 0; i < ngpus; i++) {
            if (!(set->types[i] & XID_EVENT) || gpus[i].lost) continue;
            if (set->delivered[i] > gpus[i].nxids) set->delivered[i] = gpus[i].nxids; /* list shrank */
            if (set->delivered[i] < gpus[i].nxids) {
                data->device = &handles[i];
                data->eventType = XID_EVENT;
                data->eventData = gpus[i].xids[set->delivered[i]++];
                data->gpuInstanceId = data->computeInstanceId = 0xFFFFFFFFu;
                RETURN(NVML_SUCCESS);
            }
        }
        pthread_mutex_unlock(&lock);
        if (now_s() >= deadline) return NVML_ERROR_TIMEOUT;
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeout_ms) {
    return nvmlEventSetWait_v2(set, data, timeout_ms);
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    ENTER();
    if (!valid_set(set)) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    set->used = 0;
    RETURN(NVML_SUCCESS);
}
