"""linux/container.h and the two container syscalls (from the series' uapi)."""

INCLUDES = """
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <asm/unistd.h>
#include <linux/container.h>
"""

TYPES = """
typedef int... pid_t;

static const unsigned int CONTAINER_NEW_FS_NS;
static const unsigned int CONTAINER_NEW_EMPTY_FS_NS;
static const unsigned int CONTAINER_NEW_CGROUP_NS;
static const unsigned int CONTAINER_NEW_UTS_NS;
static const unsigned int CONTAINER_NEW_IPC_NS;
static const unsigned int CONTAINER_NEW_USER_NS;
static const unsigned int CONTAINER_NEW_PID_NS;
static const unsigned int CONTAINER_NEW_NET_NS;
static const unsigned int CONTAINER_KILL_ON_CLOSE;
static const unsigned int CONTAINER_FD_CLOEXEC;
static const unsigned int CONTAINER_UNTRUSTED;
static const unsigned int CONTAINER_TRUSTED;
static const unsigned int CONTAINER__FLAG_MASK;
static const int CONTAINER_NAME_MAX;
static const int CONTAINER_INIT_ID;

static const int CLONE_NEWUTS;
static const int CLONE_NEWIPC;
static const int CLONE_NEWNET;
static const int CLONE_NEWNS;
static const int CLONE_NEWCGROUP;
static const int CLONE_NEWUSER;
static const int CLONE_NEWPID;

static const long NR_container_create;
static const long NR_fork_into_container;
"""

FUNCTIONS = """
int kcont_container_create(const char *name, unsigned int flags,
                           unsigned long spare3, unsigned long spare4,
                           unsigned long spare5);
pid_t kcont_fork_into_container(int fd);
int unshare(int flags);
"""

CUSTOMIZATIONS = """
static const long NR_container_create = __NR_container_create;
static const long NR_fork_into_container = __NR_fork_into_container;

static int kcont_container_create(const char *name, unsigned int flags,
                                  unsigned long spare3, unsigned long spare4,
                                  unsigned long spare5)
{
    return syscall(__NR_container_create, name, flags, spare3, spare4, spare5);
}

/*
 * fork_into_container() as Python's os.fork() does fork(): with the GIL
 * held (CFFI released it for the call) and the interpreter's before/after
 * fork hooks run, so locks and thread state are sane in the child.
 */
static pid_t kcont_fork_into_container(int fd)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    pid_t pid;
    int saved;

    PyOS_BeforeFork();
    pid = syscall(__NR_fork_into_container, fd);
    saved = errno;
    if (pid == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil);
    errno = saved;
    return pid;
}
"""
