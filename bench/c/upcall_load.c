// SPDX-License-Identifier: GPL-2.0
/*
 * upcall_load: the requester side of bench/upcall.py, in C, so that every
 * path is timed from the same requester and the requester's language
 * costs nothing.
 *
 *   upcall_load MODE THREADS COUNT PREFIX
 *
 * THREADS threads, started together, make COUNT requests between them;
 * each timed request is one system call:
 *
 *   request  request_key("user", PREFIX<unique>, "payload", 0): served by
 *            whatever answers the caller's upcalls (the classic helper, a
 *            daemon, a server); the key's payload is checked afterwards,
 *            untimed;
 *   add      add_key() of the same key, for scale: no upcall at all;
 *   seccomp  the same request_key() call, answered instead by a seccomp
 *            user-notification supervisor (a second process, below):
 *            the best kernel-to-user-to-kernel round trip this kernel has.
 *
 * Every run joins a new anonymous session keyring first, so that the keys
 * it makes die with it.  Prints one JSON object: n, p50_ms, p99_ms, per_s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_REQUEST, MODE_ADD, MODE_SECCOMP };

static enum mode mode;
static const char *prefix;
static long per_thread;
static double *latencies;
static pthread_barrier_t start_line;
/* What the seccomp supervisor answers: a serial no key has. */
#define SECCOMP_ANSWER 0x7eadbeef
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "upcall_load: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void check_payload(long key, const char *desc)
{
	char buf[16];
	long got = syscall(__NR_keyctl, KEYCTL_READ, key, buf, sizeof(buf));

	if (got != 7 || memcmp(buf, "payload", 7)) {
		fprintf(stderr, "upcall_load: %s: wrong payload (%ld)\n", desc, got);
		exit(3);
	}
}

static void *requester(void *arg)
{
	long index = (long)arg;
	char desc[256];
	long i, key;
	double start;

	pthread_barrier_wait(&start_line);
	for (i = 0; i < per_thread; i++) {
		snprintf(desc, sizeof(desc), "%s%d-%ld-%ld", prefix, getpid(), index, i);
		start = now();
		if (mode == MODE_ADD)
			key = syscall(__NR_add_key, "user", desc, "payload", 7,
				      KEY_SPEC_SESSION_KEYRING);
		else
			key = syscall(__NR_request_key, "user", desc, "payload", 0);
		latencies[index * per_thread + i] = now() - start;
		if (key < 0)
			die(desc);
		if (mode == MODE_SECCOMP) {
			if (key != SECCOMP_ANSWER) {
				fprintf(stderr, "upcall_load: %s: not the supervisor's answer\n",
					desc);
				exit(3);
			}
		} else {
			check_payload(key, desc);
		}
	}
	return NULL;
}

/* The supervisor: answer every notified request_key() with SECCOMP_ANSWER. */
static void supervise(int listener)
{
	struct seccomp_notif req;
	struct seccomp_notif_resp resp;

	for (;;) {
		memset(&req, 0, sizeof(req));
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			if (errno == EINTR || errno == ENOENT)
				continue;
			die("SECCOMP_IOCTL_NOTIF_RECV");
		}
		memset(&resp, 0, sizeof(resp));
		resp.id = req.id;
		resp.val = SECCOMP_ANSWER;
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
			die("SECCOMP_IOCTL_NOTIF_SEND");
	}
}

static int receive_fd(int sock)
{
	char data, control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = &data, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *cmsg;
	int fd;

	if (recvmsg(sock, &msg, 0) != 1)
		die("recvmsg");
	cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS)
		die("no listener fd");
	memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
	return fd;
}

static void send_fd(int sock, int fd)
{
	char data = 'L', control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = &data, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(fd));
	if (sendmsg(sock, &msg, 0) != 1)
		die("sendmsg");
}

/*
 * Fork the supervisor, then notify this process's request_key() calls to
 * it: the filter is installed before the requester threads exist, so they
 * inherit it; the supervisor, forked first, has none.
 */
static pid_t start_supervisor(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_request_key, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = ARRAY_SIZE(code), .filter = code };
	int sock[2], listener;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock))
		die("socketpair");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(sock[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		supervise(receive_fd(sock[1]));
	}
	close(sock[1]);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		die("PR_SET_NO_NEW_PRIVS");
	listener = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
			   SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (listener < 0)
		die("seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)");
	send_fd(sock[0], listener);
	close(listener);
	close(sock[0]);
	return pid;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	pthread_t *threads;
	long threads_n, count, i, n, p99;
	pid_t supervisor = 0;
	double wall;

	if (argc != 5) {
		fprintf(stderr, "usage: upcall_load request|add|seccomp THREADS COUNT PREFIX\n");
		return 2;
	}
	if (!strcmp(argv[1], "request"))
		mode = MODE_REQUEST;
	else if (!strcmp(argv[1], "add"))
		mode = MODE_ADD;
	else if (!strcmp(argv[1], "seccomp"))
		mode = MODE_SECCOMP;
	else
		return fprintf(stderr, "upcall_load: unknown mode %s\n", argv[1]), 2;
	threads_n = atol(argv[2]);
	count = atol(argv[3]);
	prefix = argv[4];
	if (threads_n < 1 || count < threads_n)
		return fprintf(stderr, "upcall_load: need COUNT >= THREADS >= 1\n"), 2;
	per_thread = count / threads_n;
	n = per_thread * threads_n;
	latencies = calloc(n, sizeof(*latencies));
	threads = calloc(threads_n, sizeof(*threads));
	if (!latencies || !threads)
		die("calloc");
	if (syscall(__NR_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0)
		die("KEYCTL_JOIN_SESSION_KEYRING");
	if (mode == MODE_SECCOMP)
		supervisor = start_supervisor();
	if (pthread_barrier_init(&start_line, NULL, threads_n + 1))
		die("pthread_barrier_init");
	for (i = 0; i < threads_n; i++)
		if (pthread_create(&threads[i], NULL, requester, (void *)i))
			die("pthread_create");
	pthread_barrier_wait(&start_line);
	wall = now();
	for (i = 0; i < threads_n; i++)
		pthread_join(threads[i], NULL);
	wall = now() - wall;
	if (supervisor > 0) {
		kill(supervisor, SIGKILL);
		waitpid(supervisor, NULL, 0);
	}
	qsort(latencies, n, sizeof(*latencies), by_value);
	p99 = (99 * n + 99) / 100 - 1;	/* nearest rank: ceil(0.99 n) */
	printf("{\"n\": %ld, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"per_s\": %.1f}\n", n,
	       (n % 2 ? latencies[n / 2] : (latencies[n / 2 - 1] + latencies[n / 2]) / 2) * 1e3,
	       latencies[p99] * 1e3, n / wall);
	return 0;
}
