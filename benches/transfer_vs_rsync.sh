#!/usr/bin/env bash
# Moving a bundle to another server against the tools an admin would use, side by
# side in one run, over one throwaway sshd on loopback, on a bundle of a database
# tree shaped like Ignite persistence (default: 2,565 files, 786 MB):
#
#   cmw-upgrade bundle transfer (streamed, every file BLAKE3-checked on arrival,
#   flushed before manifest.json)     vs  rsync -a over the same ssh      target: not slower
#                                     vs  tar -cf - | ssh host tar -xf -  target <= 1.3x
#   peak memory (max RSS) of the sending and the receiving side of each
#
# All three go from this machine to the "server" (the same machine through sshd,
# the same ssh options and cipher). Then, for information, the same transfer with
# both ends behind ssh: through this machine (two ssh hops), and direct (the
# sending "server" pipes into ssh to the receiving one: one hop).
# Rounds alternate the tools on a flushed disk; medians are printed. Never a test.
#
#   bash benches/transfer_vs_rsync.sh [ENTITIES] [FILES_PER_GROUP] [BYTES_PER_FILE] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
entities=${1:-170}
files=${2:-3}
bytes=${3:-307200}
rounds=${4:-3}
command -v rsync > /dev/null || apt-get install -y rsync > /dev/null
cargo build --release --quiet -p cmw-upgrade-cli -p cmw-upgrade-benches
bin=$PWD/target/release
work=${BENCH_DIR:-$PWD/target/bench-transfer}
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)

# The bundle to move, made by `backup` from a generated server.
"$bin/cmw-upgrade-fixtures" server "$work/root" deb > /dev/null
database="$work/root/var/lib/comindware/prod/Database"
rm -rf "$database"
"$bin/cmw-upgrade-fixtures" database "$database" "$entities" "$files" "$bytes"
# (--dest is a server path under --root; the bundle is then moved out of the tree.)
"$bin/cmw-upgrade" --root "$work/root" backup --instance prod --dest /bundle > /dev/null
mv "$work/root/bundle" "$work/bundle"
rm -rf "$work/root"
echo "bundle: $(find "$work/bundle" -type f | wc -l) files, $(du -sb "$work/bundle" | cut -f1) bytes"

# A throwaway sshd on a free loopback port, configured as tests/src/sshd.rs does.
ssh-keygen -q -t ed25519 -N '' -C cmw-upgrade-bench -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C cmw-upgrade-bench -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
mkdir -p /run/sshd
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
LogLevel ERROR
MaxSessions 50
EOF
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" > "$work/known_hosts"
sshd=$(command -v sshd || echo /usr/sbin/sshd)
"$sshd" -D -e -f "$work/sshd_config" 2> /dev/null &
sshd_pid=$!
trap 'kill "$sshd_pid" 2> /dev/null; rm -rf "$work"' EXIT
for _ in $(seq 200); do
  (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
  sleep 0.05
done
host="${USER:-root}@127.0.0.1"
ssh_opts=(-p "$port" -o BatchMode=yes -o StrictHostKeyChecking=yes
          -o "UserKnownHostsFile=$work/known_hosts" -o IdentitiesOnly=yes -i "$work/client_key")
ssh_line="ssh ${ssh_opts[*]}"
echo "ssh cipher: $(ssh -G "${ssh_opts[@]}" 127.0.0.1 2> /dev/null | awk '$1 == "ciphers" {print $2}' | cut -d, -f1)"

# The server side of each tool runs under GNU time, which writes its peak RSS (KiB).
cat > "$work/timed-cmw-upgrade" <<EOF
#!/bin/sh
exec /usr/bin/time -f %M -o "$work/rss-server-cmw.\$\$" "$bin/cmw-upgrade" "\$@"
EOF
chmod 755 "$work/timed-cmw-upgrade"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
max_of() { cat "$@" 2> /dev/null | sort -n | tail -1; }
fresh() { rm -rf "$work"/dst-* "$work"/rss-*; sync; }

cmw_times=(); rsync_times=(); tar_times=(); both_times=(); direct_times=()
cmw_rss=(); cmw_server_rss=(); rsync_rss=(); rsync_server_rss=(); tar_rss=(); tar_server_rss=()
for round in $(seq "$rounds"); do
  fresh
  start=$(now)
  /usr/bin/time -f %M -o "$work/rss-client" "$bin/cmw-upgrade" bundle transfer \
    --from "$work/bundle" --to "$host:$port:$work/dst-cmw" \
    --identity-file "$work/client_key" --known-hosts "$work/known_hosts" \
    --remote-cmw-upgrade "$work/timed-cmw-upgrade" > /dev/null
  end=$(now)
  cmw_times+=($((end - start))); cmw_rss+=("$(cat "$work/rss-client")")
  cmw_server_rss+=("$(max_of "$work"/rss-server-cmw.*)")
  "$bin/cmw-upgrade" backup verify "$work/dst-cmw" > /dev/null

  fresh
  start=$(now)
  /usr/bin/time -f %M -o "$work/rss-client" rsync -a -e "$ssh_line" \
    --rsync-path="/usr/bin/time -f %M -o $work/rss-server-rsync rsync" \
    "$work/bundle/" "$host:$work/dst-rsync/"
  end=$(now)
  rsync_times+=($((end - start))); rsync_rss+=("$(cat "$work/rss-client")")
  rsync_server_rss+=("$(cat "$work/rss-server-rsync")")

  fresh
  mkdir "$work/dst-tar"
  start=$(now)
  /usr/bin/time -f %M -o "$work/rss-client" tar -C "$work/bundle" -cf - . |
    ssh "${ssh_opts[@]}" "$host" /usr/bin/time -f %M -o "$work/rss-server-tar" tar -C "$work/dst-tar" -xf -
  end=$(now)
  tar_times+=($((end - start))); tar_rss+=("$(cat "$work/rss-client")")
  tar_server_rss+=("$(cat "$work/rss-server-tar")")

  fresh
  start=$(now)
  "$bin/cmw-upgrade" bundle transfer \
    --from "$host:$port:$work/bundle" --to "$host:$port:$work/dst-both" \
    --identity-file "$work/client_key" --known-hosts "$work/known_hosts" \
    --remote-cmw-upgrade "$bin/cmw-upgrade" --route through-here > /dev/null
  end=$(now)
  both_times+=($((end - start)))

  fresh
  start=$(now)
  "$bin/cmw-upgrade" bundle transfer \
    --from "$host:$port:$work/bundle" --to "$host:$port:$work/dst-direct" \
    --identity-file "$work/client_key" --known-hosts "$work/known_hosts" \
    --remote-cmw-upgrade "$bin/cmw-upgrade" --route direct \
    --direct-ssh-option "IdentityFile=$work/client_key" \
    --direct-ssh-option "UserKnownHostsFile=$work/known_hosts" > /dev/null
  end=$(now)
  direct_times+=($((end - start)))
done
fresh

cmw_ms=$(printf '%s\n' "${cmw_times[@]}" | median)
rsync_ms=$(printf '%s\n' "${rsync_times[@]}" | median)
tar_ms=$(printf '%s\n' "${tar_times[@]}" | median)
both_ms=$(printf '%s\n' "${both_times[@]}" | median)
direct_ms=$(printf '%s\n' "${direct_times[@]}" | median)
peak() { printf '%s\n' "$@" | sort -n | tail -1; }
awk -v c="$cmw_ms" -v r="$rsync_ms" -v t="$tar_ms" -v b="$both_ms" -v d="$direct_ms" -v n="$rounds" \
    -v cr="$(peak "${cmw_rss[@]}")" -v cs="$(peak "${cmw_server_rss[@]}")" \
    -v rr="$(peak "${rsync_rss[@]}")" -v rs="$(peak "${rsync_server_rss[@]}")" \
    -v tr="$(peak "${tar_rss[@]}")" -v ts="$(peak "${tar_server_rss[@]}")" 'BEGIN {
  printf "bundle transfer: %.2f s   rsync -a: %.2f s   tar | ssh tar: %.2f s\n", c/1e9, r/1e9, t/1e9
  printf "  ratio transfer/rsync: %.2f (target <= 1.0)   transfer/tar: %.2f (target <= 1.3)\n", c/r, c/t
  printf "  remote to remote through this machine (two ssh hops): %.2f s   direct (one hop): %.2f s\n", b/1e9, d/1e9
  printf "peak memory, sending side / receiving side:\n"
  printf "  bundle transfer %.1f / %.1f MiB   rsync %.1f / %.1f MiB   tar %.1f / %.1f MiB\n", cr/1024, cs/1024, rr/1024, rs/1024, tr/1024, ts/1024
  printf "medians of %d rounds\n", n }'
