#!/usr/bin/env bash
# Failed requests per cut-over method under load, measured with wrk (a client
# that never retries) on loopback:
#
#   haproxy        `cmw-upgrade cutover apply|revert --method haproxy`: runtime API,
#                  new server ready and UP, old drained, then maint      target: 0 errors
#   nginx-reload   `cmw-upgrade cutover apply|revert --method nginx --reload`: the
#                  upstream address swapped and `nginx -s reload`       reports its count
#   control        a plain `nginx -s reload` (nothing changed) under keep-alive load:
#                  must show errors, or the run does not count (wrk would not be
#                  seeing what a reload does to keep-alive clients)
#
# Each method: 10 alternating switches (apply, revert, ...) during one wrk run in
# each of four profiles: keep-alive GET, `Connection: close` GET, keep-alive POST
# (1 KiB body), slow answers (1 s each). Errors = wrk's socket errors (connect,
# read, write, timeout) + non-2xx/3xx answers.
#
#   bash benches/cutover_under_load.sh [SECONDS_PER_RUN] [CONNECTIONS]
#
# Needs haproxy, nginx, python3 and wrk (installed here with apt-get when
# missing and run as root). Not run by CI: it takes about 9 runs x SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-40}
connections=${2:-64}

for program in haproxy nginx python3; do
  command -v "$program" > /dev/null || { echo "needs $program (apt-get install haproxy nginx-light python3)"; exit 1; }
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
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
EOF
old_port=$(free_port); new_port=$(free_port)
python3 "$work/backend.py" old "$old_port" 2> "$work/backend-old.log" & pids+=($!)
python3 "$work/backend.py" new "$new_port" 2> "$work/backend-new.log" & pids+=($!)
wait_http "http://127.0.0.1:$old_port/"; wait_http "http://127.0.0.1:$new_port/"

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

# nginx as a Debian server lays it out (relative paths under the prefix).
nroot=$work/nginx-root
mkdir -p "$nroot/etc/nginx/sites-enabled" "$nroot/usr/share/nginx/logs" "$nroot/usr/share/nginx/temp"
nport=$(free_port)
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
        proxy_pass http://127.0.0.1:$old_port;   # the old server
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
EOF
nginx_args=(-p "$nroot/usr/share/nginx/" -c "$nroot/etc/nginx/nginx.conf")
nginx "${nginx_args[@]}" -g 'daemon off;' 2> "$work/nginx.log" & pids+=($!)
wait_http "http://127.0.0.1:$nport/"

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
control_reload() { nginx "${nginx_args[@]}" -s reload; }

# wrk's errors in one number, from its summary.
errors_of() {
  awk '/Socket errors/ { gsub(",", ""); for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i }
       /Non-2xx or 3xx/ { n += $NF } END { print n + 0 }' "$1"
}
requests_of() { awk '/requests in/ { print $1 }' "$1"; }

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
  for round in 1 2 3 4 5; do
    case $method in
      haproxy) haproxy_switch apply; sleep 0.5; haproxy_switch revert ;;
      nginx-reload) nginx_switch apply; sleep 0.5; nginx_switch revert ;;
      control) control_reload; sleep 0.5; control_reload ;;
    esac
    sleep 0.5
  done
  local took=$((SECONDS - started))
  wait "$wrk_pid"
  if [ $((took + 2)) -ge "$seconds" ]; then
    echo "the 10 switches took ${took}s, longer than the run: raise SECONDS_PER_RUN"; exit 1
  fi
  printf '%-13s %-15s %10s %8s %s\n' "$method" "$profile" "$(requests_of "$out")" \
    "$(errors_of "$out")" "${took}s"
}

echo "wrk -t2 -c$connections, ${seconds}s per run, 10 switches (5 apply + 5 revert) per run"
printf '%-13s %-15s %10s %8s %s\n' method profile requests errors switches-took
run control keepalive-get "$nport"
control_errors=$(errors_of "$work/control-keepalive-get.txt")
for profile in keepalive-get close-get keepalive-post slow-1s; do
  run haproxy "$profile" "$hport"
done
for profile in keepalive-get close-get keepalive-post slow-1s; do
  run nginx-reload "$profile" "$nport"
done
if [ "$control_errors" -eq 0 ]; then
  echo "NOT COUNTED: the negative control (plain nginx reloads under keep-alive load) showed no error"
  exit 1
fi
echo "negative control: $control_errors errors from 10 plain nginx reloads: the load sees what a reload does"
