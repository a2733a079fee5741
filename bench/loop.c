/* The floor scripts/bench.sh measures hsmkey against: the same bulk jobs as
 * hsmkey's backup, restore, verify and key list, written as a bare loop over
 * the PKCS#11 function list, with no checks beyond the ones each job needs
 * (docs/PERFORMANCE.md).
 *
 *   loop MODULE TOKEN-LABEL MODE ARGS...      (the user PIN in HSMKEY_PIN)
 *
 *   backup KEK OUT       one search for the token's secret keys; per key one
 *                        C_GetAttributeValue (label, id, type, extractable)
 *                        and one C_WrapKey under the key labelled KEK
 *   backupfull KEK OUT   as backup, reading what a bundle records: class,
 *                        type, label, id, value length, the seven usages,
 *                        sensitive, extractable, wrap-with-trusted, private,
 *                        check value
 *   restore KEK IN       one C_UnwrapKey per line of IN into a token object
 *                        with the line's label, id and usages
 *   restorefull KEK IN   restore, and each new key's check value computed in
 *                        the token (AES-ECB of a zero block) and compared
 *   verify KEK IN        each line unwrapped into a session object, its check
 *                        value compared, the object destroyed
 *   list                 one search for the token's key objects; per object
 *                        one C_GetAttributeValue of what `key list` shows
 *
 * OUT/IN hold one line per key: label, id, usage bits, check value and the
 * wrapped key, all in hex. Secret keys are wrapped with CKM_AES_KEY_WRAP
 * (RFC 3394), as hsmkey wraps AES keys. Prints "MODE keys=N seconds=S".
 *
 * HSMKEY_LOOP_SESSIONS=N (default 1) spreads the per-key calls of backup,
 * restore and verify over N threads, each with its own session, as
 * `hsmkey --sessions N` does (lines are then written in any order): the
 * speed-up a token gives on N sessions, with nothing of hsmkey's around it.
 *
 * Build: gcc -O2 -pthread -I/usr/include/p11-kit-1 bench/loop.c -o loop -ldl
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <p11-kit/pkcs11.h>

#define WRAP_MECHANISM 0x2109UL /* CKM_AES_KEY_WRAP */
#define MAX_FIELD 256
#define BATCH 1024

static CK_FUNCTION_LIST_PTR p11;
/* Each thread's own session (the main thread's is logged in). */
static __thread CK_SESSION_HANDLE session;
static CK_SLOT_ID slot;
static int sessions = 1;
static pthread_mutex_t output = PTHREAD_MUTEX_INITIALIZER;

static void must(CK_RV rv, const char *what)
{
    if (rv != CKR_OK) {
        fprintf(stderr, "loop: %s failed: 0x%08lx\n", what, (unsigned long)rv);
        exit(1);
    }
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The token whose label is `label`, padded with spaces to 32 bytes. */
static CK_SLOT_ID slot_of(const char *label)
{
    CK_ULONG count = 0;
    must(p11->C_GetSlotList(CK_TRUE, NULL, &count), "C_GetSlotList");
    CK_SLOT_ID *slots = calloc(count ? count : 1, sizeof *slots);
    must(p11->C_GetSlotList(CK_TRUE, slots, &count), "C_GetSlotList");
    char padded[32];
    memset(padded, ' ', sizeof padded);
    memcpy(padded, label, strlen(label) < 32 ? strlen(label) : 32);
    for (CK_ULONG i = 0; i < count; i++) {
        CK_TOKEN_INFO info;
        if (p11->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
            memcmp(info.label, padded, sizeof padded) == 0) {
            CK_SLOT_ID found = slots[i];
            free(slots);
            return found;
        }
    }
    fprintf(stderr, "loop: no token labelled %s\n", label);
    exit(1);
}

/* Every object matching `query`, from one search. */
static CK_OBJECT_HANDLE *search(CK_ATTRIBUTE *query, CK_ULONG n, long *found)
{
    long cap = BATCH, count = 0;
    CK_OBJECT_HANDLE *all = malloc(cap * sizeof *all);
    must(p11->C_FindObjectsInit(session, query, n), "C_FindObjectsInit");
    for (;;) {
        if (count + BATCH > cap) {
            cap *= 2;
            all = realloc(all, cap * sizeof *all);
        }
        CK_ULONG got = 0;
        must(p11->C_FindObjects(session, all + count, BATCH, &got), "C_FindObjects");
        if (got == 0)
            break;
        count += (long)got;
    }
    must(p11->C_FindObjectsFinal(session), "C_FindObjectsFinal");
    *found = count;
    return all;
}

static CK_OBJECT_HANDLE key_labelled(const char *label)
{
    CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE query[] = {
        {CKA_CLASS, &secret, sizeof secret},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    long n = 0;
    CK_OBJECT_HANDLE *found = search(query, 3, &n);
    if (n != 1) {
        fprintf(stderr, "loop: %ld keys labelled %s\n", n, label);
        exit(1);
    }
    CK_OBJECT_HANDLE key = found[0];
    free(found);
    return key;
}

static void put_hex(FILE *out, const unsigned char *bytes, CK_ULONG n)
{
    static const char digits[] = "0123456789abcdef";
    for (CK_ULONG i = 0; i < n; i++) {
        putc(digits[bytes[i] >> 4], out);
        putc(digits[bytes[i] & 15], out);
    }
    putc(n ? ' ' : '-', out);
    if (!n)
        putc(' ', out);
}

static CK_ULONG get_hex(char **cursor, unsigned char *out, CK_ULONG max)
{
    char *p = *cursor;
    CK_ULONG n = 0;
    if (*p == '-') {
        p++;
    } else {
        while (p[0] && p[0] != ' ' && p[0] != '\n' && n < max) {
            unsigned int byte;
            sscanf(p, "%2x", &byte);
            out[n++] = (unsigned char)byte;
            p += 2;
        }
    }
    while (*p == ' ')
        p++;
    *cursor = p;
    return n;
}

/* The seven usages, in the order of a line's usage bits. */
static const CK_ATTRIBUTE_TYPE USAGES[7] = {CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY,
                                            CKA_WRAP,    CKA_UNWRAP,  CKA_DERIVE};

/* One key: its attributes read, wrapped, its line written; 1 when written. */
static long backup_one(CK_OBJECT_HANDLE kek, CK_OBJECT_HANDLE key, FILE *out, int full)
{
    CK_MECHANISM wrap = {WRAP_MECHANISM, NULL, 0};
    unsigned char label[MAX_FIELD], id[MAX_FIELD], kcv[16], wrapped[1024];
    CK_OBJECT_CLASS class;
    CK_KEY_TYPE type;
    CK_ULONG length;
    CK_BBOOL usage[7], sensitive, extractable, trusted, private;
    CK_ATTRIBUTE attrs[17] = {
        {CKA_LABEL, label, sizeof label},
        {CKA_ID, id, sizeof id},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_CLASS, &class, sizeof class},
        {CKA_VALUE_LEN, &length, sizeof length},
        {CKA_SENSITIVE, &sensitive, sizeof sensitive},
        {CKA_WRAP_WITH_TRUSTED, &trusted, sizeof trusted},
        {CKA_PRIVATE, &private, sizeof private},
        {CKA_CHECK_VALUE, kcv, sizeof kcv},
    };
    CK_ULONG count = full ? 10 : 4;
    for (int u = 0; full && u < 7; u++) {
        attrs[count].type = USAGES[u];
        attrs[count].pValue = &usage[u];
        attrs[count++].ulValueLen = sizeof usage[u];
    }
    CK_RV rv = p11->C_GetAttributeValue(session, key, attrs, count);
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
        must(rv, "C_GetAttributeValue");
    if (key == kek || extractable != CK_TRUE)
        return 0;
    CK_ULONG wrapped_len = sizeof wrapped;
    must(p11->C_WrapKey(session, &wrap, kek, key, wrapped, &wrapped_len), "C_WrapKey");
    unsigned char bits = 0;
    for (int u = 0; full && u < 7; u++)
        bits |= (unsigned char)((usage[u] == CK_TRUE) << u);
    if (!full)
        bits = 3; /* encrypt, decrypt */
    CK_ULONG kcv_len = full && attrs[9].ulValueLen != CK_UNAVAILABLE_INFORMATION ? attrs[9].ulValueLen : 0;
    pthread_mutex_lock(&output);
    put_hex(out, label, attrs[0].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : attrs[0].ulValueLen);
    put_hex(out, id, attrs[1].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : attrs[1].ulValueLen);
    put_hex(out, &bits, 1);
    put_hex(out, kcv, kcv_len > 3 ? 3 : kcv_len);
    put_hex(out, wrapped, wrapped_len);
    putc('\n', out);
    pthread_mutex_unlock(&output);
    return 1;
}

/* The work of one thread: items `first`, `first + sessions`, ... */
struct share {
    int first;
    long (*one)(struct share *, long);
    long items, done;
    CK_OBJECT_HANDLE kek;
    CK_OBJECT_HANDLE *keys;
    FILE *out;
    int kind;
};

static void *worker(void *arg)
{
    struct share *w = arg;
    if (w->first > 0)
        must(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &session),
             "C_OpenSession");
    for (long i = w->first; i < w->items; i += sessions)
        w->done += w->one(w, i);
    if (w->first > 0)
        p11->C_CloseSession(session);
    return NULL;
}

/* Run `one` on items 0..items-1 over `sessions` threads (the first on this
 * thread's session); the number done. */
static long spread(struct share proto)
{
    struct share shares[64];
    pthread_t threads[64];
    CK_SESSION_HANDLE mine = session;
    long done = 0;
    for (int t = 0; t < sessions; t++) {
        shares[t] = proto;
        shares[t].first = t;
        shares[t].done = 0;
        if (t > 0)
            pthread_create(&threads[t], NULL, worker, &shares[t]);
    }
    worker(&shares[0]);
    for (int t = 1; t < sessions; t++)
        pthread_join(threads[t], NULL);
    session = mine;
    for (int t = 0; t < sessions; t++)
        done += shares[t].done;
    return done;
}

static long backup_item(struct share *w, long i)
{
    return backup_one(w->kek, w->keys[i], w->out, w->kind);
}

static long backup(CK_OBJECT_HANDLE kek, const char *path, int full)
{
    CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE query[] = {{CKA_CLASS, &secret, sizeof secret}, {CKA_TOKEN, &yes, sizeof yes}};
    long n = 0;
    CK_OBJECT_HANDLE *keys = search(query, 2, &n);
    FILE *out = fopen(path, "w");
    if (!out) {
        perror(path);
        exit(1);
    }
    struct share w = {.one = backup_item, .items = n, .kek = kek, .keys = keys, .out = out, .kind = full};
    long done = spread(w);
    fclose(out);
    free(keys);
    return done;
}

/* AES-ECB of a zero block under `key`, compared with the first bytes of `kcv`. */
static void check_kcv(CK_OBJECT_HANDLE key, const unsigned char *kcv, CK_ULONG kcv_len)
{
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    unsigned char zero[16] = {0}, block[16];
    CK_ULONG block_len = sizeof block;
    must(p11->C_EncryptInit(session, &ecb, key), "C_EncryptInit");
    must(p11->C_Encrypt(session, zero, sizeof zero, block, &block_len), "C_Encrypt");
    if (kcv_len == 0 || memcmp(block, kcv, kcv_len) != 0) {
        fprintf(stderr, "loop: check value differs\n");
        exit(1);
    }
}

enum restore_kind { RESTORE, RESTORE_FULL, VERIFY };

/* One line of IN: unwrapped, checked, destroyed again for verify. */
static long restore_one(CK_OBJECT_HANDLE kek, char *line, enum restore_kind kind)
{
    CK_MECHANISM unwrap = {WRAP_MECHANISM, NULL, 0};
    CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE, token = kind == VERIFY ? CK_FALSE : CK_TRUE;
    unsigned char label[MAX_FIELD], id[MAX_FIELD], bits = 0, kcv[16], wrapped[2048];
    char *cursor = line;
    CK_ULONG label_len = get_hex(&cursor, label, sizeof label);
    CK_ULONG id_len = get_hex(&cursor, id, sizeof id);
    get_hex(&cursor, &bits, 1);
    CK_ULONG kcv_len = get_hex(&cursor, kcv, sizeof kcv);
    CK_ULONG wrapped_len = get_hex(&cursor, wrapped, sizeof wrapped);
    CK_BBOOL usage[7];
    CK_ATTRIBUTE template[16] = {
        {CKA_CLASS, &secret, sizeof secret},
        {CKA_KEY_TYPE, &aes, sizeof aes},
        {CKA_TOKEN, &token, sizeof token},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
        {CKA_WRAP_WITH_TRUSTED, &no, sizeof no},
        {CKA_LABEL, label, label_len},
        {CKA_ID, id, id_len},
    };
    /* A check copy: a sensitive session key that may only encrypt. */
    CK_ULONG count = kind == VERIFY ? 4 : 9;
    for (int u = 0; u < 7; u++) {
        usage[u] = (bits >> u) & 1 ? CK_TRUE : CK_FALSE;
        if (kind == VERIFY && u > 0)
            continue;
        template[count].type = USAGES[u];
        template[count].pValue = kind == VERIFY ? &yes : &usage[u];
        template[count++].ulValueLen = sizeof usage[u];
    }
    CK_OBJECT_HANDLE key;
    must(p11->C_UnwrapKey(session, &unwrap, kek, wrapped, wrapped_len, template, count, &key),
         "C_UnwrapKey");
    if (kind != RESTORE)
        check_kcv(key, kcv, kcv_len);
    if (kind == VERIFY)
        must(p11->C_DestroyObject(session, key), "C_DestroyObject");
    return 1;
}

/* Lines are taken one at a time from the shared input, so the loop holds
 * no list of them whatever the number of sessions. */
static FILE *input;

static long restore_item(struct share *w, long i)
{
    char line[8192];
    (void)i;
    pthread_mutex_lock(&output);
    char *got = fgets(line, sizeof line, input);
    pthread_mutex_unlock(&output);
    if (!got) {
        w->items = 0; /* this thread stops: the input is done */
        return 0;
    }
    return restore_one(w->kek, line, (enum restore_kind)w->kind);
}

static long restore(CK_OBJECT_HANDLE kek, const char *path, enum restore_kind kind)
{
    input = fopen(path, "r");
    if (!input) {
        perror(path);
        exit(1);
    }
    struct share w = {.one = restore_item, .items = LONG_MAX, .kek = kek, .kind = kind};
    long done = spread(w);
    fclose(input);
    return done;
}

static long list(void)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE query[] = {{CKA_TOKEN, &yes, sizeof yes}};
    long n = 0, done = 0;
    CK_OBJECT_HANDLE *objects = search(query, 1, &n);
    for (long i = 0; i < n; i++) {
        unsigned char label[MAX_FIELD], id[MAX_FIELD], kcv[16];
        CK_OBJECT_CLASS class;
        CK_KEY_TYPE type;
        CK_ULONG length;
        CK_BBOOL flags[16];
        CK_ATTRIBUTE attrs[] = {
            {CKA_CLASS, &class, sizeof class},
            {CKA_KEY_TYPE, &type, sizeof type},
            {CKA_LABEL, label, sizeof label},
            {CKA_ID, id, sizeof id},
            {CKA_VALUE_LEN, &length, sizeof length},
            {CKA_ENCRYPT, &flags[0], 1},
            {CKA_DECRYPT, &flags[1], 1},
            {CKA_SIGN, &flags[2], 1},
            {CKA_VERIFY, &flags[3], 1},
            {CKA_WRAP, &flags[4], 1},
            {CKA_UNWRAP, &flags[5], 1},
            {CKA_DERIVE, &flags[6], 1},
            {CKA_SENSITIVE, &flags[7], 1},
            {CKA_EXTRACTABLE, &flags[8], 1},
            {CKA_ALWAYS_SENSITIVE, &flags[9], 1},
            {CKA_NEVER_EXTRACTABLE, &flags[10], 1},
            {CKA_WRAP_WITH_TRUSTED, &flags[11], 1},
            {CKA_TRUSTED, &flags[12], 1},
            {CKA_PRIVATE, &flags[13], 1},
            {CKA_LOCAL, &flags[14], 1},
            {CKA_MODIFIABLE, &flags[15], 1},
            {CKA_CHECK_VALUE, kcv, sizeof kcv},
        };
        CK_RV rv = p11->C_GetAttributeValue(session, objects[i], attrs, sizeof attrs / sizeof *attrs);
        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
            must(rv, "C_GetAttributeValue");
        if (class == CKO_SECRET_KEY || class == CKO_PRIVATE_KEY || class == CKO_PUBLIC_KEY)
            done++;
    }
    free(objects);
    return done;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: loop MODULE TOKEN-LABEL backup|backupfull|restore|restorefull|verify KEK FILE\n"
                        "       loop MODULE TOKEN-LABEL list\n");
        return 2;
    }
    const char *pin = getenv("HSMKEY_PIN");
    if (!pin) {
        fprintf(stderr, "loop: set HSMKEY_PIN\n");
        return 2;
    }
    void *module = dlopen(argv[1], RTLD_NOW);
    if (!module) {
        fprintf(stderr, "loop: %s\n", dlerror());
        return 1;
    }
    CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(module, "C_GetFunctionList");
    if (!get_list) {
        fprintf(stderr, "loop: no C_GetFunctionList in %s\n", argv[1]);
        return 1;
    }
    must(get_list(&p11), "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS init = {.flags = CKF_OS_LOCKING_OK};
    must(p11->C_Initialize(&init), "C_Initialize");
    const char *n = getenv("HSMKEY_LOOP_SESSIONS");
    sessions = n ? atoi(n) : 1;
    if (sessions < 1 || sessions > 64) {
        fprintf(stderr, "loop: HSMKEY_LOOP_SESSIONS is 1 to 64\n");
        return 2;
    }
    slot = slot_of(argv[2]);
    must(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &session),
         "C_OpenSession");
    must(p11->C_Login(session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), "C_Login");

    const char *mode = argv[3];
    double start = seconds();
    long keys = 0;
    if (strcmp(mode, "list") == 0) {
        keys = list();
    } else if (argc == 6) {
        CK_OBJECT_HANDLE kek = key_labelled(argv[4]);
        if (strcmp(mode, "backup") == 0)
            keys = backup(kek, argv[5], 0);
        else if (strcmp(mode, "backupfull") == 0)
            keys = backup(kek, argv[5], 1);
        else if (strcmp(mode, "restore") == 0)
            keys = restore(kek, argv[5], RESTORE);
        else if (strcmp(mode, "restorefull") == 0)
            keys = restore(kek, argv[5], RESTORE_FULL);
        else if (strcmp(mode, "verify") == 0)
            keys = restore(kek, argv[5], VERIFY);
        else
            return 2;
    } else {
        return 2;
    }
    printf("%s keys=%ld seconds=%.3f\n", mode, keys, seconds() - start);
    p11->C_Logout(session);
    p11->C_CloseSession(session);
    p11->C_Finalize(NULL);
    return 0;
}
