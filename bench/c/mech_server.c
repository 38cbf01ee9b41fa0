// SPDX-License-Identifier: GPL-2.0
/*
 * mech_server: the smallest server of the interception mechanism, the
 * floor for any request-key daemon.
 *
 *   mech_server CONTAINER_FD READY_FD QUEUE_NAME
 *
 * Run as a member of the container behind CONTAINER_FD, as a daemon is:
 * makes the queue keyring QUEUE_NAME in its user keyring, watches it,
 * registers a record for key type "user" on the container (every
 * namespace), and for every auth key linked into the queue makes the calls
 * that any server must: learn the key to construct
 * (KEYCTL_QUERY_REQUEST_KEY_AUTH), assume the authority, read the callout,
 * instantiate the key with "payload" (which drops the authority).  No
 * config, no policy, no log.  A lost-notification record makes it rescan
 * the queue.
 * Writes "R" to READY_FD once registered, then serves until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/keyctl.h>
#include <linux/watch_queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WATCH_ID 0x6d

static void die(const char *what)
{
	fprintf(stderr, "mech_server: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Serve one auth key; an error means the request ended already: skip it. */
static void serve(int auth)
{
	struct keyctl_query_request_key_auth query;
	char callout[4096];
	long target;

	memset(&query, 0, sizeof(query));
	if (syscall(__NR_keyctl, KEYCTL_QUERY_REQUEST_KEY_AUTH, auth, &query) < 0)
		return;
	target = query.target_key;
	if (syscall(__NR_keyctl, KEYCTL_ASSUME_AUTHORITY, target) < 0)
		return;
	/* A successful instantiation drops the assumed authority itself. */
	if (syscall(__NR_keyctl, KEYCTL_READ, KEY_SPEC_REQKEY_AUTH_KEY, callout,
		    sizeof(callout)) < 0 ||
	    syscall(__NR_keyctl, KEYCTL_INSTANTIATE, target, "payload", 7, 0) < 0)
		syscall(__NR_keyctl, KEYCTL_ASSUME_AUTHORITY, 0);
}

static void rescan(int queue)
{
	long size = 4096, got;
	int *serials = NULL;
	long i;

	/* KEYCTL_READ copies nothing into a buffer too small: grow and retry */
	for (;;) {
		free(serials);
		serials = malloc(size);
		if (!serials)
			die("malloc");
		got = syscall(__NR_keyctl, KEYCTL_READ, queue, serials, size);
		if (got <= size)
			break;
		size = got;
	}
	for (i = 0; i < got / (long)sizeof(int); i++)
		serve(serials[i]);
	free(serials);
}

int main(int argc, char **argv)
{
	unsigned char buf[4096];
	int fds[2], queue, ready, container;
	ssize_t got, at, len;

	if (argc != 4) {
		fprintf(stderr, "usage: mech_server CONTAINER_FD READY_FD QUEUE_NAME\n");
		return 2;
	}
	container = atoi(argv[1]);
	ready = atoi(argv[2]);
	queue = syscall(__NR_add_key, "keyring", argv[3], NULL, 0, KEY_SPEC_USER_KEYRING);
	if (queue < 0)
		die("add_key(keyring)");
	if (pipe2(fds, O_NOTIFICATION_PIPE | O_CLOEXEC))
		die("pipe2(O_NOTIFICATION_PIPE)");
	if (ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, 256))
		die("IOC_WATCH_QUEUE_SET_SIZE");
	if (syscall(__NR_keyctl, KEYCTL_WATCH_KEY, queue, fds[0], WATCH_ID))
		die("KEYCTL_WATCH_KEY");
	if (syscall(__NR_keyctl, KEYCTL_CONTAINER_INTERCEPT, container, "user", 0, queue))
		die("KEYCTL_CONTAINER_INTERCEPT");
	if (write(ready, "R", 1) != 1)
		die("ready fd");
	close(ready);
	rescan(queue);
	for (;;) {
		got = read(fds[0], buf, sizeof(buf));
		if (got < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		for (at = 0; at + (ssize_t)sizeof(struct watch_notification) <= got; at += len) {
			struct watch_notification *n = (void *)(buf + at);
			struct key_notification *k = (void *)n;

			len = n->info & WATCH_INFO_LENGTH;
			if (len < (ssize_t)sizeof(*n) || at + len > got)
				break;
			if (n->type == WATCH_TYPE_META &&
			    n->subtype == WATCH_META_LOSS_NOTIFICATION)
				rescan(queue);
			else if (n->type == WATCH_TYPE_KEY_NOTIFY &&
				 n->subtype == NOTIFY_KEY_LINKED &&
				 len >= (ssize_t)sizeof(*k) && k->key_id == (__u32)queue)
				serve(k->aux);
		}
	}
}
