/*
 * A crmkit loyalty rule in C (plugin ABI version 1, plugins/ABI.md), bound to
 * `loyalty.accrue`: tiers by the card's cumulative turnover before the sale, each earning its
 * percent of the sale in points worth the program's point value, rounded down to hundredths.
 * The tiers are the manifest's config: `thresholds` (turnover from which a tier applies, in
 * currency units) and `percents`, lists of whole numbers of the same length. The same rule as
 * scripts/loyalty/tiers.rhai. No libc: a bump allocator over linear memory, fixed-point
 * decimals and just enough JSON scanning for the compact JSON the host writes.
 *
 * clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o c_loyalty.wasm loyalty.c
 */

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define EXPORT(name) __attribute__((export_name(name)))
#define IMPORT(name) __attribute__((import_module("crmkit_v1"), import_name(name)))

IMPORT("config") i64 host_config(void);

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

/* Frees what the last call allocated: an installation may keep the instance between calls
 * (`runtimes.wasm.reuse`). The answer is static, so nothing else needs clearing. */
EXPORT("crmkit_reset") void crmkit_reset(void) { heap_next = 0; }

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

/*
 * The decimal at p (digits, an optional point and fraction) times 10^scale, the fraction cut
 * to `scale` digits; *ok is cleared when there are no digits or the number is negative.
 */
static u64 fixed(const char *p, const char *end, u32 scale, int *ok) {
    u64 n = 0;
    u32 digits = 0;
    if (p < end && *p == '-') { *ok = 0; return 0; }
    while (p < end && *p >= '0' && *p <= '9') { n = n * 10 + (u64)(*p++ - '0'); digits++; }
    u32 frac = 0;
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            if (frac < scale) { n = n * 10 + (u64)(*p - '0'); frac++; }
            p++;
            digits++;
        }
    }
    while (frac++ < scale) n *= 10;
    if (!digits) *ok = 0;
    return n;
}

/* The decimal text value of `key` ("key":"…") in text[0..len), times 10^scale. */
static u64 decimal_of(const char *text, u32 len, const char *key, u32 scale, int *found) {
    const char *at = find(text, len, key);
    if (!at) { *found = 0; return 0; }
    at += length(key);
    return fixed(at, text + len, scale, found);
}

/* Reads the list of whole numbers after `key` ("key":[…]) into out; its length, or -1. */
static int numbers(const char *text, u32 len, const char *key, u64 *out, int max) {
    const char *at = find(text, len, key);
    if (!at) return -1;
    const char *p = at + length(key), *end = text + len;
    int n = 0;
    while (p < end && *p != ']') {
        if (*p >= '0' && *p <= '9') {
            if (n == max) return -1;
            int ok = 1;
            out[n++] = fixed(p, end, 0, &ok);
            while (p < end && ((*p >= '0' && *p <= '9') || *p == '.')) p++;
        } else {
            p++;
        }
    }
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

/* A number of hundredths as decimal text: 1234 is 12.34, 5 is 0.05. */
static void put_hundredths(u64 n) {
    put_number(n / 100);
    char frac[3] = {(char)('0' + n / 10 % 10), (char)('0' + n % 10), 0};
    put_str(".");
    put_str(frac);
}

static i64 pack(const char *ptr, u32 len) { return (i64)(((u64)(u32)ptr << 32) | len); }

static i64 fail(const char *message) {
    answer_len = 0;
    put_str("{\"error\":\"");
    put_str(message);
    put_str("\"}");
    return pack(answer, answer_len);
}

EXPORT("accrue") i64 accrue(const char *input, int len) {
    /* The config: {"percents":[1,3,5],"thresholds":[0,100000,500000]} */
    i64 packed = host_config();
    const char *config = (const char *)(u32)((u64)packed >> 32);
    u32 config_len = (u32)packed;
    u64 thresholds[16], percents[16];
    int tiers = numbers(config, config_len, "\"thresholds\":[", thresholds, 16);
    int pcts = numbers(config, config_len, "\"percents\":[", percents, 16);
    if (tiers < 1 || pcts != tiers) return fail("config needs thresholds and percents: lists of whole numbers of one length");

    /* The card, the program and the sale are the input's "loyalty". */
    const char *loyalty = find(input, (u32)len, "\"loyalty\":{");
    if (!loyalty) return fail("the input has no loyalty card (is the plugin bound to loyalty.accrue?)");
    u32 rest = (u32)(input + len - loyalty);
    int ok = 1;
    u64 turnover = decimal_of(loyalty, rest, "\"turnover\":\"", 2, &ok);
    u64 sale = decimal_of(loyalty, rest, "\"sale_amount\":\"", 2, &ok);
    if (!ok) return fail("the card's turnover or the sale's amount is not a decimal of 0 or more");
    int has_value = 1;
    u64 value = decimal_of(loyalty, rest, "\"point_value\":\"", 4, &has_value);
    if (!has_value || !value) value = 10000; /* one point is worth 1 */

    int tier = 0;
    for (int i = 0; i < tiers; i++)
        if (turnover >= thresholds[i] * 100) tier = i;
    u64 pct = percents[tier];
    /* points = sale * pct / 100 / value, in hundredths: sale (cents) * pct * 100 / value (1e-4). */
    u64 hundredths = sale * pct * 100 / value;

    answer_len = 0;
    put_str("{\"points\":\"");
    put_hundredths(hundredths);
    put_str("\",\"reason\":\"tier ");
    put_number((u64)tier + 1);
    put_str(": ");
    put_number(pct);
    put_str("% of the sale\"}");
    return pack(answer, answer_len);
}
