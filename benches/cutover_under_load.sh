#!/usr/bin/env bash
# Failed requests per cut-over method under load, measured with wrk (a client
# that never retries) on loopback:
#
#   haproxy        `cmw-upgrade cutover apply|revert --method haproxy`: runtime API,
#                  new server ready and UP, old drained, then maint      target: 0 errors
#   nginx-reload   `cmw-upgrade cutover apply|revert --method nginx --reload`: the
#                  upstream address swapped and `nginx -s reload`       reports its count
#   dns            nginx made resolver-driven once (`cutover prepare --method nginx
#                  --upstream-name`, `resolver ... valid=1s`), then
#                  `cutover apply|revert --method dns`: a TSIG-signed update to a
#                  real BIND, no reload                                  target: 0 errors
#   control        a plain `nginx -s reload` (nothing changed) under keep-alive load:
#                  must show errors, or the run does not count (wrk would not be
#                  seeing what a reload does to keep-alive clients)
#
# Each method: 10 alternating switches (apply, revert, ...) during one wrk run in
# each of four profiles: keep-alive GET, `Connection: close` GET, keep-alive POST
# (1 KiB body), slow answers (1 s each). Errors = wrk's socket errors (connect,
# read, write, timeout) + non-2xx/3xx answers. After each switch a fresh GET
# through the proxy must come from the server switched to within 5 s (or the
# run stops); slowest-effect is the longest that took in the run.
#
#   bash benches/cutover_under_load.sh [SECONDS_PER_RUN] [CONNECTIONS]
#   METHODS="haproxy dns" bash benches/cutover_under_load.sh   # some methods only
#
# Needs haproxy, nginx, named (bind9), python3 and wrk (installed here with
# apt-get when missing and run as root). Not run by CI: it takes about 13 runs
# x SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-40}
connections=${2:-64}

methods=${METHODS:-haproxy nginx-reload dns}
export PATH=$PATH:/usr/sbin
for program in haproxy nginx python3 named tsig-keygen; do
  command -v "$program" > /dev/null || { echo "needs $program (apt-get install haproxy nginx-light python3 bind9)"; exit 1; }
done
if ! command -v wrk > /dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk > /dev/null
  else
    echo "needs wrk: apt-get install wrk"; exit 1
  fi
fi
cargo build --quiet -p cmw-upgrade-cli
bin=${CMW_UPGRADE:-$PWD/target/debug/cmw-upgrade}
work=${BENCH_DIR:-$PWD/target/bench-cutover}
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done; wait 2> /dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('$1', timeout=1)" 2> /dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$1 does not answer"; exit 1
}

# Two backends that name themselves; /slow answers after 1 s; keep-alive, POST.
cat > "$work/backend.py" << 'EOF'
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name, port = sys.argv[1], int(sys.argv[2])
address = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/slow"):
            time.sleep(1)
        body = name.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 1024
ThreadingHTTPServer((address, port), Handler).serve_forever()
EOF
old_port=$(free_port); new_port=$(free_port)
python3 "$work/backend.py" old "$old_port" 2> "$work/backend-old.log" & pids+=($!)
python3 "$work/backend.py" new "$new_port" 2> "$work/backend-new.log" & pids+=($!)
wait_http "http://127.0.0.1:$old_port/"; wait_http "http://127.0.0.1:$new_port/"
# For the dns method: one port, two loopback addresses the name points at in turn.
dns_port=$(free_port)
python3 "$work/backend.py" old "$dns_port" 127.0.0.2 2> "$work/backend-old2.log" & pids+=($!)
python3 "$work/backend.py" new "$dns_port" 127.0.0.3 2> "$work/backend-new3.log" & pids+=($!)
wait_http "http://127.0.0.2:$dns_port/"; wait_http "http://127.0.0.3:$dns_port/"

# HAProxy: both servers, the new one disabled; its admin socket under a root.
hroot=$work/haproxy-root
mkdir -p "$hroot/etc/haproxy" "$hroot/run/haproxy"
hport=$(free_port)
cat > "$hroot/etc/haproxy/haproxy.cfg" << EOF
global
    stats socket $hroot/run/haproxy/admin.sock mode 600 level admin
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$hport
    default_backend cmw
backend cmw
    server old 127.0.0.1:$old_port check inter 100ms   # the old server
    server new 127.0.0.1:$new_port check inter 100ms disabled
EOF
haproxy -db -f "$hroot/etc/haproxy/haproxy.cfg" 2> "$work/haproxy.log" & pids+=($!)
wait_http "http://127.0.0.1:$hport/"

# nginx as a Debian server lays it out (relative paths under the prefix):
# nginx_at ROOT PORT UPSTREAM starts one sending to UPSTREAM.
nginx_at() {
local nroot=$1 nport=$2 upstream=$3
mkdir -p "$nroot/etc/nginx/sites-enabled" "$nroot/usr/share/nginx/logs" "$nroot/usr/share/nginx/temp"
cat > "$nroot/etc/nginx/nginx.conf" << 'EOF'
worker_processes 2;
pid logs/nginx.pid;
error_log logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path temp/body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
    include sites-enabled/*;
}
EOF
cat > "$nroot/etc/nginx/sites-enabled/cmw" << EOF
server {
    listen 127.0.0.1:$nport;
    location / {
        proxy_pass http://$upstream;   # the old server
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
EOF
nginx -p "$nroot/usr/share/nginx/" -c "$nroot/etc/nginx/nginx.conf" -g 'daemon off;' 2> "$nroot.log" & pids+=($!)
wait_http "http://127.0.0.1:$nport/"
}
nroot=$work/nginx-root; nport=$(free_port)
nginx_at "$nroot" "$nport" "127.0.0.1:$old_port"
nginx_args=(-p "$nroot/usr/share/nginx/" -c "$nroot/etc/nginx/nginx.conf")

# BIND with the name the dns method moves, updates only with the key; the
# second nginx asks it for the name (made resolver-driven by prepare, one reload).
bind_dir=$work/bind
mkdir -p "$work/dns-state"
mkdir -p "$bind_dir"
tsig-keygen -a hmac-sha256 cmw-upgrade > "$bind_dir/update.key"
ns_port=$(free_port)
cat > "$bind_dir/example.test.zone" << EOF
\$TTL 300
@    IN SOA ns1.example.test. hostmaster.example.test. ( 1 3600 600 86400 1 )
@    IN NS  ns1.example.test.
ns1  IN A   127.0.0.1
backend 1 IN A 127.0.0.2
EOF
cat > "$bind_dir/named.conf" << EOF
options {
    directory "$bind_dir";
    listen-on port $ns_port { 127.0.0.1; };
    listen-on-v6 { none; };
    pid-file none;
    session-keyfile "$bind_dir/session.key";
    managed-keys-directory "$bind_dir";
    recursion no;
    dnssec-validation no;
    notify no;
};
controls { };
$(cat "$bind_dir/update.key")
zone "example.test" {
    type primary;
    file "$bind_dir/example.test.zone";
    update-policy { grant cmw-upgrade zonesub ANY; };
};
EOF
named -g -c "$bind_dir/named.conf" 2> "$bind_dir/named.log" & pids+=($!)
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $ns_port), 1)" 2> /dev/null && break
  sleep 0.1
done
sleep 1
droot=$work/nginx-dns-root; dport=$(free_port)
nginx_at "$droot" "$dport" "127.0.0.2:$dns_port"
"$bin" --root "$droot" --json cutover prepare --instance bench --method nginx \
  --nginx-site /etc/nginx/sites-enabled/cmw --nginx-conf /etc/nginx/nginx.conf \
  --old "127.0.0.2:$dns_port" --new "127.0.0.3:$dns_port" --upstream-name backend.example.test \
  --resolver "127.0.0.1:$ns_port" --resolver-valid 1 > "$work/dns-prepare.json" \
  || { cat "$work/dns-prepare.json"; exit 1; }
sleep 2

echo 'wrk.method = "POST"; wrk.body = string.rep("x", 1024); wrk.headers["Content-Type"] = "text/plain"' > "$work/post.lua"

haproxy_switch() {
  "$bin" --root "$hroot" --json cutover "$1" --instance bench --method haproxy \
    --haproxy-socket /run/haproxy/admin.sock --backend cmw --old-server old --new-server new \
    --haproxy-config /etc/haproxy/haproxy.cfg --drain-seconds 2 > "$work/last-switch.json" 2>&1
}
nginx_switch() {
  "$bin" --root "$nroot" --json cutover "$1" --instance bench --method nginx --reload \
    --nginx-site /etc/nginx/sites-enabled/cmw --nginx-conf /etc/nginx/nginx.conf \
    --old "127.0.0.1:$old_port" --new "127.0.0.1:$new_port" > "$work/last-switch.json" 2>&1
}
dns_switch() {
  # --force: the name's TTL is 1 s from the start (prepare's wait is for real TTLs).
  "$bin" --root "$work/dns-state" --json cutover "$1" --instance bench --method dns \
    --zone example.test --name backend.example.test --old 127.0.0.2 --new 127.0.0.3 \
    --tsig-key-file "$bind_dir/update.key" --server "127.0.0.1:$ns_port" --force \
    > "$work/last-switch.json" 2>&1
}
control_reload() { nginx "${nginx_args[@]}" -s reload 2> /dev/null; }

# wrk's errors in one number, from its summary.
errors_of() {
  awk '/Socket errors/ { gsub(",", ""); for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i }
       /Non-2xx or 3xx/ { n += $NF } END { print n + 0 }' "$1"
}
requests_of() { awk '/requests in/ { print $1 }' "$1"; }

# serves PORT NAME: the proxy's answers come from NAME within 5 s (the switch took
# effect); the slowest such wait is printed per run.
slowest=0
serves() {
  local started now
  started=$(date +%s%N)
  for _ in $(seq 100); do
    if [ "$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$1/', timeout=2).read().decode().strip())" 2> /dev/null)" = "$2" ]; then
      now=$(( ($(date +%s%N) - started) / 1000000 ))
      [ "$now" -gt "$slowest" ] && slowest=$now
      return 0
    fi
    sleep 0.05
  done
  echo "the switch did not take effect: the proxy on $1 does not answer as $2 after 5s"; exit 1
}

# run METHOD PROFILE PORT: wrk for $seconds while the method switches 10 times.
run() {
  local method=$1 profile=$2 port=$3 out="$work/$1-$2.txt" path=/ extra=() timeout=2s
  case $profile in
    keepalive-get) ;;
    close-get) extra=(-H "Connection: close") ;;
    keepalive-post) extra=(-s "$work/post.lua") ;;
    slow-1s) path=/slow; timeout=4s ;;
  esac
  wrk -t2 -c"$connections" -d"${seconds}s" --timeout "$timeout" "${extra[@]}" \
    "http://127.0.0.1:$port$path" > "$out" 2>&1 &
  local wrk_pid=$!
  sleep 2
  local started=$SECONDS
  slowest=0
  for round in 1 2 3 4 5; do
    case $method in
      haproxy) haproxy_switch apply; serves "$port" new; haproxy_switch revert; serves "$port" old ;;
      nginx-reload) nginx_switch apply; serves "$port" new; nginx_switch revert; serves "$port" old ;;
      dns) dns_switch apply; serves "$port" new; dns_switch revert; serves "$port" old ;;
      control) control_reload; sleep 0.5; control_reload ;;
    esac
    sleep 0.5
  done
  local took=$((SECONDS - started))
  wait "$wrk_pid"
  if [ $((took + 2)) -ge "$seconds" ]; then
    echo "the 10 switches took ${took}s, longer than the run: raise SECONDS_PER_RUN"; exit 1
  fi
  printf '%-13s %-15s %10s %8s %13s %s\n' "$method" "$profile" "$(requests_of "$out")" \
    "$(errors_of "$out")" "${took}s" "${slowest}ms"
}

echo "wrk -t2 -c$connections, ${seconds}s per run, 10 switches (5 apply + 5 revert) per run"
printf '%-13s %-15s %10s %8s %13s %s\n' method profile requests errors switches-took \
  slowest-effect
run control keepalive-get "$nport"
control_errors=$(errors_of "$work/control-keepalive-get.txt")
for method in $methods; do
  case $method in haproxy) port=$hport ;; nginx-reload) port=$nport ;; dns) port=$dport ;; esac
  for profile in keepalive-get close-get keepalive-post slow-1s; do
    run "$method" "$profile" "$port"
  done
done
if [ "$control_errors" -eq 0 ]; then
  echo "NOT COUNTED: the negative control (plain nginx reloads under keep-alive load) showed no error"
  exit 1
fi
echo "negative control: $control_errors errors from 10 plain nginx reloads: the load sees what a reload does"
