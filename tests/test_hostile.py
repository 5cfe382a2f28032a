"""The root process treats every worker and every client as hostile.

Each test attacks a real root multi-user daemon (waitress on loopback, real
PAM users, workers switching to each user) the way a user of the machine,
or anyone who can reach the port, could: through the user's own template
code (it runs in their worker), the files in their home (any size or type),
their worker stopped or flooding, slow clients. Each asserts both that the
attack gets nowhere and that another user, at the same time, is served
normally and quickly (every answer 200 in under a second), and that root's
memory stays flat (VmHWM, the daemon's peak resident size).
"""
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

import flightjobd
from support import ROOT, bystander, children, chown_tree, gone, state_dir as state, wait_for, write_toml

pytestmark = pytest.mark.root

TIMEOUT = 3  # worker.request_timeout of these daemons
TURN = 1  # their server.turn_wait
FREED = TURN + TIMEOUT + 1.5  # by when a thread waiting on a worker (its turn, then its answer) must be free
QUICK = 1.0  # what "served quickly" means for the bystander
# root's peak memory (VmHWM) may grow by "+0 to 3 MB" (README) in the huge
# files and floods: measured +0.0 and +3.0 MiB (2026-12-07, two runs, load
# ~2); asserted with 5 MiB of margin for allocator noise on a loaded machine
ROOT_FLAT_KIB = 8 << 10


class Client:
    """A user's HTTP client of the daemon: a session cookie and its CSRF
    token, one connection a request."""

    def __init__(self, daemon, user):
        self.daemon, self.user = daemon, user
        self.cookie = self.csrf = None
        status, headers, body = self.request("POST", "/api/login",
                                             {"username": user.name, "password": user.password})
        assert status == 200, body
        self.cookie = [v.split(";")[0] for k, v in headers
                       if k.lower() == "set-cookie" and v.startswith("flightjob_session=")][0]
        self.csrf = json.loads(body)["csrf_token"]

    def request(self, method, path, body=None, form=None, timeout=60):
        headers = {}
        if self.cookie:
            headers["Cookie"] = self.cookie
            if method != "GET":
                headers["X-CSRF-Token"] = self.csrf
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if form is not None:
            data = urllib.parse.urlencode(dict(form, csrf=self.csrf)).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            conn.close()

    def timed(self, method, path, body=None, form=None):
        """(status, seconds, JSON body or None)."""
        started = time.monotonic()
        status, _, raw = self.request(method, path, body, form)
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return status, time.monotonic() - started, data

    def json(self, method, path, body=None, status=200):
        got, _, data = self.timed(method, path, body)
        assert got == status, (got, data)
        return data


def user_template(user, tid, script, questions=""):
    """A template of the user's own, in ~/.config/flight-job/templates: its
    script.sh is Bottle SimpleTemplate, whose `%` lines are Python run in
    the user's worker."""
    d = os.path.join(user.home, ".config", "flight-job", "templates", tid)
    os.makedirs(d)
    with open(os.path.join(d, "template.toml"), "w") as f:
        f.write('name = "%s"\nsynopsis = "s"\ndescription = "d"\n%s' % (tid, questions))
    with open(os.path.join(d, "script.sh"), "w") as f:
        f.write(script)
    chown_tree(os.path.join(user.home, ".config"), user)


def job_in(client, body, finished=True):
    """A job of the user's that runs `body` (bash) in ~/out, its results
    directory, with job.out and job.err there: (script, job, out). Waits for
    it to finish unless told not to."""
    out = os.path.join(client.user.home, "out")
    os.makedirs(out)
    chown_tree(out, client.user)
    script = client.json("POST", "/api/scripts", {"template": "serial"}, status=201)
    client.json("PATCH", "/api/scripts/" + script["id"], {"content": (
        "#!/bin/bash\n#SBATCH --chdir=%s\n#SBATCH --output=job.out\n#SBATCH --error=job.err\n%s\n"
        % (out, body))})
    job = client.json("POST", "/api/jobs", {"script": script["id"]}, status=201)
    end = time.time() + 120
    while finished and client.json("GET", "/api/jobs/" + job["id"])["state"] in ("PENDING", "RUNNING"):
        assert time.time() < end, "the job did not finish"
        time.sleep(0.2)
    return script, job, out


def peak_kb(pid):
    """The process's peak resident size so far (VmHWM), KiB."""
    with open("/proc/%d/status" % pid) as f:
        return int([line for line in f if line.startswith("VmHWM:")][0].split()[1])


def worker_of(daemon, user):
    """The pid of the user's worker, a child of the daemon running as them."""
    for pid in children(daemon.proc.pid):
        with contextlib.suppress(OSError):
            if os.stat("/proc/%d" % pid).st_uid == user.uid:
                return pid
    return None


def stat_fields(pid):
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, tty_nr, ..."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def fds(pid):
    """fd number -> what it is (readlink of /proc/PID/fd/N)."""
    base = "/proc/%d/fd" % pid
    return {int(n): os.readlink(os.path.join(base, n)) for n in os.listdir(base)}


@contextlib.contextmanager
def served_meanwhile(client, paths=("/api/session", "/api/scripts")):
    """Another user, all through the block: each path again and again, from
    a process of its own (support.bystander: the test's threads never
    delay it). Afterwards every answer must have been 200 in under QUICK
    seconds."""
    with bystander(client.daemon.port, [("GET", p, {"Cookie": client.cookie}) for p in paths]) as seen:
        yield seen
    slow = [s for s in seen if s[1] != 200 or s[2] >= QUICK]
    assert len(seen) >= len(paths), seen
    assert not slow, "the bystander was not served normally and quickly: %s of %d" % (slow[:10], len(seen))


def at_once(client, n, method, path, body=None):
    """n requests of one user at the same moment: [(status, seconds, data)]."""
    results = [None] * n
    gate = threading.Barrier(n)

    def one(i):
        gate.wait()
        try:
            results[i] = client.timed(method, path, body)
        except OSError as e:
            results[i] = (repr(e), 99, None)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.fixture
def daemon(make_daemon, unix_users, runtime):
    """start(**config sections) -> (Daemon, attacker Client, bystander
    Client): a root multi-user daemon with two real users logged in, both
    workers started."""
    def start(**sections):
        values = {"server": {"multi_user": True, "turn_wait": TURN},
                  "worker": dict(runtime, request_timeout=TIMEOUT),
                  "storage": {"state_dir": "~/.local/share/flight-job"},
                  "scheduler": {"type": "local", "refresh_interval": 0, "background_refresh": 0},
                  "templates": {"site_dirs": []}}
        for section, keys in sections.items():
            values.setdefault(section, {}).update(keys)
        d = make_daemon(**values)
        clients = [Client(d, unix_users.create(prefix="fjh")) for _ in range(2)]
        for c in clients:
            c.json("GET", "/api/scripts")
        return (d,) + tuple(clients)
    return start


# a worker inherits nothing of root's but its pipes


def test_worker_has_its_own_session_no_terminal_and_only_its_pipes(daemon):
    d, alice, bob = daemon()
    user_template(alice.user, "forger", (
        "% import fcntl, os, sys, termios\n"
        "% sys.stderr.write('2030-01-01 00:00:00,000 flightjobd[1] INFO login of root accepted\\r\\x1b[2K\\n')\n"
        "% sys.stderr.flush()\n"
        "% reached = []\n"
        "% for fd in range(64):\n"
        "%   try:\n"
        "%     fcntl.ioctl(fd, termios.TIOCSTI, b'x')\n"
        "%     reached.append('sti%d' % fd)\n"
        "%   except OSError:\n"
        "%     pass\n"
        "%   end\n"
        "% end\n"
        "% try:\n"
        "%   os.open('/dev/tty', os.O_RDWR)\n"
        "%   reached.append('tty')\n"
        "% except OSError:\n"
        "%   pass\n"
        "% end\n"
        "#!/bin/bash\n# reached: {{','.join(reached) or 'nothing'}}\n"))
    with served_meanwhile(bob):
        content = alice.json("POST", "/api/scripts", {"template": "forger"}, status=201)["content"]
    assert "# reached: nothing" in content  # no terminal to push keystrokes into
    pid = worker_of(d, alice.user)
    assert os.getsid(pid) == pid  # its own session...
    assert stat_fields(pid)[4] == "0"  # ...with no controlling terminal
    mine = fds(pid)
    assert sorted(mine) == [0, 1, 2, 3], mine  # stdin, stderr (twice), the answers: nothing else
    assert all(v.startswith("pipe:") for v in mine.values()), mine
    assert mine[1] == mine[2]  # what template code prints goes to stderr, not the answers
    roots = fds(d.proc.pid)
    assert roots[2] not in mine.values()  # not root's stderr (its log file here)...
    assert set(mine.values()) <= set(roots.values())  # ...only pipes to root
    # what it wrote on stderr reached the log under the user's name, escaped
    with open(d.log_path) as f:
        logged = f.read()
    assert "worker of %s: 2030-01-01 00:00:00,000 flightjobd[1] INFO login of root accepted\\x0d\\x1b[2K" \
        % alice.user.name in logged
    assert not re.search(r"^2030-01-01", logged, re.M)


def test_local_jobs_inherit_only_their_output_files(daemon):
    d, alice, bob = daemon()
    script, job, out = job_in(alice, "sleep 30", finished=False)
    supervisor = task = None
    end = time.time() + 15
    while time.time() < end and not task:
        for pid in children(worker_of(d, alice.user), "--local-job"):
            supervisor = pid
            task = (children(pid, "script.sh") or [None])[0]
        time.sleep(0.1)
    assert supervisor and task
    with served_meanwhile(bob):
        for pid in (supervisor, task):
            assert os.getsid(pid) == pid and stat_fields(pid)[4] == "0"
            opened = fds(pid)
            assert opened[0] == "/dev/null", opened
            assert not [v for v in opened.values() if v.startswith(("pipe:", "socket:"))], opened
        assert {k: v for k, v in fds(supervisor).items() if k < 3} == {0: "/dev/null", 1: "/dev/null",
                                                                         2: "/dev/null"}
        task_fds = fds(task)
        assert (task_fds[1], task_fds[2]) == (os.path.join(out, "job.out"), os.path.join(out, "job.err"))
        assert set(task_fds) <= {0, 1, 2, 255}, task_fds  # 255: bash keeps its script open
    alice.json("POST", "/api/jobs/%s/cancel" % job["id"])


# every message from a worker is bounded; root's memory stays flat


def test_huge_files_and_floods_leave_root_flat(daemon):
    d, alice, bob = daemon()
    big = 10 << 30
    script, job, out = job_in(alice, "truncate -s %d big.bin" % big)
    folder = os.path.join(state(alice.user), "scripts", script["id"])
    assert os.path.getsize(os.path.join(out, "big.bin")) == big
    floods = [  # template code: endless output without a newline on stdout, then on the answers'
        # pipe; then a forged answer to the request, 8 MiB of tiny values ([{},{},...]: 200 MB as objects)
        ("stdout", "did not answer", "% import sys\n% while True:\n%   sys.stdout.write('x' * 65536)\n% end\n"),
        ("the answers", "larger than 8388608 bytes", (
            "% import os\n% answers = [int(n) for n in os.listdir('/proc/self/fd') if int(n) > 2]\n"
            "% while True:\n%   for fd in answers:\n%     try:\n%       os.write(fd, b'x' * 65536)\n"
            "%     except OSError:\n%       pass\n%     end\n%   end\n% end\n")),
        ("a forged answer", "not its answer", (  # spooled (SPOOL), refused at its first character
            "% import os, sys\n% frame, rid = sys._getframe(), None\n% while frame is not None:\n"
            "%   for value in list(frame.f_locals.values()):\n"
            "%     if isinstance(value, dict) and 'op' in value and 'id' in value:\n%       rid = value['id']\n"
            "%     end\n%   end\n%   frame = frame.f_back\n% end\n"
            "% line = b'%d ok - [' % rid + b'{},' * (8388500 // 3) + b'{}]\\n'\n"
            "% for fd in [int(n) for n in os.listdir('/proc/self/fd') if int(n) > 2]:\n"
            "%   try:\n%     os.write(fd, line)\n%   except OSError:\n%     pass\n%   end\n% end\n"))]
    figures = {"baseline": peak_kb(d.proc.pid)}
    with served_meanwhile(bob):
        for size in (100 << 20, big):  # a sparse script.sh, then sparse notes
            with open(os.path.join(folder, "meta.json")) as f:
                meta = json.load(f)
            for name in (meta["content_file"], meta["notes_file"]):
                path = os.path.join(folder, name)
                with open(path, "wb") as f:
                    f.truncate(size)
                os.chown(path, alice.user.uid, alice.user.uid)
                status, seconds, data = alice.timed("GET", "/api/scripts/" + script["id"])
                assert status == 409 and seconds < QUICK, (status, seconds, data)
                assert "%s is larger than 1048576 bytes (storage.max_script_bytes)" % name \
                    in data["error"]["message"]
                status, _, page = alice.request("GET", "/scripts/" + script["id"])
                assert status == 409 and b"storage.max_script_bytes" in page
                os.truncate(path, 10)
        figures["sparse script and notes"] = peak_kb(d.proc.pid)
        status, _, body = alice.request("GET", "/api/jobs/%s/files/big.bin?tail=5000000" % job["id"])
        assert status == 200 and len(body) == 1 << 20  # a tail is at most one chunk
        figures["tail of a 10 GB file"] = peak_kb(d.proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        conn.request("GET", "/api/jobs/%s/files/big.bin" % job["id"], headers={"Cookie": alice.cookie})
        r = conn.getresponse()
        assert r.status == 200 and int(r.getheader("X-File-Size")) == big
        got, started = 0, time.monotonic()
        while got < 512 << 20:
            piece = r.read(1 << 20)
            assert piece
            got += len(piece)
        rate = got / (time.monotonic() - started) / (1 << 20)
        conn.close()
        figures["512 MiB of a 10 GB download"] = peak_kb(d.proc.pid)
        for where, why, code in floods:
            user_template(alice.user, "flood", code)  # runs as it loads: in every template request
            status, seconds, data = alice.timed("POST", "/api/scripts", {"template": "flood"})
            assert status == 503 and seconds < FREED and why in data["error"]["message"], (status, seconds, data)
            figures["template code writing endlessly to " + where] = peak_kb(d.proc.pid)
            shutil.rmtree(os.path.join(alice.user.home, ".config"))
    print("root's peak RSS (VmHWM, KiB): %s; download %.0f MiB/s" % (figures, rate))
    assert peak_kb(d.proc.pid) - figures["baseline"] < ROOT_FLAT_KIB, figures
    assert alice.json("GET", "/api/scripts/" + script["id"])["content"] == "\0" * 10


# no user holds more than a fair share of the threads; every wait is bounded


def assert_freed(results):
    """Every attacker request ended by the bound, with a clear 503."""
    for status, seconds, data in results:
        assert status == 503 and seconds < FREED, (status, seconds, data)
        assert data["error"]["code"] in ("busy", "unavailable"), data


def stalled(user):
    """A template of the user's whose code never ends: every request that
    loads the templates (GET /api/templates) holds their worker."""
    user_template(user, "stall", "% import time\n% time.sleep(3600)\n#!/bin/bash\n")


def test_a_stalled_worker_and_many_requests_hold_no_threads(daemon):
    d, alice, bob = daemon()
    stalled(alice.user)
    with served_meanwhile(bob):
        for _ in range(2):
            results = at_once(alice, 12, "GET", "/api/templates")
            assert_freed(results)
            codes = [r[2]["error"]["code"] for r in results]
            assert codes.count("busy") >= 8, results  # at most 2 (threads // 4) waited on the worker
            assert any("did not answer" in r[2]["error"]["message"] for r in results), results


def test_stopped_worker_holds_no_thread_and_is_replaced(daemon):
    d, alice, bob = daemon()
    script = alice.json("POST", "/api/scripts", {"template": "serial"}, status=201)
    path = "/api/scripts/" + script["id"]
    with served_meanwhile(bob):
        # stopped: requests written, never answered; then one larger than a
        # pipe's buffer, so that the write itself cannot finish
        for method, body, n, why in (("GET", None, 6, "did not answer"),
                                     ("PATCH", {"content": "#!/bin/bash\n" + "#" * 900000}, 1, "did not take")):
            alice.json("GET", path)
            pid = worker_of(d, alice.user)
            os.kill(pid, signal.SIGSTOP)
            results = at_once(alice, n, method, path, body)
            assert_freed(results)
            assert any(why in r[2]["error"]["message"] for r in results), results
            wait_for(lambda: gone(pid), 5, "the stopped worker ending, to be replaced")  # killed, maybe not reaped yet
    assert alice.json("GET", path)["version"] == 1
    assert worker_of(d, alice.user) not in (None, pid)


def test_three_users_holding_their_slots_never_stall_twenty_others(daemon, unix_users):
    """Issue 26 item 3: three users, each with two downloads to readers
    that never read and their worker stopped (SIGSTOP) or stalled by their
    own template code, flooding it with requests; meanwhile 20 other users
    each look at their jobs list every half second, measured from a process
    of their own (pollers.py). Before, the three took every worker slot (6
    = threads - reserved_threads) and the others got 503 at once; now a
    user's stuck calls hold only that user's slots: every other request is
    200 (its p99 is a `make bench` figure; here a generous bound), requests
    needing no worker stay quick, and each attacker's request ends by the
    bound with a clear 503."""
    import pollers
    d, alice, bob = daemon(server={"download_timeout": 60})
    attackers = [alice] + [Client(d, unix_users.create(prefix="fjh")) for _ in range(2)]
    others = [bob] + [Client(d, unix_users.create(prefix="fjh")) for _ in range(19)]
    files = {c.user.name: "/api/jobs/%s/files/big.bin" % job_in(c, "truncate -s 1G big.bin")[1]["id"]
             for c in attackers}
    for c in others:
        c.json("GET", "/api/jobs")  # its worker started
    stop, held = threading.Event(), []
    readers = [never_reading(d, c, files[c.user.name]) for c in attackers for _ in range(2)]
    statuses = [peeked_status(s) for s in readers]  # each download that is answered holds a thread

    def attack(c):
        stalled(c.user)
        while not stop.is_set():
            pid = worker_of(d, c.user)
            if pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGSTOP)
            held.extend(at_once(c, 6, "GET", "/api/templates"))
    threads = [threading.Thread(target=attack, args=(c,)) for c in attackers]
    try:
        with served_meanwhile(bob, paths=("/api/session", "/api/health", "/login", "/static/style.css")):
            for t in threads:
                t.start()
            results = pollers.run(d.port, [c.cookie for c in others], 15, 0.5, "/api/jobs")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        for s in readers:
            s.close()
    figures = pollers.summary(results)
    print("3 attackers, 20 others polling every 0.5 s: %s" % figures)
    assert figures["requests"] >= 20 * 15 and figures["refused"] == figures["failed"] == 0, figures
    assert figures["max"] < 10, figures  # generous: the p99 against 1 s is bench.py's
    assert statuses == [200] * 6, statuses
    assert_freed(held)


BOUND = 5  # server.download_timeout of the download test's daemon


def never_reading(daemon, client, path):
    """A socket that asks for path as client and then never reads."""
    s = socket.create_connection(("127.0.0.1", daemon.port))
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n" % (path, client.cookie)).encode())
    return s


def peeked_status(s):
    """The status of the answer waiting on socket s, peeked: nothing read."""
    s.settimeout(QUICK)
    return int(s.recv(12, socket.MSG_PEEK).split()[1])


def test_downloads_to_readers_that_never_read_hold_no_thread_past_the_bound(daemon, unix_users):
    d, alice, bob = daemon(server={"download_timeout": BOUND})
    others = [Client(d, unix_users.create(prefix="fjh")) for _ in range(3)]
    files = {}
    for c in [alice] + others:
        files[c.user.name] = "/api/jobs/%s/files/" % job_in(c, "truncate -s 1G big.bin\necho small > small.txt")[1]["id"]
    figures = {"root VmHWM before (KiB)": peak_kb(d.proc.pid)}

    def attack(attackers):
        """8 readers that never read, from the attackers: how many answers
        of each status, by when the slots they held were free again."""
        started = time.monotonic()
        readers = [never_reading(d, c, files[c.user.name] + "big.bin") for c in attackers]
        time.sleep(QUICK)
        statuses = [peeked_status(s) for s in readers]  # every answer there within a second
        held = {c.user.name for c, code in zip(attackers, statuses) if code == 200}
        freed = {}
        while len(freed) < len(held):
            for c in attackers:
                if c.user.name in held and c.user.name not in freed:
                    status, _, body = c.request("GET", files[c.user.name] + "small.txt")
                    if status == 200:  # a download slot of theirs is free again
                        freed[c.user.name] = time.monotonic() - started
                    else:
                        assert status == 503, status
            assert time.monotonic() - started < BOUND + 5, (freed, held)
            time.sleep(0.1)
        for s, code in zip(readers, statuses):  # the held ones: cut short, their connection closed
            if code == 200:
                s.settimeout(10)
                got = 0
                with contextlib.suppress(ConnectionResetError):
                    while True:
                        piece = s.recv(1 << 20)
                        if not piece:
                            break
                        got += len(piece)
                assert 0 < got < 1 << 30
            s.close()
        return statuses, freed

    with served_meanwhile(bob, paths=("/api/session", "/api/scripts", "/api/jobs")) as seen:
        # one user, 8 readers: 2 (server.downloads_per_user) held to the bound, 6 refused (2 after their turn_wait)
        statuses, freed = attack([alice] * 8)
        assert sorted(statuses) == [200] * 2 + [503] * 6, statuses
        assert BOUND - 1 < max(freed.values()) < BOUND + 1.5, freed
        figures["one user, 8 readers"] = "2 held until %.1f s, 6 refused" % max(freed.values())
        figures["root VmHWM after one user (KiB)"] = peak_kb(d.proc.pid)
        # four users, 2 readers each: all held (each user's own share; issue 26: 3 were, 5 refused)
        statuses, freed = attack([c for c in [alice] + others for _ in range(2)])
        assert statuses == [200] * 8, statuses
        assert BOUND - 1 < max(freed.values()) < BOUND + 1.5, freed
        figures["four users, 2 readers each"] = "8 held until %.1f s" % max(freed.values())
    figures["bystander's requests"] = "%d, slowest %.3f s" % (len(seen), max(x[2] for x in seen))
    figures["root VmHWM after (KiB)"] = peak_kb(d.proc.pid)
    print("readers that never read (server.download_timeout %d s): %s" % (BOUND, figures))
    # a download's pieces pass through a few threads (~6 MB each at once, kept by their malloc arenas):
    # bounded by the caps, never by the file (1 GB) nor by what waitress buffers (16 MiB a connection, on disk)
    assert figures["root VmHWM after (KiB)"] - figures["root VmHWM before (KiB)"] < 64 << 10, figures


# slow and idle clients, no account needed


def test_hundreds_of_slow_and_idle_clients_do_not_shut_users_out(daemon):
    """300 idle and 300 trickling connections from one place (any 127.x is
    loopback, one address): past server.connections_per_address they are
    closed at once, a request trickling past server.request_read_timeout is
    closed, idle ones after server.channel_timeout; the users, through the
    trusted proxy at 127.0.0.1, are served in under a second throughout."""
    d, alice, bob = daemon(server={"channel_timeout": 3, "cleanup_interval": 1, "request_read_timeout": 5,
                                   "connections_per_address": 100, "trusted_proxies": ["127.0.0.1"]})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    idle, trickling = [], []

    def attacker():
        return socket.create_connection(("127.0.0.1", d.port), source_address=("127.0.0.%d" % (2 + len(idle) % 200), 0))
    try:
        with served_meanwhile(bob), served_meanwhile(alice, paths=("/api/session",)):
            for i in range(300):
                idle.append(attacker())
                s = attacker()
                with contextlib.suppress(OSError):
                    s.sendall(b"GET /api/session HTTP/1.1\r\nHost: x\r\n")
                trickling.append(s)
            end, closed = time.monotonic() + 9, set()
            while time.monotonic() < end:
                for i, s in enumerate(trickling):
                    try:
                        s.sendall(b"X-Slow-%d: x\r\n" % i)  # a header line every 2 s: never idle
                    except OSError:
                        closed.add(i)
                time.sleep(2)
            # the read bound closed every trickler (the first ones kept past the cap too)
            assert len(closed) == len(trickling), len(closed)
        for s in idle:  # closed by the daemon: past the cap at once, the others after channel_timeout
            s.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(1) == b""
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for s in idle + trickling:
            s.close()


def test_one_address_holds_at_most_its_share_of_connections(daemon):
    d, alice, bob = daemon(server={"connections_per_address": 20, "trusted_proxies": ["127.0.0.1"]})
    held = []
    try:
        with served_meanwhile(bob):
            for i in range(60):
                held.append(socket.create_connection(("127.0.0.1", d.port), source_address=("127.0.1.%d" % (i + 2), 0)))
            time.sleep(1)
            open_ones = 0
            for s in held:
                s.settimeout(0.2)
                try:
                    open_ones += s.recv(1) != b""
                except socket.timeout:
                    open_ones += 1  # still open: nothing to read
                except OSError:
                    pass
            assert open_ones == 20, open_ones
    finally:
        for s in held:
            s.close()


# a template pattern that backtracks; odd state and results directories


CATASTROPHIC = ('[[question]]\nid = "word"\ntext = "Word"\ndescription = "d"\ntype = "text"\n'
                'default = "a"\npattern = "^(a+)+$"\n')


def test_catastrophic_pattern_ends_in_the_worker_and_never_reaches_root(daemon):
    d, alice, bob = daemon()
    user_template(alice.user, "regex", "#!/bin/bash\necho {{word}}\n", CATASTROPHIC)
    evil = "a" * 40 + "!"
    with served_meanwhile(bob):
        status, seconds, data = alice.timed("POST", "/api/scripts", {"template": "regex", "answers": {"word": evil}})
        assert status == 503 and seconds < FREED, (status, seconds, data)
        assert "a pattern that does not finish" in data["error"]["message"]
        # the create page re-shown with the answer (no JavaScript): root only
        # decides which questions show; it never runs the template's pattern
        status, seconds, _ = alice.timed("POST", "/templates/regex/create",
                                         form={"action": "update", "q_word": evil, "name": "x"})
        assert status == 200 and seconds < QUICK, (status, seconds)
    assert alice.json("POST", "/api/scripts", {"template": "regex", "answers": {"word": "aaa"}}, status=201)


def test_state_directory_on_a_symlink_loop_is_a_clear_error(daemon):
    d, alice, bob = daemon()
    alice.json("POST", "/api/scripts", {"template": "serial"}, status=201)
    os.rename(state(alice.user), state(alice.user) + ".old")
    os.symlink("flight-job", state(alice.user))  # itself
    with served_meanwhile(bob):
        for path in ("/api/scripts", "/api/jobs"):
            status, seconds, data = alice.timed("GET", path)
            assert status == 403 and seconds < QUICK, (status, seconds, data)  # no retry will help
            assert "Too many levels of symbolic links" in data["error"]["message"]


def odd_file(path, kind, uid):
    """At path, owned by uid: a FIFO, a character device (/dev/zero's
    numbers: it never ends) or a sparse file of 100 MB."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    else:
        with open(path, "wb") as f:
            f.truncate(100 << 20)
    os.lchown(path, uid, uid)


def test_metadata_and_templates_that_block_or_never_end_are_broken_items_at_once(daemon):
    d, alice, bob = daemon()
    good = alice.json("POST", "/api/scripts", {"template": "serial", "name": "good"}, status=201)
    job = alice.json("POST", "/api/jobs", {"script": good["id"]}, status=201)
    kinds = ("fifo", "device", "sparse")
    for i, kind in enumerate(kinds):
        for part in ("scripts", "jobs"):
            odd_file(os.path.join(state(alice.user), part, "20240101-00000000%d-odd000" % i, "meta.json"),
                     kind, alice.user.uid)
        user_template(alice.user, "odd-toml-%s" % kind, "#!/bin/bash\n")
        user_template(alice.user, "odd-script-%s" % kind, "#!/bin/bash\n")
        user_template(alice.user, "odd-notes-%s" % kind, "#!/bin/bash\n")
        base = os.path.join(alice.user.home, ".config", "flight-job", "templates")
        for tid, name in (("odd-toml-%s" % kind, "template.toml"), ("odd-script-%s" % kind, "script.sh"),
                          ("odd-notes-%s" % kind, "notes.md")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(base, tid, name))
            odd_file(os.path.join(base, tid, name), kind, alice.user.uid)
    chown_tree(os.path.join(alice.user.home, ".local"), alice.user)
    why = {"fifo": "is not a regular file", "device": "is not a regular file", "sparse": "is larger than 8388608 bytes"}
    with served_meanwhile(bob):
        for _ in range(2):  # a fresh worker, then its caches
            status, seconds, data = alice.timed("GET", "/api/scripts")
            assert status == 200 and seconds < QUICK, (status, seconds, data)
            assert [s["name"] for s in data["scripts"] if not s.get("broken")] == ["good"]
            broken = {s["id"][:18]: s["reason"] for s in data["scripts"] if s.get("broken")}
            assert broken == {"20240101-00000000%d" % i: "meta.json " + why[k] for i, k in enumerate(kinds)}, broken
            status, seconds, data = alice.timed("GET", "/api/jobs")
            assert status == 200 and seconds < QUICK and [j["id"] for j in data["jobs"]] == [job["id"]], data
            assert sorted(b["reason"] for b in data["broken"]) == sorted(
                "This job record is broken: meta.json %s." % why[k] for k in kinds), data["broken"]
            status, seconds, data = alice.timed("GET", "/api/templates")
            assert status == 200 and seconds < QUICK, (status, seconds)
            assert "serial" in [t["id"] for t in data["templates"]]
            problems = {p["id"]: p["error"] for p in data["problems"]}
            for kind in kinds:
                for tid, name in (("odd-toml-%s" % kind, "template.toml"), ("odd-script-%s" % kind, "script.sh"),
                                  ("odd-notes-%s" % kind, "notes.md")):
                    assert problems[tid] == "%s %s" % (name, why[kind]), (tid, problems[tid])
            for page in ("/scripts", "/jobs", "/templates"):
                status, seconds, _ = alice.timed("GET", page)
                assert status == 200 and seconds < QUICK, (page, status, seconds)


def test_a_worker_s_memory_is_bounded_and_the_user_told(daemon):
    """Issue 26, 8: workers had no memory bound. worker.max_memory_mb bounds
    each worker's address space: template code taking 2 GiB fails that
    request with a clear 503 naming the bound, the worker lives on for the
    next; an output pattern padded past reason is padded as Slurm pads
    (10 digits at most: tests/test_slurm.py); the other user is served
    meanwhile."""
    d, alice, bob = daemon(worker={"max_memory_mb": 300})
    user_template(alice.user, "hog", "% import os\n% hog = os.path.exists(os.path.expanduser('~/hog')) and "
                  "bytearray(2 << 30)\n#!/bin/bash\n")  # not while the template is checked
    assert "hog" in [t["id"] for t in alice.json("GET", "/api/templates")["templates"]]
    open(os.path.join(alice.user.home, "hog"), "w").close()
    pid = worker_of(d, alice.user)
    with open("/proc/%d/limits" % pid) as f:
        assert re.search(r"Max address space\s+%d\s" % (300 << 20), f.read())
    with served_meanwhile(bob):
        status, seconds, data = alice.timed("POST", "/api/scripts", {"template": "hog"})
        assert status == 422 and seconds < QUICK * 3, (status, seconds, data)
        assert data["error"]["message"] == ("The template could not make a script from these answers: it needs "
                                            "more memory than your worker may use (worker.max_memory_mb)")
        # template code replacing an operation by one that takes 2 GiB
        user_template(alice.user, "patch", REPLACING.format(op="jobs.activity", answer="{'hog': len(bytearray(2 << 30))}"))
        alice.json("GET", "/api/templates")
        status, seconds, data = alice.timed("GET", "/api/activity")
        assert status == 503 and seconds < QUICK * 3, (status, seconds, data)
        assert data["error"]["message"] == ("This request needed more memory than your worker may use "
                                            "(worker.max_memory_mb, 300 MiB).")
        assert worker_of(d, alice.user) == pid  # the same worker, alive
        script = alice.json("POST", "/api/scripts", {"template": "serial"}, status=201)
        alice.json("PATCH", "/api/scripts/" + script["id"], {"content": "#!/bin/bash\n#SBATCH -o %999999999j\ntrue\n"})
        status, seconds, job = alice.timed("POST", "/api/jobs", {"script": script["id"]})
        assert status == 201 and seconds < QUICK, (status, seconds, job)
        assert job["stdout_path"] == os.path.join(alice.user.home, "%010d" % int(job["scheduler_id"])), job


REPLACING = ("% import os, sys\n% f = sys._getframe()\n% while 'OPERATIONS' not in f.f_globals:\n%   f = f.f_back\n% end\n"
             "% g = f.f_globals\n% old = g['OPERATIONS'][{op!r}]\n"
             "% def forge(kw):\n%   fr = sys._getframe()\n"
             "%   while not isinstance(fr.f_locals.get('request'), dict):\n%     fr = fr.f_back\n%   end\n"
             "%   line = b'%d ok - {{\"counts\": {{}}, \"unfinished\": [' % fr.f_locals['request']['id'] + b'\"y\",' * 2000000"
             " + b'\"y\"]}}\\n'\n"
             "%   for fd in [int(n) for n in os.listdir('/proc/self/fd') if int(n) > 2]:\n"
             "%     try:\n%       os.write(fd, line)\n%     except OSError:\n%       pass\n%     end\n%   end\n"
             "%   return {{}}\n% end\n"
             "% new = lambda self, **kw: {answer}\n% new.__name__ = old.__name__\n"
             "% setattr(g[old.__qualname__.split('.')[0]], old.__name__, new)\n% g['OPERATIONS'][{op!r}] = new\n"
             "#!/bin/bash\n")  # the operation replaced where the worker looks it up: its class and OPERATIONS


def honest_jobs(user, n, arrays):
    """n finished job records in the user's state directory, the first
    `arrays` of them array jobs of MAX_TASKS tasks (the most a status
    lists), every text long: a page of them is as large as honest pages
    get."""
    jobs = os.path.join(state(user), "jobs")
    os.makedirs(jobs, exist_ok=True)
    for i in range(n):
        jid = "20240101-0000%05d-%06x" % (i, i)
        tasks = [{"id": "%d_%d" % (900000 + i, t), "state": "FAILED", "exit_code": 1, "reason": "NonZeroExitCode",
                  "started_at": "2024-01-01T00:00:05Z", "ended_at": "2024-01-01T00:01:05Z"}
                 for t in range(flightjobd.MAX_TASKS if i < arrays else 0)]
        meta = {"format": 1, "id": jid, "script_id": "20240101-000000000-abcdef", "script_name": "s" * 200,
                "job_name": "n" * 200, "scheduler": "local", "scheduler_id": str(900000 + i), "state": "COMPLETED",
                "raw_state": "COMPLETED", "reason": "None", "reason_text": "r" * 200, "exit_code": 0,
                "submitted_at": "2024-01-01T00:00:00Z", "started_at": "2024-01-01T00:00:05Z",
                "ended_at": "2024-01-01T00:01:05Z", "updated_at": "2024-01-01T00:01:05Z", "missing_since": None,
                "answers": {"q%d" % q: "a" * 100 for q in range(10)}, "options": ["--comment=" + "o" * 200] * 5,
                "command": ["sbatch"] + ["--comment=" + "o" * 200] * 5 + ["script.sh"], "ignored_options": [],
                "results_dir": "/" + "d" * 250, "stdout_path": "/" + "d" * 250 + "/job.out",
                "stderr_path": "/" + "d" * 250 + "/job.err", "tasks": tasks}
        os.mkdir(os.path.join(jobs, jid))
        with open(os.path.join(jobs, jid, "meta.json"), "w") as f:
            json.dump(meta, f)
    chown_tree(os.path.join(user.home, ".local"), user)


def test_answers_of_the_wrong_shape_are_a_clear_error_and_root_stays_flat(daemon, unix_users):
    """Issue 26, 4: template code replacing an operation answered 7.9 MB:
    root's peak memory grew by ~70 MB a user and /jobs gave a 500
    (KeyError 'sort'). Root checks each answer's shape (ANSWERS) before a
    page or client gets it: a clear 503 for that user; an operation whose
    answers are small is read no further than its bound, a larger answer
    goes to a file as it arrives (flightjobd.SPOOL) and is checked a value
    at a time. Three hostile workers answering ~8 MB at once grew root's
    peak by 34 to 52 MB; now by no more than 5 MiB in every phase, while
    another user's honest page of 500 jobs (array jobs among them, every
    text long: ~2 MB) is served at the same moment."""
    d, alice, bob = daemon()
    hostile = [alice] + [Client(d, unix_users.create(prefix="fjh")) for _ in range(2)]
    for c in hostile:
        c.json("GET", "/api/scripts")
    honest_jobs(bob.user, 500, 10)
    page = "/api/jobs?per_page=500"
    status, _, raw = bob.request("GET", page)
    assert status == 200 and len(json.loads(raw)["jobs"]) == 500 and len(raw) > 2 * flightjobd.SPOOL, len(raw)
    before = peak_kb(d.proc.pid)
    figures = {"root VmHWM before (KiB)": before, "honest page (bytes)": len(raw)}
    phases = (("jobs.activity", "forge(kw)", "/api/activity"),  # 8 MB written on the answers' pipe itself
              ("jobs.activity", "{'counts': {}, 'unfinished': ['y' * 1000] * 7900, 'watched': []}", "/api/activity"),
              ("jobs.list", "{'jobs': [{'id': 'x' * 1000}] * 7900, 'broken': []}", "/api/jobs"),
              ("jobs.list", "{'jobs': [{'id': 'x' * 1000}] * 7900, 'broken': []}", "/jobs"),
              ("jobs.list", "{'jobs': [], 'broken': [], 'total': 0, 'page': 1, 'per_page': 50}", "/jobs"))
    with served_meanwhile(bob, paths=("/api/session", "/api/scripts", "/api/jobs", "/jobs")):
        for n, (op, answer, path) in enumerate(phases, 1):
            for c in hostile:
                shutil.rmtree(os.path.join(c.user.home, ".config"), ignore_errors=True)
                user_template(c.user, "replace", REPLACING.format(op=op, answer=answer))
                c.json("GET", "/api/templates")  # the template code runs as the catalogue is read
            got = at_once_each([(c, path) for c in hostile] + [(bob, page)])
            status, seconds, data = got.pop()
            assert status == 200 and len(data["jobs"]) == 500 and data["total"] == 500, (status, seconds)
            for status, seconds, data in got:
                assert status == 503 and seconds < QUICK * 3, (op, path, status, seconds, str(data)[:300])
                assert data is None or any(words in data["error"]["message"] for words in (
                    "Your worker answered %s with something that is not its answer" % op,
                    "Your worker sent an answer larger than %d bytes" % flightjobd.SMALL_ANSWER,
                    "more than the %d bytes a worker may send" % flightjobd.SMALL_ANSWER)), data
            figures["%d. root VmHWM after 3 x %s on %s (KiB)" % (n, op, path)] = peak_kb(d.proc.pid)
    print("answers of the wrong shape: %s" % figures)
    assert peak_kb(d.proc.pid) - before <= 5 << 10, figures


def at_once_each(requests):
    """Each (client, path)'s GET, all at the same moment: [(status, seconds, data)]."""
    results, gate = [None] * len(requests), threading.Barrier(len(requests))

    def one(i):
        gate.wait()
        results[i] = requests[i][0].timed("GET", requests[i][1])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_json_nested_past_the_recursion_limit_makes_broken_items_never_a_500(daemon):
    """Issue 26, 5: a meta.json of 5,000 nested arrays (RecursionError, not
    caught where ValueError was) gave 500s on every list, /api/activity and
    after each worker start for a job-index.json: each is a broken item."""
    d, alice, bob = daemon()
    good = alice.json("POST", "/api/scripts", {"template": "serial", "name": "good"}, status=201)
    job = alice.json("POST", "/api/jobs", {"script": good["id"]}, status=201)
    nested = "[" * 5000 + "]" * 5000
    for part in ("scripts", "jobs"):
        path = os.path.join(state(alice.user), part, "20240101-000000000-deep00", "meta.json")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write('{"format": 1, "name": %s}' % nested)
    with open(os.path.join(state(alice.user), "job-index.json"), "w") as f:
        f.write('{"format": %s}\n' % nested)
    chown_tree(os.path.join(alice.user.home, ".local"), alice.user)
    with served_meanwhile(bob):
        for _ in range(2):  # a fresh worker (the index read at its start), then its caches
            pid = worker_of(d, alice.user)
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: gone(pid), 10)
            for path in ("/api/jobs", "/api/activity", "/api/scripts", "/jobs", "/scripts", "/jobs/" + job["id"],
                         "/jobs/20240101-000000000-deep00", "/scripts/" + good["id"]):
                status, seconds, data = alice.timed("GET", path)
                assert status == (409 if "deep" in path else 200) and seconds < QUICK * 3, (path, status, data)
            broken = {s["id"]: s["reason"] for s in alice.json("GET", "/api/scripts")["scripts"] if s.get("broken")}
            assert "nested too deeply" in broken["20240101-000000000-deep00"], broken
            data = alice.json("GET", "/api/jobs")
            assert [j["id"] for j in data["jobs"]] == [job["id"]], data
            assert ["nested too deeply" in b["reason"] for b in data["broken"]] == [True], data["broken"]


def test_results_directory_of_200000_files_is_listed_bounded(daemon):
    d, alice, bob = daemon(worker={"request_timeout": 20})  # reading 200,000 entries, on a busy machine
    job = job_in(alice, "python3 -c 'import os\nfor i in range(200000): os.close(os.open(\"f%06d\" % i, os.O_CREAT))'")[1]
    assert len(os.listdir(os.path.join(alice.user.home, "out"))) == 200002
    with served_meanwhile(bob):
        status, seconds, data = alice.timed("GET", "/api/jobs/%s/files" % job["id"])
        assert status == 200, (status, seconds)
        names = [f["name"] for f in data["files"]]
        # the first 5,000 the directory gives, and the job's output wherever it is
        assert 5000 <= len(names) <= 5002 and names[:2] == ["job.err", "job.out"], names[:5]
        assert data["truncated"] and data["more"] == 200002 - len(names)
        assert names[2:] == sorted(names[2:])
        status, seconds, page = alice.request("GET", "/jobs/" + job["id"])
        assert status == 200 and b"job.out" in page
        assert b"%d more entries are not listed" % (data["more"] + len(names) - 200) in page.replace(b",", b"")


# the page forms accept what the API accepts


def test_the_script_form_accepts_what_the_api_accepts_with_the_same_clear_errors(daemon):
    d, alice, bob = daemon()
    script = alice.json("POST", "/api/scripts", {"template": "serial"}, status=201)
    path = "/api/scripts/" + script["id"]
    line = "srun ./solver --input=data/%05d.in --tol=1e-6 # step & check\n"  # 62 bytes, much escaped in a form
    with served_meanwhile(bob):
        # 150 KB, then ~1 MB (as much as a JSON body of server.max_body holds), sent as a browser sends a
        # textarea (CRLF newlines): saved as the API saves it
        for size in (150000, 1000000):
            content = "#!/bin/bash\n" + "".join(line % i for i in range(size // 62))
            etag = alice.json("GET", path)["etag"]
            status, headers, page = alice.request("POST", "/scripts/%s/edit" % script["id"], form={
                "field": "content", "etag": etag, "text": content.replace("\n", "\r\n")})
            assert status == 303, (size, status, page[:300])
            assert alice.json("GET", path)["content"] == content
            assert alice.json("PATCH", path, {"content": content})["content"] == content
        # over storage.max_script_bytes: the same clear words, on the page (the text kept) and in JSON
        content = "#!/bin/bash\n" + "x" * 1100000
        etag = alice.json("GET", path)["etag"]
        status, _, page = alice.request("POST", "/scripts/%s/edit" % script["id"], form={
            "field": "content", "etag": etag, "text": content})
        assert status == 413 and b"Content is larger than 1048576 bytes. Your text is below, not saved." in page
        assert page.count(b"x" * 1000) >= 1000  # the draft, shown again
        status, _, data = alice.timed("PATCH", path, {"content": content})  # here server.max_body says it first
        assert status == 413 and data["error"]["message"] == "The request body is larger than 1048576 bytes.", data
        status, _, data = alice.timed("PATCH", path, {"content": content + "x" * 1000000})  # past 2 MB: still ours
        assert status == 413 and data["error"]["message"] == "The request body is larger than 1048576 bytes.", data
    assert alice.json("GET", path)["content"].startswith("#!/bin/bash\nsrun")


# the bounds that involve two keys


def test_bounds_that_involve_two_keys_are_checked_at_start(tmp_path):
    for sections, words in (({"server": {"threads": 4, "reserved_threads": 4}}, "server.reserved_threads (4)"),
                            ({"storage": {"max_script_bytes": 4 << 20}}, "worker.max_message (8388608)")):
        path = str(tmp_path / "bad.toml")
        write_toml(path, sections)
        r = subprocess.run([sys.executable, os.path.join(ROOT, "flightjobd.py"), "--config", path, "--check-config"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and words in r.stderr, r.stderr


# errors say what failed: a read, or a write


def test_a_failed_read_says_read_and_a_failed_write_says_write(daemon):
    d, alice, bob = daemon()
    script, job, out = job_in(alice, "true")
    socks = []
    folder = os.path.join(state(alice.user), "scripts", script["id"])
    with open(os.path.join(folder, "meta.json")) as f:
        content_file = flightjobd.script_bodies(json.load(f))["content"]
    for path in (os.path.join(folder, content_file), os.path.join(out, "sock")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)  # opening a socket fails: ENXIO, an error that no permission explains
        os.chown(path, alice.user.uid, alice.user.uid)
        socks.append(s)
    with served_meanwhile(bob):
        for method, path, body in (("GET", "/api/scripts/" + script["id"], None),
                                   ("GET", "/api/jobs/%s/files/sock" % job["id"], None)):
            status, seconds, data = alice.timed(method, path, body)
            assert status == 503 and seconds < QUICK, (status, data)
            assert data["error"]["message"] == "Could not read from your home directory: No such device or address."
        status, _, data = alice.timed("PATCH", "/api/scripts/" + script["id"], {"name": "renamed"})
        assert status == 503 and data["error"]["message"] == (
            "Could not write to your home directory: No such device or address. Nothing was changed."), data
    for s in socks:
        s.close()


# the health check asks one worker at a time


def test_health_checks_the_scheduler_once_at_a_time_and_never_caches_busy(multi_app, unix_users):
    """In the daemon's own process (the cache can be expired there): real
    root, a real probe user and its real worker; the pool's call is only
    counted, and held until the other checks have their answers (they do
    not wait for it)."""
    import webtest
    prober = unix_users.create(prefix="fjh")
    app, web = multi_app(scheduler={"type": "local", "probe_user": prober.name, "refresh_interval": 0,
                                    "background_refresh": 0})
    assert web.get("/api/health").json["scheduler_answers"] is True
    calls, real_call, release = [], app.pool.call, threading.Event()

    def counted(user, op, args=None, **kw):
        if op == "probe":
            calls.append(user)
            release.wait(60)
        return real_call(user, op, args, **kw)
    app.pool.call = counted
    app.health = (0.0, app.health[1])  # the 30 s are over
    results = [None] * 8
    gate = threading.Barrier(8)

    def check(i):
        client = webtest.TestApp(app.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
        gate.wait()
        results[i] = client.get("/api/health").json["scheduler_answers"]
    threads = [threading.Thread(target=check, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    # the seven others: the last result, at once (while the one check is still held)
    wait_for(lambda: sum(r is not None for r in results) == 7, 30, "seven answers while the check is held")
    release.set()
    for t in threads:
        t.join(30)
    assert calls == [prober.name], calls  # one check, not eight
    assert results == [True] * 8, results
    # the probe user's worker busy (both of its slots taken): said, not cached
    app.health = (0.0, None)
    with app.pool._slot(prober.name), app.pool._slot(prober.name):
        busy = web.get("/api/health").json
    assert busy["scheduler_answers"] is False and "Busy" in busy["scheduler_message"], busy
    assert app.health == (0.0, None)
    assert web.get("/api/health").json["scheduler_answers"] is True  # checked again at once
    assert calls == [prober.name] * 3


def test_an_archive_answered_in_the_wrong_shape_is_a_clear_error(daemon):
    """Red team: jobs.archive's answers were checked for a token only, so a
    worker whose template code answered without the archive's name, files or
    data made the download a 500 and a traceback in root's log. A first
    piece that is not one is a clear 503 for that user; the other user is
    served meanwhile."""
    d, alice, bob = daemon()
    with served_meanwhile(bob):
        for answer in ("{'token': 'x'}", "{'token': 'x', 'closed': True}",
                       "{'token': 'x', 'data': '', 'eof': True, 'files': 'many', 'name': 'a.zip'}"):
            shutil.rmtree(os.path.join(alice.user.home, ".config"), ignore_errors=True)
            user_template(alice.user, "replace", REPLACING.format(op="jobs.archive", answer=answer))
            alice.json("GET", "/api/templates")  # the template code runs as the catalogue is read
            status, seconds, data = alice.timed("GET", "/api/jobs/0123456789/archive")
            assert status == 503 and data["error"]["message"] == flightjobd.NOT_ITS_ANSWER % "jobs.archive", (
                answer, status, data)


def test_a_conflict_of_answers_in_the_wrong_shape_is_a_clear_error(daemon):
    """The "Edit answers" page shows the two texts a worker's Diverged
    carries: one whose script or text is not one (template code raising
    it) is a clear 503 for that user, never a 500; the other user is
    served meanwhile."""
    d, alice, bob = daemon()
    script = alice.json("POST", "/api/scripts", {"template": "serial", "name": "mine"}, status=201)
    with served_meanwhile(bob):
        for current, rendered in (("'not a script'", "'text'"), ("{'content': 5}", "'text'"),
                                  (repr(script), "['not', 'text']")):
            shutil.rmtree(os.path.join(alice.user.home, ".config"), ignore_errors=True)
            raising = "(_ for _ in ()).throw(g['Diverged']('edited', current=%s, rendered=%s))" % (current, rendered)
            user_template(alice.user, "replace", REPLACING.format(op="scripts.answers", answer=raising))
            alice.json("GET", "/api/templates")  # the template code runs as the catalogue is read
            status, seconds, data = alice.timed("POST", "/scripts/%s/answers" % script["id"],
                                                form={"etag": script["etag"], "q_job_name": "x", "action": "save"})
            assert status == 503 and seconds < QUICK * 3, (current, rendered, status, data)
