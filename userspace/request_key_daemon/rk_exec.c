// SPDX-License-Identifier: GPL-2.0
/*
 * rk-exec: start a request-key program as /sbin/request-key starts it.
 *
 *   rk-exec KEY PROGRAM ARGV0 [ARG...]
 *
 * Assumes the authority over key KEY, joins a new anonymous session
 * keyring, links the authorisation key (@-7) into it, then execv()s
 * PROGRAM with ARGV0 ARG...  A program such as `keyctl instantiate %k ...`
 * then finds the authority and the auth key where keyutils' request-key
 * leaves them.
 *
 * Why a separate program: the daemon is a threaded Python process, and
 * Python documents preexec_fn as unsafe there (the child may deadlock on a
 * lock another thread held at fork()).  With this helper the child runs
 * no Python code between fork() and exec(): the daemon spawns rk-exec with
 * subprocess's fork-safe path, and rk-exec does the key steps.  Raw system
 * calls and a static link keep it free of libkeyutils and of the
 * container's libraries.
 *
 * Exit status: 126 when a key step fails or the arguments are wrong,
 * 127 when PROGRAM cannot be executed (as env(1) and the shells do); the
 * reason is one line on stderr.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/keyctl.h>

static long keyctl(int op, unsigned long arg2, unsigned long arg3)
{
	return syscall(SYS_keyctl, op, arg2, arg3, 0UL, 0UL);
}

static int fail(int status, const char *what, const char *detail)
{
	fprintf(stderr, "rk-exec: %s: %s\n", what, detail);
	return status;
}

int main(int argc, char *argv[])
{
	char *end;
	long key;

	if (argc < 4)
		return fail(126, "usage", "rk-exec KEY PROGRAM ARGV0 [ARG...]");
	errno = 0;
	key = strtol(argv[1], &end, 10);
	if (errno || end == argv[1] || *end || key <= 0 || key > INT_MAX)
		return fail(126, "bad key serial", argv[1]);
	if (keyctl(KEYCTL_ASSUME_AUTHORITY, (unsigned long)key, 0) < 0)
		return fail(126, "assume authority", strerror(errno));
	if (keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0) < 0)
		return fail(126, "join session keyring", strerror(errno));
	if (keyctl(KEYCTL_LINK, (unsigned long)(long)KEY_SPEC_REQKEY_AUTH_KEY,
		   (unsigned long)(long)KEY_SPEC_SESSION_KEYRING) < 0)
		return fail(126, "link the authorisation key", strerror(errno));
	execv(argv[2], argv + 3);
	return fail(127, argv[2], strerror(errno));
}
