/*
 * A crmkit stage guard in C (plugin ABI version 1, plugins/ABI.md): a deal enters the
 * stage named by the manifest's config `stage` only when its amount is at least
 * `min_amount`. No libc: a bump allocator over linear memory and just enough JSON scanning
 * for the compact JSON the host writes.
 *
 * clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o c_guard.wasm guard.c
 */

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define EXPORT(name) __attribute__((export_name(name)))
#define IMPORT(name) __attribute__((import_module("crmkit_v1"), import_name(name)))

IMPORT("log") void host_log(int level, const char *ptr, int len);
IMPORT("config") i64 host_config(void);

/* The linker's end of static data: the heap starts there. */
extern unsigned char __heap_base;
static u32 heap_next;

EXPORT("crmkit_abi_v1") void crmkit_abi_v1(void) {}

EXPORT("crmkit_alloc") void *crmkit_alloc(int len) {
    if (!heap_next) heap_next = (u32)&__heap_base;
    u32 at = (heap_next + 7) & ~7u;
    u32 end = at + (u32)(len > 0 ? len : 1);
    u32 have = (u32)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        u32 pages = (end - have + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, pages) == (unsigned long)-1) return 0;
    }
    heap_next = end;
    return (void *)at;
}

/* The compiler may call these for copies; there is no libc to provide them. */
void *memcpy(void *dst, const void *src, unsigned long n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, unsigned long n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

static u32 length(const char *s) {
    u32 n = 0;
    while (s[n]) n++;
    return n;
}

/* The first occurrence of `needle` in text[0..len), or 0. */
static const char *find(const char *text, u32 len, const char *needle) {
    u32 n = length(needle);
    for (u32 i = 0; i + n <= len; i++) {
        u32 j = 0;
        while (j < n && text[i + j] == needle[j]) j++;
        if (j == n) return text + i;
    }
    return 0;
}

/* The text value of `"key":"…"` in text[0..len): its start and length (no escapes expected). */
static const char *string_of(const char *text, u32 len, const char *key, u32 *out_len) {
    const char *at = find(text, len, key);
    if (!at) return 0;
    at += length(key);
    const char *end = text + len;
    const char *v = at;
    while (v < end && *v != '"') v++;
    *out_len = (u32)(v - at);
    return v < end ? at : 0;
}

/* Digits at `p` as a number (stops at the first non-digit, so "12500.00" is 12500). */
static u64 number_at(const char *p, const char *end) {
    u64 n = 0;
    while (p < end && *p >= '0' && *p <= '9') n = n * 10 + (u64)(*p++ - '0');
    return n;
}

static char answer[256];
static u32 answer_len;

static void put(const char *s, u32 n) {
    for (u32 i = 0; i < n && answer_len < sizeof answer; i++) answer[answer_len++] = s[i];
}

static void put_str(const char *s) { put(s, length(s)); }

static void put_number(u64 n) {
    char digits[24];
    u32 k = 0;
    do { digits[k++] = (char)('0' + n % 10); n /= 10; } while (n);
    while (k) put(&digits[--k], 1);
}

static i64 pack(const char *ptr, u32 len) { return (i64)(((u64)(u32)ptr << 32) | len); }

EXPORT("guard") i64 guard(const char *input, int len) {
    /* The config: {"min_amount":50000,"stage":"needs_analysis"} */
    i64 packed = host_config();
    const char *config = (const char *)(u32)((u64)packed >> 32);
    u32 config_len = (u32)packed;
    u32 stage_len = 0;
    const char *stage = string_of(config, config_len, "\"stage\":\"", &stage_len);
    const char *min = find(config, config_len, "\"min_amount\":");
    if (!stage || !min) {
        static const char bad[] = "{\"error\":\"config needs stage (text) and min_amount (a number)\"}";
        return pack(bad, sizeof bad - 1);
    }
    u64 min_amount = number_at(min + 13, config + config_len);

    /* Only a move into the stage is checked. */
    u32 to_len = 0;
    const char *to = string_of(input, (u32)len, "\"to_stage\":\"", &to_len);
    static const char allow[] = "null";
    if (!to || to_len != stage_len) return pack(allow, 4);
    for (u32 i = 0; i < to_len; i++)
        if (to[i] != stage[i]) return pack(allow, 4);

    /* The deal as it will be stored is "after"; its amount is decimal text. */
    const char *after = find(input, (u32)len, "\"after\":{");
    u32 amount_len = 0;
    const char *amount =
        after ? string_of(after, (u32)(input + len - after), "\"amount\":\"", &amount_len) : 0;
    if (!amount) {
        static const char none[] = "{\"error\":\"the input has no deal amount\"}";
        return pack(none, sizeof none - 1);
    }
    if (number_at(amount, amount + amount_len) >= min_amount) return pack(allow, 4);

    answer_len = 0;
    put_str("{\"reject\":\"a deal enters ");
    put(stage, stage_len);
    put_str(" from an amount of ");
    put_number(min_amount);
    put_str(", this one is ");
    put(amount, amount_len);
    put_str("\",\"field\":\"amount\"}");
    host_log(2, answer, (int)answer_len);
    return pack(answer, answer_len);
}
