"""linux/container.h, the two container syscalls and clone3()'s
CLONE_INTO_CONTAINER (from the series' uapi)."""

INCLUDES = """
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <asm/unistd.h>
#include <linux/container.h>
#include <linux/sched.h>
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
static const unsigned int CONTAINER_FD_NO_CLOEXEC;
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
static const unsigned long long CLONE_INTO_CONTAINER;
static const unsigned long long CLONE_VFORK;
static const unsigned long long CLONE_VM;
static const unsigned long long CLONE_FS;
static const unsigned long long CLONE_FILES;
static const unsigned long long CLONE_SIGHAND;
static const unsigned long long CLONE_THREAD;
static const unsigned long long CLONE_SYSVSEM;
static const unsigned long long CLONE_PARENT;
static const unsigned long long CLONE_PTRACE;
static const unsigned long long CLONE_IO;
static const int CLONE_ARGS_SIZE_VER2;
static const int CLONE_ARGS_SIZE_VER3;

static const long NR_container_create;
static const long NR_fork_into_container;
"""

FUNCTIONS = """
int kcont_container_create(const char *name, unsigned int flags,
                           unsigned long spare3, unsigned long spare4,
                           unsigned long spare5);
pid_t kcont_fork_into_container(int fd);
pid_t kcont_clone_into_container(int fd);
long kcont_clone_into_container_probe(int fd, unsigned long long flags, size_t size);
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
 * A fork-like system call as Python's os.fork() does fork(): with the GIL
 * held (CFFI released it for the call) and the interpreter's before/after
 * fork hooks run, so locks and thread state are sane in the child.
 */
static pid_t kcont_forklike(long nr, long arg1, long arg2)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    pid_t pid;
    int saved;

    PyOS_BeforeFork();
    pid = syscall(nr, arg1, arg2);
    saved = errno;
    if (pid == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil);
    errno = saved;
    return pid;
}

static pid_t kcont_fork_into_container(int fd)
{
    return kcont_forklike(__NR_fork_into_container, fd, 0);
}

/* clone3(CLONE_INTO_CONTAINER) as fork(): SIGCHLD, nothing else. */
static pid_t kcont_clone_into_container(int fd)
{
    struct clone_args args;

    memset(&args, 0, sizeof(args));
    args.flags = CLONE_INTO_CONTAINER;
    args.exit_signal = SIGCHLD;
    args.container = (uint64_t)fd;
    return kcont_forklike(__NR_clone3, (long)&args, (long)sizeof(args));
}

/*
 * clone3(CLONE_INTO_CONTAINER | CLONE_VFORK | flags) with clone_args of
 * @size bytes, for tests of what entry refuses: a child, if the kernel
 * made one, exits at once without returning here (so a CLONE_VM child on
 * the caller's stack is harmless: CLONE_VFORK holds the caller meanwhile).
 */
static long kcont_clone_into_container_probe(int fd, unsigned long long flags, size_t size)
{
    struct clone_args args;
    long pid;

    memset(&args, 0, sizeof(args));
    args.flags = CLONE_INTO_CONTAINER | CLONE_VFORK | flags;
    args.exit_signal = (flags & CLONE_THREAD) ? 0 : SIGCHLD;
    args.container = (uint64_t)fd;
    pid = syscall(__NR_clone3, &args, size);
    if (pid == 0)
        syscall(__NR_exit, 0);
    return pid;
}
"""
