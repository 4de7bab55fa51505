//! The stand-ins' shell scripts. Each starts with the simulation's folders
//! baked in (`ROOT` = the new server's `/`, `SIM` = the simulation's own
//! state), and otherwise behaves as the platform's documentation describes the real one: same
//! name, same flags, same output format.

/// `bash` prologue shared by every script: the folders and a `-h` helper.
pub fn prologue(root: &str, sim: &str) -> String {
    format!(
        "#!/bin/bash\n# Simulated by cmw-upgrade's test simulator (not the real program).\nset -u\nROOT={root}\nSIM={sim}\n",
        root = quote(root),
        sim = quote(sim)
    )
}

/// Single-quotes a value for a script.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `version_install.sh`: copies the unpacked version into `/var/www/.cmw_version/<v>`.
pub const VERSION_INSTALL: &str = r#"
if [ "${1:-}" = "-h" ]; then echo "Usage: version_install.sh   installs the version this folder holds"; exit 0; fi
HERE=$(cd "$(dirname "$0")/.." && pwd)
VERSION=$(cat "$HERE/VERSION")
echo "[Start] Installing CBAP version $VERSION."
mkdir -p "$ROOT/var/www/.cmw_version/$VERSION"
cp -a "$HERE/." "$ROOT/var/www/.cmw_version/$VERSION/"
echo "OK     Binaries copied."
echo "[Done] Installing CBAP version $VERSION."
"#;

/// `version_list.sh`: one installed version per line.
pub const VERSION_LIST: &str = r#"
if [ "${1:-}" = "-h" ]; then echo "Usage: version_list.sh   lists installed versions"; exit 0; fi
echo "Installed CBAP versions:"
for dir in "$ROOT"/var/www/.cmw_version/*/; do
  [ -d "$dir" ] && echo "  $(basename "$dir")"
done
exit 0
"#;

/// `prerequisites_list.sh`: the `Status | Software | Version` table.
pub const PREREQUISITES_LIST: &str = r#"
if [ "${1:-}" = "-h" ]; then echo "Usage: prerequisites_list.sh   shows the prerequisites' status"; exit 0; fi
if [ -e "$SIM/state/packages/librdkafka" ]; then RD="OK     | librdkafka    | 2.3.0"; else RD="FAILED | librdkafka    |"; fi
echo "+--------+---------------+---------+"
echo "| Status | Software      | Version |"
echo "+--------+---------------+---------+"
echo "| OK     | Java          | 17.0.9  |"
echo "| OK     | Kafka         | 3.6.1   |"
echo "| OK     | Elasticsearch | 8.10.2  |"
echo "| $RD |"
echo "+--------+---------------+---------+"
"#;

/// `instance_create.sh -n=<i> -p=<port> -v=<version>`: lays the instance out
/// from the version's templates and starts its services.
pub const INSTANCE_CREATE: &str = r#"
NAME=""; PORT=80; VERSION=""
for arg in "$@"; do
  case "$arg" in
    -h) echo "Usage: instance_create.sh -n=<instanceName> [-p=<port>] -v=<version> [-fqdn=] [-el=] [-kf=] [-d]"; exit 0;;
    -n=*) NAME="${arg#-n=}";;
    -p=*) PORT="${arg#-p=}";;
    -v=*) VERSION="${arg#-v=}";;
    -fqdn=*|-el=*|-kf=*|-d) ;;
    *) echo "Unknown option $arg" >&2; exit 2;;
  esac
done
[ -n "$NAME" ] && [ -n "$VERSION" ] || { echo "-n and -v are required" >&2; exit 2; }
VDIR="$ROOT/var/www/.cmw_version/$VERSION"
[ -d "$VDIR" ] || { echo "FAILED Used version: $VERSION is not installed"; echo "FAILED Final status."; exit 1; }
BACKEND=$(cat "$SIM/backend-port")
echo "[Start] Create CBAP instance $NAME."
echo "[Done] Creating Log Directories."
DB_NEW=No
[ -d "$ROOT/var/lib/comindware/$NAME/Database" ] || DB_NEW=Yes
TEMPLATES="$VDIR/templates"
(cd "$TEMPLATES" && find . -type f) | while read -r file; do
  target="$ROOT/${file#./}"
  target="${target//@INSTANCE@/$NAME}"
  mkdir -p "$(dirname "$target")"
  sed -e "s/@INSTANCE@/$NAME/g" -e "s/@PORT@/$PORT/g" -e "s/@BACKEND@/$BACKEND/g" -e "s/@VERSION@/$VERSION/g" "$TEMPLATES/$file" > "$target"
done
mkdir -p "$ROOT/var/lib/comindware/$NAME/Database" "$ROOT/var/log/comindware/$NAME/Logs"
# A new database is what Ignite lays out: its work folder db/ (with the version marker).
[ "$DB_NEW" = Yes ] && mkdir -p "$ROOT/var/lib/comindware/$NAME/Database/db" && echo "$VERSION" > "$ROOT/var/lib/comindware/$NAME/Database/.cmw-sim-version"
ln -sfn "$VDIR" "$ROOT/var/www/$NAME/bin"
SITE_DIR=$(cat "$SIM/site-dir")
if [ -d "$ROOT/etc/nginx/sites-enabled" ] && [ "$SITE_DIR" = /etc/nginx/sites-available ]; then
  # Relative, so that it leads to the site both inside the root and for this machine's nginx.
  ln -sfn "../sites-available/comindware$NAME" "$ROOT/etc/nginx/sites-enabled/comindware$NAME"
fi
echo "OK     Instance folder created."
echo "OK     Instance Web config created."
echo "OK     Instance Ignite config created."
echo "OK     Instance binaries linked."
echo "OK     Instance config created."
echo "OK     Data folder created."
echo "OK     Database folder created: $DB_NEW"
echo "OK     Streams folder created: No"
echo "OK     Logs folder created: Yes"
echo "OK     Used version: $VERSION"
echo "OK     Logs configured."
echo "OK     Sites created."
echo "OK     Sites enabled."
echo "OK     API Gateway configured."
echo "OK     Link to binaries is valid."
status() { if systemctl restart "$1" >/dev/null 2>&1; then echo "OK     $2 started."; else echo "FAILED $2 started."; FINAL=FAILED; fi; }
FINAL=OK
status "comindware$NAME" "Instance service"
status "apigateway$NAME" "Instance API gateway service"
status "adapterhost$NAME" "Instance adapter host service"
if systemctl is-active nginx >/dev/null 2>&1; then systemctl reload nginx >/dev/null 2>&1; else systemctl start nginx >/dev/null 2>&1; fi
if systemctl is-active nginx >/dev/null 2>&1; then echo "OK     NGINX started."; else echo "FAILED NGINX started."; FINAL=FAILED; fi
echo "$FINAL     Final status."
echo "[Done] Upgrade CBAP instance."
"#;

/// `instance_delete.sh -n=<i> [--deleteData]`.
pub const INSTANCE_DELETE: &str = r#"
NAME=""; DELETE_DATA=no
for arg in "$@"; do
  case "$arg" in
    -h) echo "Usage: instance_delete.sh -n=<instanceName> [--deleteData]"; exit 0;;
    -n=*) NAME="${arg#-n=}";;
    --deleteData) DELETE_DATA=yes;;
    *) echo "Unknown option $arg" >&2; exit 2;;
  esac
done
[ -n "$NAME" ] || { echo "-n is required" >&2; exit 2; }
for unit in "comindware$NAME" "apigateway$NAME" "adapterhost$NAME"; do systemctl stop "$unit" >/dev/null 2>&1; done
SITE_DIR=$(cat "$SIM/site-dir")
rm -rf "$ROOT/var/www/$NAME" "$ROOT/usr/share/comindware/configs/instance/$NAME.yml" \
  "$ROOT/etc/sysconfig/comindware$NAME-env" "$ROOT$SITE_DIR/comindware$NAME" "$ROOT/etc/nginx/sites-enabled/comindware$NAME" \
  "$ROOT/usr/lib/systemd/system/comindware$NAME.service" "$ROOT/usr/lib/systemd/system/apigateway$NAME.service" \
  "$ROOT/usr/lib/systemd/system/adapterhost$NAME.service"
[ "$DELETE_DATA" = yes ] && rm -rf "$ROOT/var/lib/comindware/$NAME"
echo "OK     Instance $NAME deleted."
echo "[Done] Delete CBAP instance."
"#;

/// `instance_upgrade.sh`: present as in the distribution; the tool does not use it.
pub const INSTANCE_UPGRADE: &str = r#"
echo "Usage: instance_upgrade.sh -n=<instanceName> -vp=<versionPath>"
[ "${1:-}" = "-h" ] && exit 0
echo "instance_upgrade.sh is not simulated" >&2; exit 2
"#;

/// `systemctl` for the simulated units. The platform service is a real
/// process (`simulated-service`); nginx is the real nginx on the
/// simulation's config; the others are state files.
pub fn systemctl(service_program: &str) -> String {
    format!(
        "SERVICE_PROGRAM={}\n{}",
        quote(service_program),
        r#"
UNITS="$SIM/state/units"; mkdir -p "$UNITS"
VERB="${1:-}"; shift || true
known() {
  case "$1" in nginx|kafka|elasticsearch|opensearch) return 0;; esac
  [ -e "$ROOT/usr/lib/systemd/system/$1.service" ] || [ -e "$ROOT/etc/systemd/system/$1.service" ]
}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
start() {
  local unit="${1%.service}"
  known "$unit" || { echo "Failed to start $unit.service: Unit $unit.service not found." >&2; return 5; }
  case "$unit" in
    nginx) alive "$ROOT/run/nginx.pid" || nginx ;;
    comindware*)
      alive "$UNITS/$unit.pid" && return 0
      setsid "$SERVICE_PROGRAM" simulated-service --root "$ROOT" --instance "${unit#comindware}" \
        --sim "$SIM" --port "$(cat "$SIM/backend-port")" </dev/null >>"$UNITS/$unit.out" 2>&1 &
      echo $! > "$UNITS/$unit.pid"
      sleep 0.2
      alive "$UNITS/$unit.pid" || { echo "Job for $unit.service failed." >&2; return 1; } ;;
    *)
      if [ -e "$SIM/state/fail-once-$unit" ]; then
        rm -f "$SIM/state/fail-once-$unit"; echo failed > "$UNITS/$unit"
        echo "Job for $unit.service failed because the control process exited with error code." >&2; return 1
      fi
      echo active > "$UNITS/$unit" ;;
  esac
}
stop() {
  local unit="${1%.service}"
  case "$unit" in
    nginx) alive "$ROOT/run/nginx.pid" && nginx -s quit; for _ in $(seq 50); do alive "$ROOT/run/nginx.pid" || break; sleep 0.1; done ;;
    comindware*)
      if alive "$UNITS/$unit.pid"; then
        pid=$(cat "$UNITS/$unit.pid"); kill "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null
      fi
      rm -f "$UNITS/$unit.pid" ;;
    *) echo inactive > "$UNITS/$unit" ;;
  esac
  return 0
}
active() {
  local unit="${1%.service}"
  case "$unit" in
    nginx) alive "$ROOT/run/nginx.pid" ;;
    comindware*) alive "$UNITS/$unit.pid" ;;
    *) [ "$(cat "$UNITS/$unit" 2>/dev/null)" = active ] ;;
  esac
}
rc=0
case "$VERB" in
  start) for u in "$@"; do start "$u" || rc=$?; done ;;
  stop) for u in "$@"; do stop "$u"; done ;;
  restart) for u in "$@"; do stop "$u"; start "$u" || rc=$?; done ;;
  reload) for u in "$@"; do if [ "${u%.service}" = nginx ]; then nginx -s reload || rc=1; fi; done ;;
  is-active) for u in "$@"; do if active "$u"; then echo active; else echo inactive; rc=3; fi; done ;;
  status) for u in "$@"; do if active "$u"; then echo "$u: active (running)"; else echo "$u: inactive (dead)"; rc=3; fi; done ;;
  daemon-reload) ;;
  *) echo "systemctl (simulated): unknown command $VERB" >&2; rc=1 ;;
esac
exit $rc
"#
    )
}

/// The family's package tool: records that librdkafka is installed.
pub fn package_tool(name: &str) -> String {
    format!(
        "TOOL={name}\n{}",
        r#"
files=()
for arg in "$@"; do
  case "$arg" in -i|install|-y) ;; -*) echo "$TOOL (simulated): unknown option $arg" >&2; exit 2;; *) files+=("$arg");; esac
done
[ ${#files[@]} -gt 0 ] || { echo "$TOOL: no package files given" >&2; exit 1; }
for file in "${files[@]}"; do
  [ -f "$file" ] || { echo "$TOOL: cannot access $file: No such file" >&2; exit 1; }
  echo "Setting up $(basename "$file") ..."
done
mkdir -p "$SIM/state/packages"; touch "$SIM/state/packages/librdkafka"
echo "$TOOL $*" >> "$SIM/state/packages/log"
"#
    )
}

/// `nginx`: the real nginx, on the simulated server's main config unless `-c`
/// is given. That config names server paths (`/etc/nginx/...`, `/run/nginx.pid`);
/// this machine's nginx is given a copy whose absolute paths lead under the root.
pub fn nginx(real_nginx: &str) -> String {
    format!(
        "REAL={}\n{}",
        quote(real_nginx),
        r#"
for arg in "$@"; do [ "$arg" = -c ] && exec "$REAL" "$@"; done
sed -E "s#^([[:space:]]*[a-z_]+[[:space:]]+)/#\1$ROOT/#" "$ROOT/etc/nginx/nginx.conf" > "$SIM/nginx.conf" || exit 1
exec "$REAL" -c "$SIM/nginx.conf" -e "$ROOT/var/log/nginx/error.log" "$@"
"#
    )
}
