// SPDX-License-Identifier: GPL-2.0
/*
 * lean-init: kcont-vm's PID 1, which trims virtme-ng-init's boot and then
 * becomes it.
 *
 * Under TCG with the debug kernel, virtme-ng-init spends ~13 s in
 * systemd-tmpfiles and ~25 s coldplugging udev: 40% of `kcont-vm run --
 * true`.  The guest needs neither.  devtmpfs already holds every device
 * node; the only thing udev adds that virtme uses is the
 * /dev/virtio-ports/<name> links of the command's stdio and exit code,
 * which are made here from sysfs.  Then an overlay on /usr hides
 * systemd-udevd (virtme-ng-init skips a udevd it cannot find) and turns
 * systemd-tmpfiles into /bin/true (virtme-ng-init warns on a missing one);
 * virtme-ng-init's own rw overlay of /usr stacks on this one.  Last, the
 * real init is exec'd as PID 1.  The host is untouched: the upper layer lives in
 * the guest's devtmpfs.
 *
 * C and static, because every exec of a dynamically linked program from
 * the 9p root costs a second or more under TCG with KASAN; a shell script
 * doing the same took 36 s.  Any failure here is reported on the console
 * and the real init runs anyway: a slower boot, never a broken one.
 *
 * usage (as init): virtme-ng-init [ARGS...], with virtme-ng-init.real
 * next to it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PORTS "/sys/class/virtio-ports"
#define LAYER "/dev/.kcont-lean"

static void warn(const char *what)
{
	fprintf(stderr, "kcont lean-init: %s: %s\n", what, strerror(errno));
}

static void link_virtio_ports(void)
{
	char path[PATH_MAX], name[NAME_MAX + 1], target[PATH_MAX];
	struct dirent *port;
	DIR *dir;

	if (mount("sysfs", "/sys", "sysfs", 0, NULL)) {
		warn("mount /sys");
		return;
	}
	mkdir("/dev/virtio-ports", 0755);
	dir = opendir(PORTS);
	while (dir && (port = readdir(dir))) {
		ssize_t len;
		int fd;

		if (port->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), PORTS "/%s/name", port->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		len = read(fd, name, sizeof(name) - 1);
		close(fd);
		while (len > 0 && name[len - 1] == '\n')
			len--;
		if (len <= 0)
			continue;
		name[len] = '\0';
		snprintf(path, sizeof(path), "/dev/virtio-ports/%s", name);
		snprintf(target, sizeof(target), "../%s", port->d_name);
		if (symlink(target, path) && errno != EEXIST)
			warn(path);
	}
	if (dir)
		closedir(dir);
	else
		warn(PORTS);
	if (umount("/sys"))
		warn("umount /sys");
}

static int whiteout(const char *path)
{
	if (mknod(path, S_IFCHR | 0000, makedev(0, 0))) {
		warn(path);
		return -1;
	}
	return 0;
}

static void hide_udev_and_tmpfiles(void)
{
	static const char *const dirs[] = {
		LAYER, LAYER "/upper", LAYER "/work", LAYER "/upper/bin",
		LAYER "/upper/lib", LAYER "/upper/lib/systemd",
	};
	size_t i;

	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (mkdir(dirs[i], 0755) && errno != EEXIST) {
			warn(dirs[i]);
			return;
		}
	}
	if (whiteout(LAYER "/upper/lib/systemd/systemd-udevd"))
		return;
	if (symlink("/bin/true", LAYER "/upper/bin/systemd-tmpfiles")) {
		warn("systemd-tmpfiles");
		return;
	}
	if (mount("kcont-lean", "/usr", "overlay", 0,
		  "lowerdir=/usr,upperdir=" LAYER "/upper,workdir=" LAYER "/work"))
		warn("overlay on /usr");
}

int main(int argc, char *argv[])
{
	char real[PATH_MAX];

	(void)argc;
	link_virtio_ports();
	hide_udev_and_tmpfiles();
	snprintf(real, sizeof(real), "%s.real", argv[0]);
	execv(real, argv);
	warn(real);
	return 127;
}
