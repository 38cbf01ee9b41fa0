"""linux/keyctl.h: the series' keyctl operations, called through syscall(2).

libkeyutils 1.6 knows none of them, and keyutils.h cannot share a
translation unit with <linux/keyctl.h>, so these live in their own
extension module (``kcont._keyctl``).  ``kcont_keyctl_raw`` passes any
five words, for the bad-input tests.
"""

INCLUDES = """
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/keyctl.h>

typedef int32_t key_serial_t;   /* keyutils.h's; the uapi header has none */
"""

TYPES = """
typedef int32_t key_serial_t;

/* keyctl(2)'s number, for the bad-input tests' raw syscall(2) */
static const long NR_keyctl;

static const int KEYCTL_CONTAINER_INTERCEPT;
static const int KEYCTL_QUERY_REQUEST_KEY_AUTH;
static const int KEYCTL_SET_CONTAINER_KEYRING;
static const int KEYCTL_GRANT_PERMISSION;
static const int KEYCTL_USERNS_INTERCEPT;
static const int KEYCTL_CAPABILITIES;
static const int KEYCTL_GET_KEYRING_ID;
static const int KEYCTL_REVOKE;
static const int KEYCTL_INVALIDATE;
static const int KEY_SPEC_CONTAINER_KEYRING;

static const unsigned int KEY_INTERCEPT_NS_UTS;
static const unsigned int KEY_INTERCEPT_NS_IPC;
static const unsigned int KEY_INTERCEPT_NS_MNT;
static const unsigned int KEY_INTERCEPT_NS_PID;
static const unsigned int KEY_INTERCEPT_NS_NET;
static const unsigned int KEY_INTERCEPT_NS_CGROUP;
static const unsigned int KEY_INTERCEPT_NS_USER;
static const unsigned int KEY_INTERCEPT__NS_MASK;
static const int KEY_INTERCEPT_TYPE_MAX;

static const unsigned int KEY_ACE_SUBJ_CONTAINER;
static const unsigned int KEY_ACE_VIEW;
static const unsigned int KEY_ACE_READ;
static const unsigned int KEY_ACE_WRITE;
static const unsigned int KEY_ACE_SEARCH;
static const unsigned int KEY_ACE_LINK;
static const unsigned int KEY_ACE_SETATTR;
static const unsigned int KEY_ACE_INVAL;
static const unsigned int KEY_ACE_REVOKE;
static const unsigned int KEY_ACE__PERMS;
static const int KEY_ACL_MAX_CONTAINERS;

static const int KEYCTL_CAPS1_CONTAINER_INTERCEPT;
static const int KEYCTL_CAPS1_QUERY_REQUEST_KEY_AUTH;
static const int KEYCTL_CAPS1_CONTAINER_KEYRING;
static const int KEYCTL_CAPS1_GRANT_PERMISSION;
static const int KEYCTL_CAPS1_QUERY_REQUESTER_COMM;

struct keyctl_query_request_key_auth {
    char operation[32];
    uint32_t fsuid;
    uint32_t fsgid;
    int32_t target_key;
    int32_t thread_keyring;
    int32_t process_keyring;
    int32_t session_keyring;
    int32_t requester_pid;
    uint32_t __spare0;
    uint64_t container_id;
    char requester_comm[16];
    uint32_t __spare[4];
};
"""

FUNCTIONS = """
long kcont_keyctl_raw(int op, unsigned long arg2, unsigned long arg3,
                      unsigned long arg4, unsigned long arg5);
long kcont_container_intercept(int containerfd, const char *type, unsigned int ns_mask,
                               key_serial_t queue);
long kcont_query_request_key_auth(key_serial_t authkey,
                                  struct keyctl_query_request_key_auth *buf);
long kcont_set_container_keyring(int containerfd, key_serial_t keyring);
long kcont_grant_permission(key_serial_t key, unsigned int subject_type,
                            unsigned long subject, unsigned int perm);
long kcont_keyctl_capabilities(unsigned char *buf, size_t buflen);
long kcont_userns_intercept(int userns_fd, const char *type, unsigned int ns_mask,
                            key_serial_t queue);
"""

CUSTOMIZATIONS = """
static const long NR_keyctl = __NR_keyctl;

static long kcont_keyctl_raw(int op, unsigned long arg2, unsigned long arg3,
                             unsigned long arg4, unsigned long arg5)
{
    return syscall(__NR_keyctl, op, arg2, arg3, arg4, arg5);
}

static long kcont_container_intercept(int containerfd, const char *type,
                                      unsigned int ns_mask, key_serial_t queue)
{
    return syscall(__NR_keyctl, KEYCTL_CONTAINER_INTERCEPT, containerfd, type, ns_mask, queue);
}

static long kcont_query_request_key_auth(key_serial_t authkey,
                                         struct keyctl_query_request_key_auth *buf)
{
    return syscall(__NR_keyctl, KEYCTL_QUERY_REQUEST_KEY_AUTH, authkey, buf);
}

static long kcont_set_container_keyring(int containerfd, key_serial_t keyring)
{
    return syscall(__NR_keyctl, KEYCTL_SET_CONTAINER_KEYRING, containerfd, keyring);
}

static long kcont_grant_permission(key_serial_t key, unsigned int subject_type,
                                   unsigned long subject, unsigned int perm)
{
    return syscall(__NR_keyctl, KEYCTL_GRANT_PERMISSION, key, subject_type, subject, perm);
}

static long kcont_userns_intercept(int userns_fd, const char *type, unsigned int ns_mask,
                                   key_serial_t queue)
{
    return syscall(__NR_keyctl, KEYCTL_USERNS_INTERCEPT, userns_fd, type, ns_mask, queue);
}

static long kcont_keyctl_capabilities(unsigned char *buf, size_t buflen)
{
    return syscall(__NR_keyctl, KEYCTL_CAPABILITIES, buf, buflen);
}
"""
