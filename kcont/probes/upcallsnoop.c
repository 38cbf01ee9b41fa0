// SPDX-License-Identifier: GPL-2.0
/*
 * upcallsnoop: where every request_key() upcall went, and who served it.
 *
 * The kcont series' tracepoints say how the kernel routed an upcall; this
 * program does not take their word for it.  At each point it reads the
 * current task's container and namespaces from task_struct itself:
 *
 *  - keys:key_upcall_route  the requester (current), with the route and the
 *                           record's container as the tracepoint reports
 *                           them, and its namespaces both as the
 *                           tracepoint reports them and as read here;
 *  - request_key_auth_new (kprobe)
 *                           a request's authorisation being made: if the
 *                           key is of a network namespace that a container
 *                           made (the namespace's key tag names it) and the
 *                           task is not asking for its own namespace with
 *                           its own credentials, the request is that
 *                           container's, whatever task runs it: read here
 *                           from the tag and the task, reported with the
 *                           route as net_container;
 *  - keyctl_assume_authority (kprobe + kretprobe)
 *                           a task took the authority over a routed key;
 *  - key_instantiate_and_link / key_reject_and_link (kprobe + kretprobe)
 *                           a task completed a routed key, with the
 *                           latency since the route;
 *  - keys:key_upcall_complete / _timeout
 *                           the kernel's own view of an intercepted
 *                           request's end;
 *  - call_usermodehelper_exec_async (kprobe)
 *                           a usermode helper starting, in the task that
 *                           will exec it: the namespaces it runs in.
 *
 * Only keys seen at a route are followed (the routed and followed maps),
 * so keyrings and authorisation keys instantiated by the kernel are not
 * reported.
 *
 * Filters: upcallsnoop.py puts #defines before this text, as bcc's tools
 * substitute FILTER_PID, so that `kcont-upcallsnoop --ebpf` prints what is
 * compiled and an unwanted route costs no ring-buffer record:
 *
 *  FILTER_CONTAINER n     only routes whose requester is in container n
 *                         (as read from task_struct here);
 *  FILTER_TYPE_MATCH(t)   only routes whose key type, the bounded string t,
 *                         is the one asked for: a byte-by-byte comparison,
 *                         terminating NUL included, with numeric bytes only.
 *
 * A key that fails the filter is not followed, so its later events are
 * dropped too; helper events, which are otherwise all reported, then
 * follow the key serial on the helper's argv.
 */
#include <linux/containers.h>
#include <linux/cred.h>
#include <linux/key.h>
#include <linux/key-type.h>
#include <linux/nsproxy.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/sched.h>
#include <linux/umh.h>
#include <linux/user_namespace.h>
#include <linux/utsname.h>
#include <linux/ipc_namespace.h>
#include <linux/cgroup.h>
#include <net/net_namespace.h>

#define EV_ROUTE	1
#define EV_ASSUME	2
#define EV_END		3
#define EV_COMPLETE	4
#define EV_TIMEOUT	5
#define EV_HELPER	6

#define END_INSTANTIATE	0
#define END_REJECT	1

#if defined(FILTER_CONTAINER) || defined(FILTER_TYPE_MATCH)
#define FILTERED	1
#endif

struct ns_set {
	u32 uts, ipc, mnt, pid, net, cgroup, user;
};

struct event {
	u64 ts;
	u64 container;		/* current's container, read here */
	u64 tp_container;	/* the requester's container per the tracepoint */
	u64 record_container;
	u64 latency_ns;
	struct ns_set ns;	/* current's namespaces, read here */
	struct ns_set tp_ns;	/* per the tracepoint */
	u32 kind;
	u32 pid;
	u32 tid;
	s32 key;
	s32 route;
	s32 result;		/* END: 0 or -error; COMPLETE: its result */
	char comm[16];
	char type[32];
	char desc[128];		/* HELPER: the program's path */
	char arg[16];		/* HELPER: argv[2], the key serial */
	s32 model;		/* ROUTE: the routing model, KEY_UPCALL_MODEL_* */
	u32 record_userns;	/* ROUTE: the registration's user namespace */
	u64 net_container;	/* ROUTE: the request is this container's, by its
				 * network namespace (read here), or 0 */
};

struct pending_end {
	s32 key;
	s32 error;
	u32 kind;
};

BPF_RINGBUF_OUTPUT(events, 64);
BPF_HASH(routed, s32, u64, 65536);		/* key serial -> route time, until its end */
/* Key serial -> 1 from its route on, past its end: complete and timeout
 * come after the end (when the authorisation key goes). */
BPF_TABLE("lru_hash", s32, u8, followed, 65536);
BPF_HASH(assuming, u32, s32, 4096);		/* tid -> target serial */
/* Key serial -> container, until its route; LRU: a request that fails
 * before routing (its container gone) never reaches the route. */
BPF_TABLE("lru_hash", s32, u64, net_owner, 4096);
BPF_HASH(ending, u32, struct pending_end, 4096);	/* tid -> key */
BPF_PERCPU_ARRAY(scratch, struct event, 1);

static __always_inline u32 ns_inum(void *ns_common)
{
	u32 inum = 0;

	if (ns_common)
		bpf_probe_read_kernel(&inum, sizeof(inum),
				      (char *)ns_common + offsetof(struct ns_common, inum));
	return inum;
}

/* The namespaces the routing compares, read the way it reads them. */
static __always_inline void read_task(struct task_struct *task, struct event *e)
{
	struct nsproxy *nsp = NULL;
	struct container *c = NULL;
	const struct cred *cred = NULL;
	struct user_namespace *user_ns = NULL;
	struct pid *pid = NULL;
	unsigned int level = 0;
	struct upid upid = {};
	void *p = NULL;

	bpf_probe_read_kernel(&c, sizeof(c), &task->container);
	if (c)
		bpf_probe_read_kernel(&e->container, sizeof(e->container), &c->id);
	bpf_probe_read_kernel(&nsp, sizeof(nsp), &task->nsproxy);
	if (nsp) {
		bpf_probe_read_kernel(&p, sizeof(p), &nsp->uts_ns);
		e->ns.uts = ns_inum(p ? (char *)p + offsetof(struct uts_namespace, ns) : NULL);
		bpf_probe_read_kernel(&p, sizeof(p), &nsp->ipc_ns);
		e->ns.ipc = ns_inum(p ? (char *)p + offsetof(struct ipc_namespace, ns) : NULL);
		/* struct mnt_namespace (fs/mount.h) begins with its ns_common. */
		bpf_probe_read_kernel(&p, sizeof(p), &nsp->mnt_ns);
		e->ns.mnt = ns_inum(p);
		bpf_probe_read_kernel(&p, sizeof(p), &nsp->net_ns);
		e->ns.net = ns_inum(p ? (char *)p + offsetof(struct net, ns) : NULL);
		bpf_probe_read_kernel(&p, sizeof(p), &nsp->cgroup_ns);
		e->ns.cgroup = ns_inum(p ? (char *)p + offsetof(struct cgroup_namespace, ns) :
				       NULL);
	}
	/* task_active_pid_ns(): the pid's namespace at its own level. */
	bpf_probe_read_kernel(&pid, sizeof(pid), &task->thread_pid);
	if (pid) {
		bpf_probe_read_kernel(&level, sizeof(level), &pid->level);
		if (level < 32) {
			bpf_probe_read_kernel(&upid, sizeof(upid), &pid->numbers[level]);
			e->ns.pid = ns_inum(upid.ns ? (char *)upid.ns +
					    offsetof(struct pid_namespace, ns) : NULL);
		}
	}
	/* current_user_ns(): the subjective credentials. */
	bpf_probe_read_kernel(&cred, sizeof(cred), &task->cred);
	if (cred) {
		bpf_probe_read_kernel(&user_ns, sizeof(user_ns), &cred->user_ns);
		e->ns.user = ns_inum(user_ns ? (char *)user_ns +
				     offsetof(struct user_namespace, ns) : NULL);
	}
}

static __always_inline struct event *new_event(u32 kind)
{
	int zero = 0;
	struct event *e = scratch.lookup(&zero);
	u64 id = bpf_get_current_pid_tgid();

	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->kind = kind;
	e->pid = id >> 32;
	e->tid = (u32)id;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	read_task((struct task_struct *)bpf_get_current_task(), e);
	return e;
}

/*
 * The container a request for a key of a network namespace is made for,
 * read from kernel state rather than from the routing's decision: the
 * namespace's key tag names the container that made it, and the request is
 * that container's unless the task asks for a key of its own namespace with
 * its own credentials, or holds another request's authority (a nested
 * request is the first one's).
 */
int kprobe__request_key_auth_new(struct pt_regs *ctx, struct key *target)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	const struct cred *cred = NULL, *real_cred = NULL;
	struct key *authority = NULL;
	struct key_type *type = NULL;
	struct key_tag *tag = NULL, *own = NULL;
	struct nsproxy *nsp = NULL;
	struct net *net = NULL;
	unsigned int flags = 0;
	s32 serial = 0;
	u64 id = 0;

	bpf_probe_read_kernel(&type, sizeof(type), &target->index_key.type);
	if (type)
		bpf_probe_read_kernel(&flags, sizeof(flags), &type->flags);
	if (!(flags & KEY_TYPE_NET_DOMAIN))
		return 0;
	bpf_probe_read_kernel(&tag, sizeof(tag), &target->index_key.domain_tag);
#ifdef KCONT_KEY_TAG_CONTAINER
	if (tag)
		bpf_probe_read_kernel(&id, sizeof(id), &tag->container_id);
#endif
	if (!id)
		return 0;
	bpf_probe_read_kernel(&cred, sizeof(cred), &task->cred);
	bpf_probe_read_kernel(&real_cred, sizeof(real_cred), &task->real_cred);
	if (cred)
		bpf_probe_read_kernel(&authority, sizeof(authority), &cred->request_key_auth);
	if (authority)
		return 0;
	bpf_probe_read_kernel(&nsp, sizeof(nsp), &task->nsproxy);
	if (nsp)
		bpf_probe_read_kernel(&net, sizeof(net), &nsp->net_ns);
	if (net)
		bpf_probe_read_kernel(&own, sizeof(own), &net->key_domain);
	if (cred == real_cred && own == tag)
		return 0;
	bpf_probe_read_kernel(&serial, sizeof(serial), &target->serial);
	net_owner.update(&serial, &id);
	return 0;
}

TRACEPOINT_PROBE(keys, key_upcall_route)
{
	struct event *e = new_event(EV_ROUTE);
	s32 key = args->key;
	u64 *owner;
	u8 one = 1;
	u64 now;

	if (!e)
		return 0;
	TP_DATA_LOC_READ_STR(e->type, type, sizeof(e->type));
#ifdef FILTER_TYPE_MATCH
	if (!FILTER_TYPE_MATCH(e->type))
		return 0;
#endif
#ifdef FILTER_CONTAINER
	if (e->container != FILTER_CONTAINER)
		return 0;
#endif
	now = e->ts;
	routed.update(&key, &now);
	followed.update(&key, &one);
	e->key = key;
	e->route = args->route;
	e->tp_container = args->container_id;
	e->record_container = args->record_container_id;
	e->model = args->model;
	e->record_userns = args->record_userns;
	owner = net_owner.lookup(&key);
	if (owner) {
		e->net_container = *owner;
		net_owner.delete(&key);
	}
	e->tp_ns.uts = args->uts;
	e->tp_ns.ipc = args->ipc;
	e->tp_ns.mnt = args->mnt;
	e->tp_ns.pid = args->pid;
	e->tp_ns.net = args->net;
	e->tp_ns.cgroup = args->cgroup;
	e->tp_ns.user = args->user;
	TP_DATA_LOC_READ_STR(e->desc, description, sizeof(e->desc));
	events.ringbuf_output(e, sizeof(*e), 0);
	return 0;
}

TRACEPOINT_PROBE(keys, key_upcall_complete)
{
	s32 key = args->key;
	struct event *e;

	if (!followed.lookup(&key))
		return 0;
	e = new_event(EV_COMPLETE);
	if (!e)
		return 0;
	e->key = key;
	e->record_container = args->record_container_id;
	e->result = args->result;
	e->latency_ns = args->latency_ns;
	events.ringbuf_output(e, sizeof(*e), 0);
	return 0;
}

TRACEPOINT_PROBE(keys, key_upcall_timeout)
{
	s32 key = args->key;
	struct event *e;

	if (!followed.lookup(&key))
		return 0;
	e = new_event(EV_TIMEOUT);
	if (!e)
		return 0;
	e->key = key;
	e->record_container = args->record_container_id;
	events.ringbuf_output(e, sizeof(*e), 0);
	return 0;
}

int on_assume(struct pt_regs *ctx, s32 id)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();

	if (id > 0 && routed.lookup(&id))
		assuming.update(&tid, &id);
	return 0;
}

int on_assume_return(struct pt_regs *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	s32 *id = assuming.lookup(&tid);
	struct event *e;
	s32 key;

	if (!id)
		return 0;
	key = *id;
	assuming.delete(&tid);
	if ((long)PT_REGS_RC(ctx) < 0)
		return 0;
	e = new_event(EV_ASSUME);
	if (!e)
		return 0;
	e->key = key;
	events.ringbuf_output(e, sizeof(*e), 0);
	return 0;
}

static __always_inline int enter_end(struct key *key, u32 kind, s32 error)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pending_end p = { .kind = kind, .error = error };

	bpf_probe_read_kernel(&p.key, sizeof(p.key), &key->serial);
	if (routed.lookup(&p.key))
		ending.update(&tid, &p);
	return 0;
}

int on_instantiate(struct pt_regs *ctx, struct key *key)
{
	return enter_end(key, END_INSTANTIATE, 0);
}

int on_reject(struct pt_regs *ctx, struct key *key, unsigned int timeout,
	      unsigned int error)
{
	return enter_end(key, END_REJECT, -(s32)error);
}

int on_end_return(struct pt_regs *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct pending_end *p = ending.lookup(&tid);
	struct pending_end done;
	struct event *e;
	u64 *since;

	if (!p)
		return 0;
	done = *p;
	ending.delete(&tid);
	if ((long)PT_REGS_RC(ctx) < 0)
		return 0;	/* not this call's to end (EBUSY: already done) */
	e = new_event(EV_END);
	if (!e)
		return 0;
	e->key = done.key;
	e->route = done.kind;
	e->result = done.error;
	since = routed.lookup(&done.key);
	if (since) {
		e->latency_ns = e->ts - *since;
		routed.delete(&done.key);
	}
	events.ringbuf_output(e, sizeof(*e), 0);
	return 0;
}

/* A decimal key serial, as /sbin/request-key gets it in argv[2]; 0 if none. */
static __always_inline s32 parse_serial(const char *s)
{
	u32 n = 0;
	int i;

#pragma unroll
	for (i = 0; i < 11; i++) {
		if (s[i] < '0' || s[i] > '9')
			break;
		n = n * 10 + (s[i] - '0');
	}
	return (s32)n;
}

int on_helper(struct pt_regs *ctx, struct subprocess_info *info)
{
	struct event *e = new_event(EV_HELPER);
	const char *path = NULL;
	char **argv = NULL;
	const char *arg = NULL;

	if (!e)
		return 0;
	bpf_probe_read_kernel(&path, sizeof(path), &info->path);
	bpf_probe_read_kernel_str(e->desc, sizeof(e->desc), path);
	bpf_probe_read_kernel(&argv, sizeof(argv), &info->argv);
	if (argv) {
		bpf_probe_read_kernel(&arg, sizeof(arg), &argv[2]);
		if (arg)
			bpf_probe_read_kernel_str(e->arg, sizeof(e->arg), arg);
	}
#ifdef FILTERED
	{
		s32 key = parse_serial(e->arg);

		if (!followed.lookup(&key))
			return 0;
	}
#endif
	events.ringbuf_output(e, sizeof(*e), 0);
	return 0;
}
