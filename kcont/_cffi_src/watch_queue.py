"""linux/watch_queue.h: notification pipes, for KEYCTL_WATCH_KEY."""

# No <fcntl.h>: glibc's and the kernel's (pulled in by watch_queue.h) clash;
# O_NOTIFICATION_PIPE (O_EXCL) comes from the kernel's.
INCLUDES = """
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/watch_queue.h>
"""

TYPES = """
static const int O_NOTIFICATION_PIPE;
static const unsigned long IOC_WATCH_QUEUE_SET_SIZE;
static const unsigned long IOC_WATCH_QUEUE_SET_FILTER;
static const int WATCH_TYPE_META;
static const int WATCH_TYPE_KEY_NOTIFY;
static const int WATCH_INFO_LENGTH;
static const int WATCH_INFO_ID;
static const int WATCH_INFO_TYPE_INFO;
static const int WATCH_INFO_ID__SHIFT;
static const int WATCH_META_REMOVAL_NOTIFICATION;
static const int WATCH_META_LOSS_NOTIFICATION;
static const int NOTIFY_KEY_INSTANTIATED;
static const int NOTIFY_KEY_UPDATED;
static const int NOTIFY_KEY_LINKED;
static const int NOTIFY_KEY_UNLINKED;
static const int NOTIFY_KEY_CLEARED;
static const int NOTIFY_KEY_REVOKED;
static const int NOTIFY_KEY_INVALIDATED;
static const int NOTIFY_KEY_SETATTR;

struct watch_notification {
    uint32_t type:24;
    uint32_t subtype:8;
    uint32_t info;
};

struct watch_notification_type_filter {
    uint32_t type;
    uint32_t info_filter;
    uint32_t info_mask;
    uint32_t subtype_filter[8];
};

struct watch_notification_filter {
    uint32_t nr_filters;
    uint32_t __reserved;
    struct watch_notification_type_filter filters[];
};

struct key_notification {
    struct watch_notification watch;
    uint32_t key_id;
    uint32_t aux;
};
"""

FUNCTIONS = """
int kcont_notification_pipe(int fds[2], int flags);
int kcont_watch_queue_set_size(int fd, unsigned long slots);
int kcont_watch_queue_set_filter(int fd, struct watch_notification_filter *filter);
"""

CUSTOMIZATIONS = """
static int kcont_notification_pipe(int fds[2], int flags)
{
    return pipe2(fds, O_NOTIFICATION_PIPE | flags);
}

static int kcont_watch_queue_set_size(int fd, unsigned long slots)
{
    return ioctl(fd, IOC_WATCH_QUEUE_SET_SIZE, slots);
}

static int kcont_watch_queue_set_filter(int fd, struct watch_notification_filter *filter)
{
    return ioctl(fd, IOC_WATCH_QUEUE_SET_FILTER, filter);
}
"""
