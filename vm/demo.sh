#!/bin/bash
# kcont demo, run inside the guest by `kcont-vm demo` (make demo).
# Shows the patched kernel and one classic request_key upcall served by
# the host-style /sbin/request-key, using Debian's default
# /etc/request-key.conf line for "user debug:*" keys.
set -euo pipefail

# A session keyring of our own, as keyutils' tests use: the guest's default
# session is the user-session keyring, where the helper cannot link the key.
if [ -z "${KCONT_DEMO_SESSION:-}" ]; then
    export KCONT_DEMO_SESSION=1
    exec keyctl session kcont-demo bash "$0" "$@"
fi

echo "== kernel =="
uname -a
echo
echo "== a classic request_key upcall =="
echo "\$ keyctl request2 user debug:kcont-demo hello @s"
start=$(date +%s%N)
id=$(keyctl request2 user debug:kcont-demo hello @s)
end=$(date +%s%N)
echo "key $id, served by /sbin/request-key in $(( (end - start) / 1000000 )) ms:"
keyctl describe "$id"
echo "payload: $(keyctl print "$id")"

echo
echo "== a container: kcont run, then kcont ls from inside and outside =="
echo "\$ kcont run --name demo --ns pid,uts,mnt -- sh -c 'hostname demo-box; ...; kcont ls'"
kcont run --name demo --ns pid,uts,mnt -- \
    sh -c 'hostname demo-box; echo "inside: pid $$, hostname $(hostname)"; kcont ls'
echo "\$ kcont run --name web --untrusted -- sleep 2 &  kcont ls"
kcont run --name web --untrusted -- sleep 2 &
sleep 1
kcont ls
wait
echo "exit status of kcont run: $?"

echo
echo "== interception: two containers, one record each, each key reaches its own queue =="
"$(dirname "$(command -v kcont)")/python" "$(dirname "$0")/demo_intercept.py"

echo
echo "== request-key-daemon: dns_resolver served inside each container =="
demo=$(mktemp -d /tmp/kcont-demo.XXXXXX)
mkdir -p "$demo/conf"
echo "create dns_resolver * * /sbin/key.dns_resolver %k" > "$demo/conf/request-key.conf"
cat > "$demo/ask.sh" <<'ASK'
#!/bin/sh
# In the container: its own /etc/hosts, then the request.
mount --make-rprivate /
mount --bind "$1" /etc/hosts
hostname "$2"
exec keyctl session - sh -c 'id=$(keyctl request2 dns_resolver db "" @s) &&
    echo "in $(hostname): dns_resolver db -> $(keyctl pipe "$id")"'
ASK
chmod +x "$demo/ask.sh"
# kcont-upcallsnoop watches the two upcalls: each routed to its own
# container's record, served by key.dns_resolver inside that container.
# -t is compiled into its BPF program; its lines fit 80 columns.
kcont-upcallsnoop -t dns_resolver > "$demo/snoop.out" 2> "$demo/snoop.err" &
snoop=$!
until grep -q "^Tracing" "$demo/snoop.err" 2>/dev/null; do
    kill -0 "$snoop" 2>/dev/null || { cat "$demo/snoop.err"; break; }
    sleep 1
done
for box in red:10.1.0.1 blue:10.2.0.2; do
    name=${box%%:*} addr=${box#*:}
    printf '127.0.0.1 localhost\n%s db\n' "$addr" > "$demo/hosts-$name"
    echo "\$ kcont run --name $name --ns mnt,net,uts --untrusted --daemon --daemon-config $demo/conf -- ask.sh"
    kcont run --name "$name" --ns mnt,net,uts --untrusted --daemon \
        --daemon-config "$demo/conf" -- "$demo/ask.sh" "$demo/hosts-$name" "$name-box" 2>&1 |
        grep -v "^request-key-daemon: \(stopping\|removed\|serving container\)"
done

echo
echo "== a kernel client: kAFS looks a cell up from a work item, for a container =="
# The container has its own DNS server (dnsmasq on its loopback, named by
# its own resolv.conf).  Mounting a cell makes kAFS's cell manager, a
# kworker in the initial namespaces, ask for the cell's VL servers; the
# request is the container's (it made the cell's network namespace), so
# its daemon serves it with key.dns_resolver and the container's DNS.  No
# VL server listens, so the mount fails once the lookup is done.
cat > "$demo/afs.sh" <<'AFS'
#!/bin/sh
cell=$1
mount --make-rprivate /
ip link set lo up
echo "nameserver 127.0.0.1" > "$2/resolv.conf"
mount --bind "$2/resolv.conf" /etc/resolv.conf
dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --listen-address=127.0.0.1 \
    --bind-interfaces --user=root --local-ttl=600 --pid-file="$2/dnsmasq.pid" \
    --srv-host="_afs3-vlserver._udp.$cell,vl.$cell,7003" --host-record="vl.$cell,127.0.0.42"
echo "add $cell" > /proc/net/afs/cells
mkdir -p "$2/mnt"
timeout 60 mount -t afs "#$cell:root.cell." "$2/mnt" 2>/dev/null ||
    echo "in the container: mount failed, as it must (no VL server listens)"
echo "in the container: /proc/net/afs/$cell/vlservers:"
cat "/proc/net/afs/$cell/vlservers"
kill "$(cat "$2/dnsmasq.pid")"
AFS
chmod +x "$demo/afs.sh"
echo "\$ kcont run --name afs --ns mnt,net,uts --untrusted --daemon --daemon-config $demo/conf -- afs.sh demo.kcont.test"
kcont run --name afs --ns mnt,net,uts --untrusted --daemon --daemon-config "$demo/conf" \
    -- "$demo/afs.sh" demo.kcont.test "$demo" 2>&1 |
    grep -v "^request-key-daemon: \(stopping\|removed\|serving container\)"
sleep 1
kill -INT "$snoop" 2>/dev/null; wait "$snoop"
echo
echo "== kcont-upcallsnoop -t dns_resolver: where those three upcalls went =="
echo "(the last was run by a kworker, and routed as the container afs)"
cat "$demo/snoop.out"
rm -rf "$demo"
