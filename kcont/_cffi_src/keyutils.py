"""libkeyutils (keyutils.h) and the keyctl uapi constants it builds on."""

# keyutils.h carries its own copies of the keyctl uapi structs, so it cannot
# share a translation unit with <linux/keyctl.h>.  The constants below are
# the long-established ones; the series' new keyctl numbers come from the
# patched <linux/keyctl.h> through their own module.
INCLUDES = """
#include <keyutils.h>
"""

TYPES = """
typedef int32_t key_serial_t;
typedef uint32_t key_perm_t;

static const int KEY_SPEC_THREAD_KEYRING;
static const int KEY_SPEC_PROCESS_KEYRING;
static const int KEY_SPEC_SESSION_KEYRING;
static const int KEY_SPEC_USER_KEYRING;
static const int KEY_SPEC_USER_SESSION_KEYRING;
static const int KEY_SPEC_GROUP_KEYRING;
static const int KEY_SPEC_REQKEY_AUTH_KEY;

static const int KEYCTL_GET_KEYRING_ID;
static const int KEYCTL_WATCH_KEY;
static const int KEYCTL_CAPABILITIES;
"""

FUNCTIONS = """
key_serial_t add_key(const char *type, const char *description,
                     const void *payload, size_t plen, key_serial_t ringid);
key_serial_t request_key(const char *type, const char *description,
                         const char *callout_info, key_serial_t destringid);
key_serial_t keyctl_get_keyring_ID(key_serial_t id, int create);
key_serial_t keyctl_join_session_keyring(const char *name);
long keyctl_update(key_serial_t id, const void *payload, size_t plen);
long keyctl_revoke(key_serial_t id);
long keyctl_setperm(key_serial_t id, key_perm_t perm);
long keyctl_clear(key_serial_t ringid);
long keyctl_link(key_serial_t id, key_serial_t ringid);
long keyctl_unlink(key_serial_t id, key_serial_t ringid);
long keyctl_search(key_serial_t ringid, const char *type, const char *description,
                   key_serial_t destringid);
long keyctl_instantiate(key_serial_t id, const void *payload, size_t plen,
                        key_serial_t ringid);
long keyctl_negate(key_serial_t id, unsigned timeout, key_serial_t ringid);
long keyctl_reject(key_serial_t id, unsigned timeout, unsigned error,
                   key_serial_t ringid);
long keyctl_set_timeout(key_serial_t key, unsigned timeout);
long keyctl_assume_authority(key_serial_t key);
long keyctl_invalidate(key_serial_t id);
long keyctl_describe(key_serial_t id, char *buffer, size_t buflen);
long keyctl_read(key_serial_t id, char *buffer, size_t buflen);
long keyctl_describe_alloc(key_serial_t id, char **_buffer);
long keyctl_read_alloc(key_serial_t id, void **_buffer);
long keyctl_watch_key(key_serial_t key, int watch_queue_fd, int watch_id);

void free(void *ptr);
"""

CUSTOMIZATIONS = """
#include <stdlib.h>
"""
