"""Real playbooks, run by ansible-core's ansible-playbook, against simulated
servers (`cmw-upgrade demo --setup-only --keep DIR`): through the local
connection and through a throwaway sshd on loopback (ssh to 127.0.0.1 with a
fresh key, host key checked).

Each simulated server pair is one instance of the fleet (one inventory host),
one per OS family. Run by ansible/tests/run.sh with CMW_UPGRADE_BINARY set.
"""

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
COLLECTIONS = REPO / "ansible"
BINARY = Path(os.environ.get("CMW_UPGRADE_BINARY", REPO / "target/debug/cmw-upgrade")).resolve()
VENV_BIN = Path(sys.executable).parent
FAMILIES = ["deb", "rpm", "alt"]
SECRETS = ["journal-secret", "kafka-secret"]


def cmw(*args, check=True):
    """The tool's JSON document."""
    done = subprocess.run([str(BINARY), "--json", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError("cmw-upgrade %s: %s %s" % (args, done.stdout, done.stderr))
    return json.loads(done.stdout)


def playbook(path, inventory, *extra, extra_vars=None):
    """ansible-playbook's (exit code, output, recap by host)."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_HOST_KEY_CHECKING="True",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(inventory.parent / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(inventory.parent / "ansible-remote"),
        # ssh connections are shared within a play and end 2 s after it, so
        # none outlives the test.
        ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=2s",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(inventory.parent / "ansible-cp"),
    )
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(path), *extra]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    recap = {}
    for line in output.splitlines():
        found = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
        if found:
            recap[found.group(1)] = dict(
                (key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", found.group(2)))
    return done.returncode, output, recap


def free_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


class Sshd:
    """Debian's sshd on a free loopback port: its own host key, a fresh client
    key in authorized_keys, no passwords, a known_hosts file with the host key."""

    def __init__(self, folder):
        folder.mkdir(parents=True)
        self.folder = folder
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(folder / name)], check=True)
        shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
        os.makedirs("/run/sshd", exist_ok=True)
        program = shutil.which("sshd") or "/usr/sbin/sshd"
        for _attempt in range(5):
            self.port = free_port()
            (folder / "sshd_config").write_text(
                "Port %d\nListenAddress 127.0.0.1\nHostKey %s/host_key\nPidFile %s/sshd.pid\n"
                "AuthorizedKeysFile %s/authorized_keys\nStrictModes no\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\nMaxSessions 50\n"
                % (self.port, folder, folder, folder))
            kind, key = (folder / "host_key.pub").read_text().split()[:2]
            (folder / "known_hosts").write_text("[127.0.0.1]:%d %s %s\n" % (self.port, kind, key))
            log = open(folder / "sshd.log", "w")
            self.process = subprocess.Popen([program, "-D", "-e", "-f", str(folder / "sshd_config")],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=log)
            if self.wait_listening():
                return
        raise AssertionError("sshd did not start: %s" % (folder / "sshd.log").read_text())

    def wait_listening(self):
        """True once this sshd answers on its port (False: it exited, port taken)."""
        while self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self.process.poll() is None
            except OSError:
                time.sleep(0.05)
        return False

    def host_vars(self):
        return dict(
            ansible_connection="ssh",
            ansible_host="127.0.0.1",
            ansible_port=self.port,
            ansible_user=getpass.getuser(),
            ansible_ssh_private_key_file=str(self.folder / "client_key"),
            ansible_ssh_common_args="-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes "
                                    "-o BatchMode=yes" % (self.folder / "known_hosts"),
            # The managed host's own Python, as on a real server.
            ansible_python_interpreter="/usr/bin/python3",
        )

    def stop(self):
        self.process.terminate()
        self.process.wait()


LOCAL = dict(ansible_connection="local", ansible_python_interpreter=sys.executable)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cmw-ansible")


@pytest.fixture(scope="session")
def sshd(workdir):
    server = Sshd(workdir / "sshd")
    yield server
    server.stop()


def lay_out(folder, family, fail=False):
    """A simulated old/new server pair (the old one backed up, the bundle on
    the new one) and the role's variables for it."""
    args = ["demo", "--setup-only", "--keep", str(folder), "--family", family]
    if fail:
        args += ["--fail-upgrade", "error"]
    setup = cmw(*args)
    return dict(
        cmw_instance=setup["instance"],
        cmw_binary=str(BINARY),
        cmw_old_root=setup["old_root"],
        cmw_new_root=setup["root"],
        cmw_bundle=setup["bundle"],
        cmw_distribution=setup["distribution"],
        cmw_prerequisites=setup["prerequisites"],
        cmw_port=setup["port"],
        cmw_upgrade_timeout="30s",
        # The simulator's stand-ins (systemctl, the platform's scripts) first.
        cmw_environment=dict(PATH=setup["path"]),
        cmw_approve_cutover=False,
    )


def write_inventory(path, hosts, connection):
    """One inventory host per instance, group cmw_fleet, in the given order."""
    fleet = {}
    for name, variables in hosts:
        host = dict(variables)
        host.update(connection)
        host.update(cmw_old_host=name, cmw_new_host=name)
        fleet[name] = host
    path.write_text(json.dumps({"all": {"children": {"cmw_fleet": {"hosts": fleet}}}}))
    return path


PROXY_MAIN = """worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path temp/body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
    include sites-enabled/*;
}
"""
PROXY_SITE = "/etc/nginx/sites-enabled/cmw"


class Proxy:
    """The real nginx in front of one instance, under a root of its own (the
    cut-over's --root): its site sends traffic to the old server's address."""

    def __init__(self, root, old, new):
        self.root = root
        self.old = old
        self.new = new
        prefix = root / "usr/share/nginx"
        for folder in ("etc/nginx/sites-enabled", "usr/share/nginx/logs", "usr/share/nginx/temp"):
            (root / folder).mkdir(parents=True)
        (root / "etc/nginx/nginx.conf").write_text(PROXY_MAIN)
        for _attempt in range(5):
            port = free_port()
            self.site().write_text(
                "server {\n    listen 127.0.0.1:%d;\n    location / {\n"
                "        proxy_pass http://%s;   # the old server\n    }\n}\n" % (port, old))
            done = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-p", "%s/" % prefix,
                                   "-c", str(root / "etc/nginx/nginx.conf")], capture_output=True, text=True)
            if done.returncode == 0:
                return
        raise AssertionError("the proxy nginx did not start: %s" % done.stderr)

    def site(self):
        return self.root / PROXY_SITE.lstrip("/")

    def sends_to(self):
        return re.search(r"proxy_pass http://(\S+);", self.site().read_text()).group(1)

    def host_vars(self):
        return dict(
            cmw_cutover_method="nginx",
            cmw_cutover_root=str(self.root),
            cmw_cutover_options=dict(nginx_site=PROXY_SITE, old=self.old, new=self.new, reload=True),
        )

    def stop(self):
        pid = self.root / "usr/share/nginx/logs/nginx.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), 15)


class Fleet:
    def __init__(self, folder, fail_on=None, families=FAMILIES):
        self.folder = folder
        self.families = families
        self.hosts = []
        self.proxies = {}
        for family in families:
            name = "fleet-%s" % family
            variables = lay_out(folder / family, family, fail=family == fail_on)
            # Nothing listens at the old address: the cut-over checks only the new one.
            proxy = Proxy(folder / (family + "-proxy"), "127.0.0.1:%d" % free_port(),
                          "127.0.0.1:%d" % variables["cmw_port"])
            variables.update(proxy.host_vars())
            # The checks before the switch reach both simulated servers on
            # this machine, each under its root, and the bundle on the old one.
            variables["cmw_cutover_options"].update(
                new_host="local", new_root=variables["cmw_new_root"],
                old_host="local", old_root=variables["cmw_old_root"],
                bundle=variables["cmw_bundle"],
                health_url="http://127.0.0.1:%d/api/health" % variables["cmw_port"])
            self.proxies[name] = proxy
            self.hosts.append((name, variables))

    def inventory(self, connection, name):
        return write_inventory(self.folder / name, self.hosts, connection)

    def status(self, name):
        variables = dict(self.hosts)[name]
        return cmw("--root", variables["cmw_new_root"], "status", "--instance", "prod", check=False)

    def teardown(self):
        for proxy in self.proxies.values():
            proxy.stop()
        for family in self.families:
            subprocess.run([str(BINARY), "demo", "--teardown", str(self.folder / family)],
                           capture_output=True)


FLEET_PLAYBOOK = COLLECTIONS / "ansible_collections/comindware/upgrade/playbooks/fleet.yml"


@pytest.fixture(scope="module")
def fleet(workdir):
    fleet = Fleet(workdir / "fleet")
    yield fleet
    fleet.teardown()


@pytest.fixture(scope="module")
def failing_fleet(workdir):
    fleet = Fleet(workdir / "failing", fail_on="rpm")
    yield fleet
    fleet.teardown()


def test_fleet_upgrades_one_by_one_then_a_rerun_changes_nothing(fleet, sshd):
    rc, output, recap = playbook(FLEET_PLAYBOOK, fleet.inventory(LOCAL, "local.json"))
    assert rc == 0, output
    for name, _variables in fleet.hosts:
        assert recap[name]["failed"] == 0 and recap[name]["changed"] > 0, (name, recap, output)
        state = fleet.status(name)
        assert state["ok"] and all(s["status"] == "done" for s in state["steps"]), state
        # Cut over: the proxy sends traffic to the new server.
        proxy = fleet.proxies[name]
        assert proxy.sends_to() == proxy.new, proxy.site().read_text()
    # serial: 1 - one batch per instance, in inventory order.
    batches = re.findall(r"^TASK \[comindware\.upgrade\.blue_green : Upgrade prod on the new "
                         r"server.*\]\s*\*+\n(?:.*\n)*?(?:ok|changed): \[(\S+)\]", output, re.M)
    assert batches == [name for name, _ in fleet.hosts], batches

    # The same playbook again, now through sshd: every step is found done.
    rc, output, recap = playbook(FLEET_PLAYBOOK, fleet.inventory(sshd.host_vars(), "ssh.json"))
    assert rc == 0, output
    for name, _variables in fleet.hosts:
        assert recap[name]["changed"] == 0 and recap[name]["failed"] == 0, (name, recap, output)

    # Check mode with --diff: the plans, nothing to change.
    rc, output, recap = playbook(FLEET_PLAYBOOK, fleet.inventory(LOCAL, "local.json"),
                                 "--check", "--diff")
    assert rc == 0, output
    for name, _variables in fleet.hosts:
        assert recap[name]["changed"] == 0 and recap[name]["failed"] == 0, (name, recap, output)


def test_a_failing_upgrade_stops_the_fleet_and_is_rolled_back(failing_fleet, sshd):
    # First --check --diff on the fresh fleet: every plan, the config migration
    # each would carry (secrets masked), and nothing changed anywhere.
    before = dict((name, snapshot(failing_fleet.folder / name.split("-")[1] / "new-server"))
                  for name, _ in failing_fleet.hosts)
    rc, output, recap = playbook(FLEET_PLAYBOOK, failing_fleet.inventory(LOCAL, "local.json"),
                                 "--check", "--diff")
    assert rc == 0, output
    for name, _variables in failing_fleet.hosts:
        assert recap[name]["failed"] == 0 and recap[name]["changed"] > 0, (name, recap, output)
        assert failing_fleet.status(name)["recorded"] is False
        assert snapshot(failing_fleet.folder / name.split("-")[1] / "new-server") == before[name]
        proxy = failing_fleet.proxies[name]
        assert proxy.sends_to() == proxy.old
    assert output.count("+++ /usr/share/comindware/configs/instance/prod.yml (after the config migration)") == 3
    assert output.count("+journal.password = ***") == 3, output
    for secret in SECRETS:
        assert secret not in output, "secret %s leaked: %s" % (secret, output)

    rc, output, recap = playbook(FLEET_PLAYBOOK,
                                 failing_fleet.inventory(sshd.host_vars(), "ssh.json"))
    assert rc != 0, output
    first, second, third = [name for name, _ in failing_fleet.hosts]
    assert recap[first]["failed"] == 0 and recap[first]["changed"] > 0, (recap, output)
    # Rescued (rolled back), then failed on purpose to stop the play.
    assert recap[second]["failed"] == 1 and recap[second]["rescued"] == 1, (recap, output)
    # The play stopped: the third instance was never touched.
    assert third not in recap, (recap, output)
    assert failing_fleet.status(third)["recorded"] is False
    # Only the first was cut over; the failed one and the third still go to the old servers.
    for name, proxy in failing_fleet.proxies.items():
        assert proxy.sends_to() == (proxy.new if name == first else proxy.old), name
    assert "rolled back on %s" % second in output, output
    assert "step_failed" in output, output
    state = failing_fleet.status(second)
    assert state["rollback"]["status"] == "done", state
    failed = [s for s in state["steps"] if s.get("error_kind") == "step_failed"]
    assert [s["name"] for s in failed] == ["wait-upgrade"], state
    assert all(s["status"] in ("rolled_back", "pending") for s in state["steps"]), state
    first_state = failing_fleet.status(first)
    assert all(s["status"] == "done" for s in first_state["steps"]), first_state


def snapshot(root):
    files = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not path.is_symlink():
                files[str(path)] = path.read_bytes()
    return files


@pytest.mark.parametrize("connection", ["local", "ssh"])
def test_check_diff_shows_the_masked_migration_and_writes_nothing(workdir, sshd, connection):
    new_root = workdir / ("migrate-" + connection)
    shutil.copytree(REPO / "examples/new-server", new_root, symlinks=True)
    # The old server's files on the new one (from: is a server path, inside root).
    shutil.copytree(REPO / "examples/server", new_root / "srv/old-server", symlinks=True)
    before = snapshot(new_root)
    host = dict(LOCAL if connection == "local" else sshd.host_vars())
    inventory = write_inventory(workdir / ("migrate-%s.json" % connection), [("target-host", host)], {})
    rc, output, recap = playbook(HERE / "migrate_check.yml", inventory, "--check", "--diff",
                                 extra_vars=dict(target="target-host", cmw_binary=str(BINARY),
                                                 old_root="/srv/old-server",
                                                 new_root=str(new_root)))
    assert rc == 0, output
    assert recap["target-host"]["failed"] == 0, output
    assert "+nodeName: cmw-node-01" in output, output
    assert "--- a/usr/share/comindware/configs/instance/prod.yml" in output, output
    for secret in SECRETS:
        assert secret not in output, "secret %s leaked: %s" % (secret, output)
    assert snapshot(new_root) == before


@pytest.mark.parametrize("connection", ["local", "ssh"])
def test_install_copies_the_binary_once(workdir, sshd, connection):
    host = dict(LOCAL if connection == "local" else sshd.host_vars())
    inventory = write_inventory(workdir / ("install-%s.json" % connection), [("target-host", host)], {})
    dest = workdir / ("installed-" + connection) / "bin/cmw-upgrade"
    rc, output, recap = playbook(HERE / "install.yml", inventory,
                                 extra_vars=dict(target="target-host", src=str(BINARY),
                                                 dest=str(dest),
                                                 facts_root=str(REPO / "examples/server")))
    assert rc == 0, output
    assert recap["target-host"]["failed"] == 0, output
    assert dest.read_bytes() == BINARY.read_bytes()
    assert os.stat(dest).st_mode & 0o777 == 0o755


def test_upgrade_from_a_control_point_then_its_rollback(workdir):
    folder = workdir / "control-point"
    variables = lay_out(folder, "alt")
    inventory = write_inventory(workdir / "control-point.json", [("control-point", dict(LOCAL))], {})
    try:
        rc, output, recap = playbook(HERE / "control_point.yml", inventory, extra_vars=dict(
            target="control-point", cmw_binary=str(BINARY), sim_path=variables["cmw_environment"]["PATH"],
            old_root=variables["cmw_old_root"], new_root=variables["cmw_new_root"],
            distribution=variables["cmw_distribution"], prerequisites=variables["cmw_prerequisites"],
            port=variables["cmw_port"], state_dir=str(folder / "state")))
        assert rc == 0, output
        assert recap["control-point"]["failed"] == 0, output
        # The state is the control point's: the run and its rollback are recorded there.
        state = cmw("--state", str(folder / "state"), "status", "--instance", "prod", check=False)
        assert state["rollback"]["status"] == "done", state
    finally:
        subprocess.run([str(BINARY), "demo", "--teardown", str(folder)], capture_output=True)


def test_a_cut_over_not_approved_stops_without_a_rollback_and_the_next_run_cuts_over(workdir):
    fleet = Fleet(workdir / "approval", families=["deb"])
    try:
        (name, _variables), = fleet.hosts
        proxy = fleet.proxies[name]
        # No terminal to ask on: Ansible's pause goes on with no answer, which is no approval.
        rc, output, recap = playbook(FLEET_PLAYBOOK, fleet.inventory(LOCAL, "local.json"),
                                     extra_vars=dict(cmw_approve_cutover=True))
        assert rc != 0 and recap[name]["failed"] == 1 and recap[name]["rescued"] == 0, output
        assert "was not approved" in output, output
        state = fleet.status(name)
        assert all(s["status"] == "done" for s in state["steps"]) and "rollback" not in state, state
        assert proxy.sends_to() == proxy.old

        # Approved (here: no question asked): every upgrade step is found done,
        # only the cut-over changes.
        rc, output, recap = playbook(FLEET_PLAYBOOK, fleet.inventory(LOCAL, "local.json"))
        assert rc == 0, output
        assert recap[name]["changed"] == 1 and recap[name]["failed"] == 0, (recap, output)
        assert proxy.sends_to() == proxy.new
    finally:
        fleet.teardown()
