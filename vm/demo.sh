#!/bin/bash
# kcont demo, run inside the guest by `kcont-vm demo` (make demo).
# Shows the patched kernel and one classic request_key upcall served by
# the host-style /sbin/request-key, using Debian's default
# /etc/request-key.conf line for "user debug:*" keys.
set -euo pipefail

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
