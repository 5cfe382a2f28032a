"""Fixtures and helpers for flightjobd's tests, named for what they give.

tests/conftest.py registers everything here with pytest; test modules
import helpers from `support` (not `conftest`: tests/e2e has its own).

Real components where a user would have them: real PAM users created with
useradd/chpasswd (root only), real worker processes, the real local
scheduler, a real Slurm cluster (tests/slurm/cluster) and a real Chromium.
Outside CI a missing component skips with one line saying why; with
CI=true it fails.
"""
import base64
import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import webtest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import flightjobd  # noqa: E402

CI = os.environ.get("CI") == "true"
SYSTEM_PYTHON = "/usr/bin/python3"
# The interpreter that runs workers, the fork server and local jobs as the
# test users: the system's, or the one `make test-unit` names (so the 3.9
# and 3.13 runs start them under that interpreter).
WORKER_PYTHON = os.environ.get("FLIGHTJOB_TEST_WORKER_PYTHON") or SYSTEM_PYTHON


def api_login(web, user):
    """Log the user in on web (a TestApp) with the JSON API; the header
    that carries its CSRF token."""
    token = web.post_json("/api/login", {"username": user.name, "password": user.password}).json["csrf_token"]
    return {"X-CSRF-Token": token}


def chown_tree(path, user):
    """Give path and all below it to the user (links themselves)."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.uid, user.gid)
    os.lchown(path, user.uid, user.gid)


def makedirs_as(path, user, mode=0o700):
    """mkdir -p as the user would (every new directory owned by them)."""
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for d in reversed(missing):
        os.mkdir(d, mode)
        os.chown(d, user.uid, user.gid)


def state_dir(user):
    """The user's flightjobd state directory."""
    return os.path.join(user.home, ".local", "share", "flight-job")


def need(condition, why):
    """Skip when a real component is missing; in CI, fail instead."""
    if not condition:
        if CI:
            pytest.fail("%s (CI=true: a missing real component is a failure)" % why)
        pytest.skip(why)


def pytest_configure(config):
    for name, doc in (("slurm", "needs the real Slurm test cluster"),
                      ("e2e", "drives a real Chromium"),
                      ("root", "needs root (real Unix users, PAM): given by the hook below to every test "
                               "using a fixture that needs root"),
                      ("slow", "long-running"),
                      ("jobs", "runs real jobs or kills processes and waits for them (seconds a test): "
                               "in make test, not make test-fast"),
                      ("no_accounting", "restarts the Slurm test cluster without accounting: run after "
                                        "every other test, so the cluster is started once and "
                                        "reconfigured at most once")):
        config.addinivalue_line("markers", "%s: %s" % (name, doc))


# Fixtures that need root (real users, PAM, workers switching user, the
# Slurm cluster): a test using one, however indirectly, is marked root, so
# `make test-fast` (-m "not root ...") leaves it out instead of failing.
ROOT_FIXTURES = {"pam_service", "unix_users", "multi_app", "runtime", "slurm_cluster"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if ROOT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.root)
    # Stable: the order within each group is kept.
    items.sort(key=lambda item: item.get_closest_marker("no_accounting") is not None)


def wait_for(condition, timeout=60, what="the awaited event", interval=0.1):
    """condition()'s first truthy value. Polls until timeout seconds, a
    generous ceiling for a busy machine: the wait ends as soon as the event
    happens. Fails the test naming what did not happen."""
    end = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.time() > end:
            raise AssertionError("%s did not happen within %s seconds" % (what, timeout))
        time.sleep(interval)


def gone(pid):
    """Whether process pid has ended (no such process, or a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def wait_gone(pids, timeout=60):
    wait_for(lambda: all(gone(p) for p in pids), timeout, "the end of process(es) %s" % list(pids), 0.05)


def gate(path):
    """(shell lines that wait, at most 10 minutes, until the gate at path is
    opened; a function that opens it): a job holds still until the test has
    seen what it needs, however busy the machine."""
    wait = "for i in $(seq 3000); do [ -e %s ] && break; sleep 0.2; done" % shlex.quote(str(path))
    return wait, lambda: open(str(path), "w").close()


def wait_finished(web, jid, timeout=60):
    """The job, once finished, through the JSON API of a WebTest app."""
    def finished():
        job = web.get("/api/jobs/" + jid).json
        return job if job["state"] in flightjobd.FINISHED else None
    return wait_for(finished, timeout, "job %s finishing" % jid)


def merge(base, extra):
    out = {k: dict(v) for k, v in base.items()}
    for section, keys in extra.items():
        out.setdefault(section, {}).update(keys)
    return out


def config_in(path, **sections):
    """A Config with its state under path (a pathlib.Path), a session store
    of its own there, and the local scheduler."""
    base = {"storage": {"state_dir": str(path / "state"), "user_templates": str(path / "user-templates")},
            "auth": {"session_dir": str(path / ("sessions-" + secrets.token_hex(3)))},
            "scheduler": {"type": "local", "refresh_interval": 0, "background_refresh": 0},
            "templates": {"site_dirs": [str(path / "site-templates")]}}
    return flightjobd.Config(merge(base, sections))


@pytest.fixture
def make_config(tmp_path):
    """make_config(section={key: value}) -> Config for one test, with its
    state in tmp_path and the local scheduler."""
    return lambda **sections: config_in(tmp_path, **sections)


def client_of(app):
    """A Client of app (a fresh single-user App), logged in by its token."""
    return Client(app, webtest.TestApp(app.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})).login_token()


class Client:
    """A WebTest client logged in with a session cookie, knowing its CSRF
    token, with JSON helpers for the API."""

    def __init__(self, app, testapp):
        self.app = app
        self.web = testapp
        self.csrf = None

    def login_token(self):
        self.web.get("/login?token=" + self.app.auth.login_token, status=303)
        self.csrf = self.web.get("/api/session").json["csrf_token"]
        return self

    def login(self, user, password, status=200):
        r = self.web.post_json("/api/login", {"username": user, "password": password}, status=status)
        if status == 200:
            self.csrf = r.json["csrf_token"]
        return r

    def api(self, method, path, body=None, status=None, headers=None, **kw):
        headers = dict(headers or {})
        if self.csrf and method != "GET":
            headers.setdefault("X-CSRF-Token", self.csrf)
        call = getattr(self.web, method.lower() + ("_json" if body is not None else ""))
        args = (path, body) if body is not None else (path,)
        return call(*args, headers=headers, status=status, **kw)

    def form(self, path, fields, status=None):
        fields = dict(fields)
        fields.setdefault("csrf", self.csrf)
        return self.web.post(path, fields, status=status)

    def create_script(self, template="serial", name="test script", answers=None, **kw):
        return self.api("POST", "/api/scripts", {"template": template, "name": name,
                                                 "answers": answers or {}, **kw}, status=201).json

    def submit(self, script_id, answers=None, status=201):
        return self.api("POST", "/api/jobs", {"script": script_id, "answers": answers or {}},
                        status=status).json

    def wait_job(self, job_id, until=flightjobd.FINISHED, timeout=60):
        end = time.time() + timeout
        while True:
            job = self.api("GET", "/api/jobs/%s" % job_id).json
            if job["state"] in until or time.time() > end:
                return job
            time.sleep(0.2)

    def output(self, job_id, which="stdout"):
        return self.api("GET", "/api/jobs/%s/output/%s" % (job_id, which)).body.decode()


@pytest.fixture
def make_app(make_config):
    """make_app(**config sections) -> a fresh App (single-user, as whoever
    runs the tests) with a logged-in Client; workers stopped afterwards."""
    apps = []

    def make(**sections):
        a = flightjobd.make_app(make_config(**sections))
        apps.append(a)
        return client_of(a)
    yield make
    for a in apps:
        a.pool.stop_all()


@pytest.fixture
def client(make_app):
    """A logged-in client of a fresh single-user app on the local scheduler."""
    return make_app()


@pytest.fixture(scope="session")
def runtime(tmp_path_factory):
    """A world-readable copy of the daemon (flightjobd.py, templates, share
    and its pure-Python dependencies in vendor/) run by the system Python,
    so workers running as test users can execute it wherever the checkout
    and the virtualenv live. Gives the config section for workers."""
    need(os.path.exists(WORKER_PYTHON), "%s is needed to run workers as other users" % WORKER_PYTHON)
    base = "/tmp/flightjob-runtime-%d" % os.getpid()
    yield make_runtime(base)
    shutil.rmtree(base, ignore_errors=True)


def make_runtime(base):
    """The runtime fixture's copy, made in base (removed first): the config
    section for workers. The bench uses it too."""
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    shutil.copy(os.path.join(ROOT, "flightjobd.py"), base)
    for d in ("templates", "share"):
        shutil.copytree(os.path.join(ROOT, d), os.path.join(base, d))
    vendor = os.path.join(base, "vendor")
    os.makedirs(vendor)
    import bottle
    import pamela
    import waitress
    for mod in (bottle, pamela):
        shutil.copy(mod.__file__, vendor)
    shutil.copytree(os.path.dirname(waitress.__file__), os.path.join(vendor, "waitress"))
    try:  # before 3.11 (the test-unit runs): TOML from tomli
        import tomli
        shutil.copytree(os.path.dirname(tomli.__file__), os.path.join(vendor, "tomli"))
    except ImportError:
        pass
    subprocess.run(["chmod", "-R", "a+rX", base], check=True)
    os.chmod(base, 0o755)
    return {"python": reachable_python(WORKER_PYTHON, base), "program": os.path.join(base, "flightjobd.py")}


def reachable_python(python, base):
    """python itself when every user can run it; else (pyenv's, under
    root's 0700 home) its installation linked (or copied) into base: the
    same interpreter, which workers, once they are the user, can still read.
    The copy's binary is patched to find its libpython beside it (its
    RUNPATH, the original's lib, becomes $ORIGIN/../lib, NUL-padded)."""
    real = os.path.realpath(python)
    d = os.path.dirname(real)
    while d != "/" and os.stat(d).st_mode & 0o001:
        d = os.path.dirname(d)
    if d == "/":
        return python
    prefix = os.path.dirname(os.path.dirname(real))  # PREFIX/bin/pythonX.Y
    copy = os.path.join(base, "python")

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    for part in ("bin", "lib"):
        shutil.copytree(os.path.join(prefix, part), os.path.join(copy, part), symlinks=True, copy_function=link,
                        ignore=shutil.ignore_patterns("site-packages", "test", "tests", "idlelib", "tkinter",
                                                      "turtledemo", "ensurepip", "config-*", "*.a"))
    binary = os.path.join(copy, "bin", os.path.basename(real))
    with open(binary, "rb") as f:
        elf = f.read()
    old = os.path.join(prefix, "lib").encode() + b"\0"
    new = b"$ORIGIN/../lib"
    assert len(new) < len(old)
    os.unlink(binary)  # a link to the original: write a copy
    with open(binary, "wb") as f:
        f.write(elf.replace(old, new + b"\0" * (len(old) - len(new))))
    subprocess.run(["chmod", "-R", "a+rX", copy], check=True)
    os.chmod(binary, 0o755)
    return binary


@pytest.fixture(scope="session")
def pam_service():
    """The project's PAM service file installed as /etc/pam.d/flight-job."""
    need(os.geteuid() == 0, "real PAM users need root")
    return install_pam_service()


def install_pam_service():
    target = "/etc/pam.d/flight-job"
    ours = open(os.path.join(ROOT, "etc", "pam.d", "flight-job")).read()
    if not os.path.exists(target) or open(target).read() != ours:
        with open(target, "w") as f:
            f.write(ours)
    return "flight-job"


def _uid_taken(uid):
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


class UnixUsers:
    """Creates real Unix users with passwords, and groups; removes them
    afterwards."""

    def __init__(self):
        self.created = []
        self.groups = []

    def group(self, prefix="fjg"):
        """A new group's name."""
        name = "%s%s" % (prefix, secrets.token_hex(3))
        subprocess.run(["groupadd", name], check=True, capture_output=True)
        self.groups.append(name)
        return name

    def create(self, prefix="fjt", uids=None, password=None, groups=()):
        """A new user (its own primary group, as useradd makes it), also
        in the given supplementary groups; its uid one free in uids (a
        range) when given, picked at random and tried again if another run
        took it first (useradd's exit 4), so runs side by side never clash."""
        name = "%s%s" % (prefix, secrets.token_hex(3))
        password = password or "pw-" + secrets.token_urlsafe(9)
        argv = ["useradd", "--create-home", "--shell", "/bin/bash"]
        for _ in range(20):
            uid = []
            if uids is not None:
                free = [u for u in uids if not _uid_taken(u)]
                need(free, "no free uid in %s for a test user" % uids)
                uid = ["--uid", str(secrets.choice(free))]
            done = subprocess.run(argv + uid + [name], capture_output=True)
            if done.returncode != 4 or not uid:
                break
        assert done.returncode == 0, "useradd %s: exit %d %s" % (name, done.returncode, done.stderr)
        self.created.append(name)
        subprocess.run(["chpasswd"], input="%s:%s" % (name, password), text=True, check=True)
        if groups:
            subprocess.run(["usermod", "-aG", ",".join(groups), name], check=True, capture_output=True)
        pw = pwd.getpwnam(name)
        return User(name, password, pw.pw_uid, pw.pw_gid, pw.pw_dir)

    def create_many(self, n, prefix="fjt"):
        """n new users as create makes them, their passwords set by one
        chpasswd for all."""
        made = []
        for _ in range(n):
            name = "%s%s" % (prefix, secrets.token_hex(3))
            done = subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], capture_output=True)
            assert done.returncode == 0, "useradd %s: exit %d %s" % (name, done.returncode, done.stderr)
            self.created.append(name)
            made.append((name, "pw-" + secrets.token_urlsafe(9)))
        subprocess.run(["chpasswd"], input="".join("%s:%s\n" % m for m in made), text=True, check=True)
        return [User(name, password, pw.pw_uid, pw.pw_gid, pw.pw_dir)
                for (name, password), pw in zip(made, (pwd.getpwnam(name) for name, _ in made))]

    def remove_all(self):
        for name in self.created:
            remove_user(name)
        for name in self.groups:
            subprocess.run(["groupdel", name], capture_output=True)


def remove_user(name, within=15.0):
    """Kill the user's processes and remove the user with its home.
    userdel refuses (exit 8) while a process of the user lives, and one
    killed a moment ago may not have ended yet: it is tried again until it
    succeeds, or fails for another reason, within a bound (a user left
    behind would otherwise stay on the machine for good)."""
    deadline = time.monotonic() + within
    while True:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        done = subprocess.run(["userdel", "--remove", name], capture_output=True)
        if done.returncode != 8 or time.monotonic() > deadline:  # 6: gone already; 12: home not all removed
            return done.returncode
        time.sleep(0.1)


class User:
    def __init__(self, name, password, uid, gid, home):
        self.name, self.password, self.uid, self.gid, self.home = name, password, uid, gid, home

    def basic(self):
        token = base64.b64encode(("%s:%s" % (self.name, self.password)).encode()).decode()
        return {"Authorization": "Basic " + token}


@pytest.fixture
def unix_users(pam_service):
    users = UnixUsers()
    yield users
    users.remove_all()


@pytest.fixture
def multi_app(runtime, pam_service, tmp_path):
    """make(**config sections) -> (App, TestApp) in multi-user mode as root:
    real PAM, workers switching to each user, state in each user's home."""
    apps = []

    def make(**sections):
        values = merge({"server": {"multi_user": True},
                        "auth": {"session_dir": str(tmp_path / ("sessions-" + secrets.token_hex(3)))},
                        "worker": runtime,
                        "scheduler": {"type": "local", "refresh_interval": 0, "background_refresh": 0},
                        "templates": {"site_dirs": []}}, sections)
        a = flightjobd.make_app(flightjobd.Config(values))
        apps.append(a)
        return a, webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    yield make
    for a in apps:
        a.pool.stop_all()


BYSTANDER = r"""
import http.client, json, select, sys, time
port, requests, interval = int(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3])
seen = []
while True:
    for method, path, headers, *body in requests:
        start = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request(method, path, body=body[0].encode() if body else None, headers=headers)
            status = conn.getresponse().status
            conn.close()
        except OSError as e:
            status = repr(e)
        seen.append((path, status, round(time.monotonic() - start, 3)))
    if len(seen) == len(requests):
        print("ready", flush=True)
    if select.select([sys.stdin], [], [], interval)[0]:
        break
print(json.dumps(seen), flush=True)
"""


@contextlib.contextmanager
def bystander(port, requests, interval=0.1):
    """requests ([(method, path, headers[, body])]) made to the daemon on port
    again and again, every interval seconds, all through the block, by a
    process of their own, so that nothing of the test's (its threads, the
    GIL) delays them: [(path, status, seconds)], filled when the block
    ends. The block starts once the first round has been answered."""
    seen = []
    proc = subprocess.Popen([sys.executable, "-c", BYSTANDER, str(port), json.dumps(requests), str(interval)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n", "the bystander process did not start"
        yield seen
    finally:
        proc.stdin.close()  # its cue to stop
        out = proc.stdout.read()
        proc.wait(60)
    seen.extend(tuple(x) for x in json.loads(out))


def free_port():
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """flightjobd running for real as a process (waitress on loopback)."""

    def __init__(self, config_path, log_path, port, extra_env=None):
        self.config_path, self.log_path, self.port = config_path, log_path, port
        self.url = "http://127.0.0.1:%d" % port
        self.extra_env = extra_env or {}
        self.argv = [sys.executable, "-m", "flightjobd"]  # as make run and the unit do
        self.cwd = ROOT
        self.proc = None

    def start(self, timeout=60):
        env = dict(os.environ, **self.extra_env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv + ["--config", self.config_path,
                                      "--listen", "127.0.0.1:%d" % self.port],
                                     stdout=subprocess.PIPE, stderr=log, env=env, cwd=self.cwd)
        end = time.time() + timeout
        line = b""
        while time.time() < end:
            line = self.proc.stdout.readline()
            if b"login" in line or b"serving" in line or not line:
                break
        self.login_url = line.decode().split(" at ", 1)[-1].strip() if b"token=" in line else None
        import urllib.request
        while time.time() < end:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.url + "/api/health", timeout=2).read()
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("flightjobd exited: see %s" % self.log_path)
            time.sleep(0.1)
        raise RuntimeError("flightjobd did not answer in %ds: see %s" % (timeout, self.log_path))

    def stop(self, sig=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def children(pid, marker="--worker"):
    """Pids of pid's child processes whose command line holds marker; a
    daemon's workers forked by its fork server (children of that child,
    with its command line) count as its --worker children."""
    found, table = [], {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry)] = (ppid, cmd)
    servers = {p for p, (ppid, cmd) in table.items() if ppid == pid and b"--fork-server" in cmd}
    for p, (ppid, cmd) in table.items():
        if ppid == pid and marker.encode() in cmd or marker == "--worker" and ppid in servers:
            found.append(p)
    return found


def write_toml(path, sections):
    lines = []
    for section, keys in sections.items():
        lines.append("[%s]" % section)
        for k, v in keys.items():
            if isinstance(v, dict):
                v = "{ %s }" % ", ".join("%s = %s" % (a, json.dumps(b)) for a, b in v.items())
            else:
                v = json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")
            lines.append("%s = %s" % (k, v))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture
def make_daemon(tmp_path):
    """make_daemon(**config sections) -> a started Daemon (single-user, local
    scheduler, state in tmp_path); stopped afterwards."""
    daemons = []

    def make(start=True, extra_env=None, **sections):
        port = free_port()
        values = merge({"storage": {"state_dir": str(tmp_path / "state")},
                        "auth": {"session_dir": str(tmp_path / ("sessions-%d" % port))},
                        "scheduler": {"type": "local", "refresh_interval": 0, "background_refresh": 2}},
                       sections)
        path = str(tmp_path / ("daemon-%d.toml" % port))
        write_toml(path, values)
        d = Daemon(path, str(tmp_path / "daemon.log"), port, extra_env)
        daemons.append(d)
        return d.start() if start else d
    yield make
    for d in daemons:
        d.stop()


class SlurmCluster:
    """The real single-node test cluster of tests/slurm/cluster: munge,
    slurmctld, slurmd, and slurmdbd with MariaDB when accounting is on."""

    script = os.path.join(ROOT, "tests", "slurm", "cluster")

    def __init__(self):
        self.accounting = None
        self.conf = None

    def ensure(self, accounting=True, min_job_age=300):
        if self.accounting == (accounting, min_job_age):
            return self
        argv = [self.script, "start"] + ([] if accounting else ["--no-accounting"])
        env = dict(os.environ, FLIGHTJOB_SLURM_MINJOBAGE=str(min_job_age))
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            self.accounting = None
            need(False, "the Slurm test cluster did not come up:\n" + r.stderr[-3000:])
        self.conf = r.stdout.strip().split("SLURM_CONF=", 1)[1].split()[0]
        self.accounting = (accounting, min_job_age)
        return self

    def scheduler(self, **extra):
        """The [scheduler] config section for this cluster."""
        return dict({"type": "slurm", "environment": {"SLURM_CONF": self.conf},
                     "refresh_interval": 0, "background_refresh": 0, "timeout": 20}, **extra)

    def run(self, *argv):
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, SLURM_CONF=self.conf)).stdout

    def start_second(self, name, first_job_id=1):
        """A second cluster NAME beside this one, under its slurmdbd
        (tests/slurm/cluster start-second), its job numbers from
        first_job_id: its SLURM_CONF."""
        r = subprocess.run([self.script, "start-second", name], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, FLIGHTJOB_SLURM_FIRSTJOBID=str(first_job_id)))
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout.strip().split("SLURM_CONF=", 1)[1].split()[0]

    def stop_second(self, name):
        subprocess.run([self.script, "stop-second", name], capture_output=True, timeout=120)

    def stop(self):
        subprocess.run([self.script, "stop"], capture_output=True, timeout=120)
        self.accounting = None


@pytest.fixture(scope="session")
def slurm_cluster():
    """The real Slurm cluster; tests call .ensure(accounting=...) first.
    To run these outside CI: as root, with Debian's slurm-wlm, slurmdbd,
    munge and mariadb-server installed."""
    need(os.geteuid() == 0 and shutil.which("slurmctld") and shutil.which("slurmdbd")
         and shutil.which("munged") and shutil.which("mysqld_safe"),
         "Slurm tests need root and Debian's slurm-wlm, slurmdbd, munge, mariadb-server "
         "(apt-get install them, or run with CI=true to make this a failure)")
    cluster = SlurmCluster()
    yield cluster
    cluster.stop()


class Http:
    """A tiny HTTP client for a daemon running as a process (Basic auth)."""

    def __init__(self, base, user=None, password=None):
        self.base = base
        self.headers = {}
        if user:
            token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
            self.headers["Authorization"] = "Basic " + token

    def __call__(self, method, path, body=None, status=None):
        import urllib.error
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=dict(self.headers, **({"Content-Type": "application/json"} if data else {})))
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                code, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, raw = e.code, e.read()
        if status is not None:
            assert code == status, (code, raw[:500])
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw


NGINX_CONF = """
user www-data;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location = /signed-out {{
      default_type text/html;
      return 200 '<!doctype html><html lang="en"><head><title>Signed out</title></head>
<body><main><h1>You are signed out of the site</h1></main></body></html>';
    }}
    location / {{
      auth_basic "The site's sign-in";
      auth_basic_user_file {dir}/htpasswd;
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header X-Remote-User $remote_user;
      proxy_set_header Authorization "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header Host $http_host;
    }}
  }}
}}
"""


class Nginx:
    """Debian's nginx as an authenticating reverse proxy in front of a daemon
    on loopback, as a site would put one (its own sign-in, here auth_basic
    with its own passwords, then X-Remote-User set to whom it signed in and
    the client's Authorization dropped): a process of the test's own, its
    config, logs and htpasswd in a directory of its own, its workers running
    as www-data. users: {name: the proxy's password for them}."""

    def __init__(self, upstream, users, port=None):
        need(shutil.which("nginx"), "nginx is needed for the proxy sign-in tests (apt-get install nginx)")
        self.dir = tempfile.mkdtemp(prefix="fj-nginx-")
        os.chmod(self.dir, 0o755)  # its workers (www-data) read the htpasswd file
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        with open(os.path.join(self.dir, "htpasswd"), "w") as f:
            for name, password in users.items():
                salt = secrets.token_bytes(8)  # nginx's {SSHA}: base64(sha1(password + salt) + salt)
                digest = hashlib.sha1(password.encode() + salt).digest()
                f.write("%s:{SSHA}%s\n" % (name, base64.b64encode(digest + salt).decode()))
        os.chmod(os.path.join(self.dir, "htpasswd"), 0o644)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, port=self.port, upstream=upstream))
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", conf, "-e", os.path.join(self.dir, "error.log"),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def answers():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited: %s" % self.proc.stderr.read().decode()[-2000:])
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return True
        wait_for(answers, 60, "nginx answering on %d" % self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
