"""Faults and load against the real daemon process: kill -9 of the daemon
and of a worker in the middle of a stream of operations, a full disk, two
daemons sharing one state directory (two login nodes, one NFS home) under
20 concurrent clients, and 100 real users at once."""
import contextlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

import flightjobd
from support import children, need, wait_for, wait_gone

pytestmark = pytest.mark.root


class Lost(Exception):
    """The request's outcome is unknown: the connection broke."""


class Api:
    """A JSON client of a daemon process: a cookie session from the
    one-time login URL (with its CSRF token), or HTTP Basic."""

    lost = 0

    def __init__(self, daemon, basic=None):
        self.daemon = daemon
        self.basic = basic
        self.cookie = self.csrf = None
        if basic is None:
            self.login()

    def login(self):
        url = urllib.parse.urlsplit(self.daemon.login_url)
        status, headers, _ = self.raw("GET", url.path + "?" + url.query, auth=False)
        assert status == 303, status
        self.cookie = [v.split(";")[0] for k, v in headers if k.lower() == "set-cookie"
                       and v.startswith(flightjobd.COOKIE)][0]
        self.csrf = self("GET", "/api/session")[1]["csrf_token"]

    def raw(self, method, path, body=None, headers=None, auth=True, timeout=30):
        headers = dict(headers or {})
        if auth and self.cookie:
            headers["Cookie"] = self.cookie
            if method != "GET":
                headers["X-CSRF-Token"] = self.csrf
        if auth and self.basic:
            headers.update(self.basic)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, r.getheaders(), r.read()
        except (OSError, http.client.HTTPException) as e:
            Api.lost += 1
            raise Lost(str(e))
        finally:
            conn.close()

    def __call__(self, method, path, body=None, headers=None):
        status, hdrs, raw = self.raw(method, path, body, headers)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw
        return status, data


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([line for line in f if line.startswith("VmRSS:")][0].split()[1])


def job_script(out, n):
    return "#!/bin/bash\n#SBATCH --chdir=%s\n#SBATCH --output=job-%%j.out\necho run %d\n" % (out, n)


# crash safety


class Field:
    """What a field of a script may hold after a crash: the last value
    confirmed, or any value sent after it whose outcome is unknown."""

    def __init__(self, value):
        self.confirmed, self.maybe = value, []

    def sent(self, value, ok):
        if ok:
            self.confirmed, self.maybe = value, []
        else:
            self.maybe.append(value)

    def allowed(self):
        return [self.confirmed] + self.maybe


def big_text(tag, n):
    """A distinctive text, tens of KiB, so a torn write cannot pass for it."""
    line = "# %s %d %s\n" % (tag, n, secrets.token_hex(8))
    return "#!/bin/bash\n" + line * random.randint(200, 2000) + "echo end %s %d\n" % (tag, n)


@pytest.mark.slow
def test_kill_daemon_and_worker_during_a_stream_of_operations(make_daemon, tmp_path):
    seed = int(os.environ.get("CRASH_SEED") or secrets.randbits(32))
    print("CRASH_SEED=%d reproduces this run's operations and kills" % seed)
    random.seed(seed)
    out = tmp_path / "out"
    out.mkdir()
    d = make_daemon(worker={"request_timeout": 20}, scheduler={"type": "local", "refresh_interval": 0,
                                                              "background_refresh": 1})
    api = Api(d)
    scripts = {}      # id -> {"content": Field, "notes": Field, "name": Field}
    gone_scripts = {}  # id -> True (confirmed) / False (maybe)
    maybe_names = set()  # names of creates whose outcome is unknown
    jobs = {}         # id -> "present" | "removed" | "maybe-removed"
    contents = set()  # every script text ever sent: a job's snapshot is one of them
    kills = {"daemon": 0, "worker": 0}
    orphans = []

    def restart():
        """After the daemon was killed: let its orphaned worker finish (it
        sees end of input after its current request), start a new one."""
        d.proc.wait()
        wait_gone(orphans)
        del orphans[:]
        d.start()
        api.login()

    def kill(what):
        if what == "daemon":
            orphans.extend(children(d.proc.pid))
            d.proc.send_signal(signal.SIGKILL)
        else:
            for pid in children(d.proc.pid):
                os.kill(pid, signal.SIGKILL)
        kills[what] += 1

    def create(n):
        name = "script %d" % n
        content = big_text("create", n)
        contents.add(content)
        try:
            status, data = api("POST", "/api/scripts", {"template": "serial", "name": name,
                                                        "notes": "notes %d" % n})
        except Lost:
            maybe_names.add(name)
            return
        if status == 201:
            sid = data["id"]
            contents.add(data["content"])
            scripts[sid] = {"content": Field(data["content"]), "notes": Field("notes %d" % n),
                            "name": Field(name)}
            # give it a job-friendly script, so its jobs write inside tmp_path
            edit(sid, "content", job_script(out, n) + "# " + content)
        else:
            assert status == 503, (status, data)
            maybe_names.add(name)  # a 503 from a killed worker: may have been written

    def edit(sid, field, value):
        if field == "content":
            contents.add(value)
        try:
            status, data = api("PATCH", "/api/scripts/" + sid, {field: value})
        except Lost:
            scripts[sid][field].sent(value, False)
            return
        assert status in (200, 503), (status, data)
        scripts[sid][field].sent(value, status == 200)

    for n in range(int(os.environ.get("CRASH_OPS", "300"))):
        if d.proc.poll() is not None:
            restart()
        timer = None
        if n > 3 and random.random() < 0.12:
            timer = threading.Timer(random.uniform(0, 0.04), kill,
                                    ["daemon" if random.random() < 0.4 else "worker"])
            timer.start()
        live = [s for s in scripts if s not in gone_scripts]
        op = random.random()
        try:
            if not live or op < 0.12:
                create(n)
            elif op < 0.55:
                sid = random.choice(live)
                field = random.choice(["content", "content", "notes", "name"])
                value = {"content": job_script(out, n) + big_text("edit", n),
                         "notes": big_text("notes", n), "name": "renamed %d %s" % (n, secrets.token_hex(4))}[field]
                edit(sid, field, value)
            elif op < 0.75:
                sid = random.choice(live)
                try:
                    status, data = api("POST", "/api/jobs", {"script": sid, "answers": {}})
                except Lost:
                    status = None
                if status == 201:
                    jobs[data["id"]] = "present"
                else:
                    assert status in (None, 503), (status, data)
            elif op < 0.9:
                candidates = [j for j, s in jobs.items() if s == "present"]
                if candidates:
                    jid = random.choice(candidates)
                    try:
                        status, data = api("DELETE", "/api/jobs/" + jid)
                    except Lost:
                        status = None
                    if status == 204:
                        jobs[jid] = "removed"
                    elif status in (None, 503):
                        jobs[jid] = "maybe-removed"
                    else:
                        assert status == 409, (status, data)  # not finished yet
            elif len(live) > 3:
                sid = random.choice(live)
                try:
                    status, data = api("DELETE", "/api/scripts/" + sid)
                except Lost:
                    status = None
                assert status in (None, 204, 503), (status, data)
                gone_scripts[sid] = status == 204
        except Lost:
            pass  # a read after the kill: counted in Api.lost
        if timer:
            timer.join()
    if d.proc.poll() is not None:
        restart()
    assert n < 200 or kills["daemon"] >= 3 and kills["worker"] >= 3, kills

    # a clean restart, then everything is there, whole
    d.stop()
    d.start()
    api.login()
    status, listing = api("GET", "/api/scripts")
    assert status == 200
    assert not [s for s in listing["scripts"] if s.get("broken")], listing
    assert not [s for s in listing["scripts"] if s["id"].startswith(".")]
    found = {s["id"]: s for s in listing["scripts"]}
    for sid, fields in scripts.items():
        if gone_scripts.get(sid) is True:
            assert sid not in found, sid
            continue
        if sid in gone_scripts and sid not in found:
            continue  # its delete may have happened
        assert sid in found, "script %s lost" % sid
        status, full = api("GET", "/api/scripts/" + sid)
        assert status == 200
        for field, track in fields.items():
            assert full[field] in track.allowed(), "script %s: %s is neither old nor new (%d bytes)" % (
                sid, field, len(full[field]))
    for sid in set(found) - set(scripts):
        assert found[sid]["name"] in maybe_names  # a create whose answer was lost: whole
    status, jl = api("GET", "/api/jobs?per_page=500")
    assert status == 200 and not jl["broken"], jl["broken"]
    ids = [j["id"] for j in jl["jobs"]]
    assert len(ids) == len(set(ids))
    for jid, state in jobs.items():
        if state == "present":
            assert jid in ids, "job %s lost" % jid
        elif state == "removed":
            assert jid not in ids, "removed job %s came back" % jid
    for jid in ids:
        status, job = api("GET", "/api/jobs/%s?script=1" % jid)
        assert status == 200 and job["script_content"] in contents, jid
    for page in ("/scripts", "/jobs"):
        status, _ = api("GET", page)
        assert status == 200
    print("crash: %d ops, kills %s, %d lost answers, %d scripts, %d jobs"
          % (n + 1, kills, Api.lost, len(found), len(ids)))


def fill(path, size=65536):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"x" * size)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_disk_full_gives_a_clear_error_and_truncates_nothing(make_app, tmp_path):
    need(shutil.which("mount") is not None, "mount is needed for a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    need(r.returncode == 0, "cannot mount a tmpfs: %s" % r.stderr.strip())
    try:
        client = make_app(storage={"state_dir": str(mnt / "state")})
        s = client.create_script(name="before", notes="old notes")
        sid = s["id"]
        old = client.api("GET", "/api/scripts/" + sid).json
        # fill the disk, leaving a few KiB
        fill(mnt / "filler")
        os.truncate(mnt / "filler", os.path.getsize(mnt / "filler") - 8192)
        big = "#!/bin/bash\n" + "echo filling\n" * 20000
        for body in ({"content": big}, {"notes": big}, {"content": big, "notes": big}):
            r = client.api("PATCH", "/api/scripts/" + sid, body, status=503)
            assert "full" in r.json["error"]["message"], r.json
        now = client.api("GET", "/api/scripts/" + sid).json
        assert (now["content"], now["notes"], now["version"]) == (old["content"], old["notes"], old["version"])
        # new scripts and jobs: refused whole, nothing half-made
        for _ in range(3):
            r = client.api("POST", "/api/scripts", {"template": "serial", "name": "new", "notes": big}, status=503)
            assert "full" in r.json["error"]["message"]
        fill(mnt / "filler", 1)  # every last byte
        r = client.api("POST", "/api/jobs", {"script": sid, "answers": {}}, status=503)
        assert "full" in r.json["error"]["message"]
        listing = client.api("GET", "/api/scripts").json["scripts"]
        assert [x["id"] for x in listing] == [sid] and not listing[0].get("broken")
        assert client.api("GET", "/api/jobs").json["total"] == 0
        assert client.web.get("/scripts/" + sid).status_int == 200
        leftovers = [os.path.join(root, n) for root, dirs, files in os.walk(mnt / "state")
                     for n in dirs + files if n.startswith((".new-", ".gone-")) or n.endswith(".tmp")]
        assert leftovers == []
        # space again: everything works
        os.unlink(mnt / "filler")
        client.api("PATCH", "/api/scripts/" + sid, {"notes": "new notes"}, status=200)
        client.create_script(name="after")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# two login nodes, twenty clients


@pytest.mark.slow
def test_two_daemons_twenty_clients_no_lost_update_no_lost_job(make_daemon, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    d1 = make_daemon()
    d2 = make_daemon()  # the same state directory: two login nodes, one NFS home
    apis = [Api(d1), Api(d2)]
    sids = []
    for i in range(3):
        status, s = apis[i % 2]("POST", "/api/scripts", {"template": "serial", "name": "shared %d" % i})
        assert status == 201
        status, _ = apis[0]("PATCH", "/api/scripts/" + s["id"], {"content": job_script(out, i)})
        assert status == 200
        sids.append(s["id"])
    lock = threading.Lock()
    wins = {sid: [] for sid in sids}  # versions each successful PATCH produced
    stale = [0]
    created, removed, own_scripts = [], [], []
    errors = []
    rounds = int(os.environ.get("CONCURRENCY_ROUNDS", "8"))

    def client(k):
        api = apis[k % 2]
        rng = random.Random(k)
        mine = []
        try:
            for r in range(rounds):
                sid = rng.choice(sids)
                status, s = api("GET", "/api/scripts/" + sid)
                assert status == 200, (status, s)
                time.sleep(rng.uniform(0, 0.02))
                status, new = api("PATCH", "/api/scripts/" + sid, {"notes": "client %d round %d" % (k, r)},
                                  headers={"If-Match": s["etag"]})
                with lock:
                    if status == 200:
                        wins[sid].append(new["version"])
                        assert new["version"] == s["version"] + 1
                    else:
                        assert status == 412, (status, new)
                        assert new["error"]["current"]["version"] > s["version"]
                        stale[0] += 1
                if r % 2 == 0:
                    status, job = api("POST", "/api/jobs", {"script": sid, "answers": {}})
                    assert status == 201, (status, job)
                    mine.append(job["id"])
                    with lock:
                        created.append(job["id"])
                if r % 3 == 2 and mine:
                    jid = mine[0]
                    answer = {}

                    def delete():
                        answer["r"] = api("DELETE", "/api/jobs/" + jid)
                        return answer["r"][0] != 409  # 409: not finished yet
                    wait_for(delete, 120, "job %s finishing, to be removed" % jid)
                    status, data = answer["r"]
                    assert status == 204, (status, data)
                    mine.pop(0)
                    with lock:
                        removed.append(jid)
                if r == 1:
                    status, s2 = api("POST", "/api/scripts", {"template": "serial", "name": "own %d" % k})
                    assert status == 201
                    status, _ = api("DELETE", "/api/scripts/" + s2["id"])
                    assert status == 204
                    with lock:
                        own_scripts.append(s2["id"])
        except BaseException as e:  # reported from the main thread
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:5]
    for sid in sids:
        status, s = apis[1]("GET", "/api/scripts/" + sid)
        # no lost update: every success made its own version, and the last is the count
        assert sorted(wins[sid]) == list(range(3, 3 + len(wins[sid]))), wins[sid]
        assert s["version"] == 2 + len(wins[sid])
    assert stale[0] > 0, "the test made no conflicts: it proves nothing"
    for api in apis:
        status, listing = api("GET", "/api/jobs?per_page=500")
        ids = [j["id"] for j in listing["jobs"]]
        assert not listing["broken"]
        assert len(ids) == len(set(ids)), "a job is listed twice"
        assert sorted(ids) == sorted(set(created) - set(removed))
        assert len(set(j["scheduler_id"] for j in listing["jobs"])) == len(ids), "two jobs share a scheduler id"
        status, sl = api("GET", "/api/scripts")
        assert sorted(s["id"] for s in sl["scripts"]) == sorted(sids)
    print("concurrency: %d updates, %d stale, %d jobs, %d removed" % (
        sum(len(w) for w in wins.values()), stale[0], len(created), len(removed)))


# a hundred users at once


@pytest.mark.slow
def test_hundred_users_steady_load_then_reaped_and_memory_back(make_daemon, unix_users, runtime):
    users = unix_users.create_many(int(os.environ.get("LOAD_USERS", "100")), prefix="fjl")
    # 20 threads: 16 clients at once stay under the cap on worker calls (threads - reserved_threads);
    # idle workers reaped after 15 s: never within the load, however slow a round of 100 users is
    d = make_daemon(server={"multi_user": True, "threads": 20}, worker=dict(runtime, idle_timeout=15),
                    storage={"state_dir": "~/.local/share/flight-job"},
                    scheduler={"type": "local", "refresh_interval": 2, "background_refresh": 0},
                    auth={"basic_cache": 300, "login_slots": 64})  # 100 first logins at once
    anon = Api(d, basic={})
    assert anon("GET", "/api/health")[0] == 200
    baseline = rss_kb(d.proc.pid)
    apis = [Api(d, basic=u.basic()) for u in users]
    seconds = float(os.environ.get("LOAD_SECONDS", "20"))  # every user served several times over
    statuses, failures = {}, []
    lock = threading.Lock()
    scripts = {}

    def one(i):
        api = apis[i % len(apis)]
        u = users[i % len(users)]
        rng = random.Random(i)
        try:
            if u.name not in scripts:
                status, s = api("POST", "/api/scripts", {"template": "serial", "name": "load"})
                if status == 201:
                    scripts[u.name] = s["id"]
            else:
                sid = scripts[u.name]
                path, method, body = rng.choice([
                    ("/api/scripts", "GET", None), ("/api/scripts/" + sid, "GET", None),
                    ("/api/templates", "GET", None), ("/api/jobs", "GET", None),
                    ("/api/scripts/" + sid, "PATCH", {"notes": "n %d" % i}),
                    ("/api/scripts/%s/submission" % sid, "GET", None), ("/api/session", "GET", None)])
                status, s = api(method, path, body)
        except Lost as e:
            status, s = "lost", str(e)
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            if status not in (200, 201):
                failures.append((u.name, status, str(s)[:300]))

    started = time.time()
    peak = most = 0
    with ThreadPoolExecutor(16) as pool:
        i = 0
        while time.time() - started < seconds:
            batch = [pool.submit(one, i + k) for k in range(len(users))]
            for f in batch:
                f.result()
            i += len(users)
            peak = max(peak, rss_kb(d.proc.pid))
            most = max(most, len(children(d.proc.pid)))
    assert not failures, (statuses, failures[:10])
    assert most >= len(users) * 0.9, "a worker each, at once: only %d" % most
    assert anon("GET", "/api/health")[0] == 200
    during = len(children(d.proc.pid))
    wait_for(lambda: not children(d.proc.pid), 120, "every idle worker being reaped", 0.5)
    after = rss_kb(d.proc.pid)
    print("load: %d users, %.0f s, %s, workers at most %d, at the end %d, rss baseline %d KiB, peak %d, after %d"
          % (len(users), time.time() - started, statuses, most, during, baseline, peak, after))
    assert after - baseline < 20 * 1024, "the daemon kept %d KiB after its users left" % (after - baseline)


def test_interrupted_submission_does_not_stay_pending_forever(client, tmp_path):
    """A submit cut short between writing the job record and recording the
    scheduler's answer (as kill -9 can leave it) ends as UNKNOWN, saying so,
    once no submit could still be running; then it can be removed."""
    out = tmp_path / "out"
    out.mkdir()
    sid = client.create_script()["id"]
    client.api("PATCH", "/api/scripts/" + sid, {"content": job_script(out, 1)})
    old, fresh = client.submit(sid)["id"], client.submit(sid)["id"]
    client.wait_job(old), client.wait_job(fresh)
    bound = client.app.config["worker"]["request_timeout"] + client.app.config["scheduler"]["timeout"]
    for jid, age in ((old, bound + 5), (fresh, 1)):
        path = tmp_path / "state" / "jobs" / jid / "meta.json"
        meta = json.loads(path.read_text())
        meta.update(state="PENDING", raw_state="SUBMITTING", scheduler_id=None, ended_at=None,
                    submitted_at=flightjobd.now_iso(time.time() - age))
        path.write_text(json.dumps(meta))
    client.app.pool.stop_all()  # as after the crash: a fresh worker reads the records
    jobs = {j["id"]: j for j in client.api("GET", "/api/jobs").json["jobs"]}
    assert jobs[old]["state"] == "UNKNOWN" and "interrupted" in jobs[old]["reason_text"]
    assert jobs[fresh]["state"] == "PENDING"  # may still be being submitted elsewhere
    assert "interrupted" in client.web.get("/jobs/" + old).text
    client.api("DELETE", "/api/jobs/" + old, status=204)
    client.api("DELETE", "/api/jobs/" + fresh, status=409)


def test_local_job_whose_supervisor_dies_is_failed_not_completed(client, tmp_path):
    """The local scheduler's fault: the process watching a running job is
    killed (as a node failure would). The job is FAILED, saying why, never
    COMPLETED; nothing else changes and the next job runs."""
    out = tmp_path / "out"
    out.mkdir()
    sid = client.create_script()["id"]
    client.api("PATCH", "/api/scripts/" + sid, {"content": job_script(out, 1) + "sleep 30\n"})
    job = client.submit(sid)
    client.wait_job(job["id"], until=("RUNNING",))
    status_path = tmp_path / "state" / "local" / job["scheduler_id"] / "status.json"
    status = json.loads(status_path.read_text())
    os.kill(status["supervisor"], signal.SIGKILL)
    try:
        wait_gone([status["supervisor"]])
        failed = client.wait_job(job["id"])
        assert failed["state"] == "FAILED" and "ended unexpectedly" in failed["reason_text"], failed
        assert "ended unexpectedly" in client.web.get("/jobs/" + job["id"]).text
    finally:
        with contextlib.suppress(OSError):
            os.killpg(status["pgid"], signal.SIGKILL)
    client.api("PATCH", "/api/scripts/" + sid, {"content": job_script(out, 2)})
    assert client.wait_job(client.submit(sid)["id"])["state"] == "COMPLETED"
    assert client.api("GET", "/api/jobs").json["total"] == 2


def test_worker_start_sweeps_what_a_crash_left(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    store = flightjobd.Store(make_config(), "me")
    kept = store.script_create("serial")
    old_new = tmp_path / "state" / "scripts" / ".new-20200101-000000000-abcdef"
    old_gone = tmp_path / "state" / "jobs" / ".gone-0123456789ab"
    fresh = tmp_path / "state" / "scripts" / ".new-fresh"
    for d in (old_new, old_gone, fresh):
        d.mkdir(parents=True)
        (d / "meta.json").write_text("{}")
    for d in (old_new, old_gone):
        os.utime(d, (time.time() - 7200, time.time() - 7200))
    flightjobd.Store(make_config(), "me")  # a new worker starts
    assert not old_new.exists() and not old_gone.exists()
    assert fresh.exists()  # perhaps another daemon's creation in progress
    assert flightjobd.Store(make_config(), "me").script_get(kept["id"])["name"] == kept["name"]


# a change of content and notes together, killed at every step

# A worker's Store in a process of its own, killed (SIGKILL: nothing runs
# after) at the given os.replace of one script_update: "before" it (the
# temporary file written, not yet in place) or "after" it.
KILLED_UPDATE = r"""
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
import flightjobd
config, sid, at, when, change = json.loads(sys.argv[2])
store = flightjobd.Store(flightjobd.Config(config), "me")
real, calls = os.replace, []
def replace(src, dst):
    calls.append(dst)
    if len(calls) == at and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
    if len(calls) == at and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
store.script_update(sid, **change)
print(json.dumps(calls))
"""


def killed_update(config, sid, at, when, change):
    """Run script_update(sid, **change) killed at os.replace number `at`;
    the paths it replaced when it ran to the end, else None."""
    r = subprocess.run([sys.executable, "-c", KILLED_UPDATE, os.path.dirname(flightjobd.__file__),
                        json.dumps([config.to_dict(), sid, at, when, change])],
                       capture_output=True, text=True, timeout=60)
    if r.returncode == -signal.SIGKILL:
        return None
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def script_files(tmp_path, sid):
    return sorted(os.listdir(tmp_path / "state" / "scripts" / sid))


def test_content_and_notes_change_as_a_pair_whatever_the_kill(make_config, tmp_path, monkeypatch):
    """A PATCH of content and notes killed before or after each of its
    renames leaves the old pair or the new pair, never one of each, and
    no version that names the other; what the kill left is swept."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = make_config()
    store = flightjobd.Store(config, "me")
    sid = store.script_create("serial", notes="notes 0")["id"]
    store.script_update(sid, content="content 0\n")
    replaced = killed_update(config, sid, 99, "never", {"content": "probe\n", "notes": "probe"})
    assert [os.path.basename(p).split("-")[0] for p in replaced] == ["script", "notes", "meta.json"]
    seen = set()
    for n, (at, when) in enumerate([(at, when) for at in range(1, len(replaced) + 1) for when in ("before", "after")]):
        old = flightjobd.Store(config, "me").script_get(sid)
        new = {"content": "content %d\n" % (n + 1), "notes": "notes %d" % (n + 1)}
        assert killed_update(config, sid, at, when, new) is None
        store = flightjobd.Store(config, "me")  # the next worker
        now = store.script_get(sid)
        pair = (now["content"], now["notes"], now["version"])
        assert pair in ((old["content"], old["notes"], old["version"]),
                        (new["content"], new["notes"], old["version"] + 1)), (at, when, pair)
        seen.add(now["version"] == old["version"])
        # the kill left a temporary file or the files of one of the pairs,
        # kept while young (a change may be under way on another node)...
        meta = json.loads((tmp_path / "state" / "scripts" / sid / "meta.json").read_text())
        named = sorted(["meta.json", meta["content_file"], meta["notes_file"]])
        left = script_files(tmp_path, sid)
        assert set(left) > set(named), (at, when, left)
        # ...and removed once old enough, or by the next change (under the lock)
        if n % 2:
            store._sweep(age=0)
            assert script_files(tmp_path, sid) == named
            assert store.script_get(sid) == now
        else:
            store.script_update(sid, name="after %d" % n)
            meta = json.loads((tmp_path / "state" / "scripts" / sid / "meta.json").read_text())
            assert script_files(tmp_path, sid) == sorted(["meta.json", meta["content_file"], meta["notes_file"]])
    assert seen == {True, False}  # both outcomes happened


def test_a_change_that_fails_half_way_changes_nothing(make_config, tmp_path, monkeypatch):
    """The notes' write fails (a full disk, say) after the content's: the
    old pair stays, and the content's new file is not left behind."""
    monkeypatch.setenv("HOME", str(tmp_path))
    store = flightjobd.Store(make_config(), "me")
    before = store.script_update(store.script_create("serial", notes="old notes")["id"], content="old\n")
    sid = before["id"]
    real = flightjobd.atomic_write

    def failing(path, data, mode=0o600):
        if os.path.basename(path).startswith("notes-"):
            raise OSError(28, "No space left on device", path)
        return real(path, data, mode)
    monkeypatch.setattr(flightjobd, "atomic_write", failing)
    with pytest.raises(flightjobd.Unavailable, match="full"):
        store.script_update(sid, content="new\n", notes="new notes")
    monkeypatch.setattr(flightjobd, "atomic_write", real)
    assert store.script_get(sid) == before
    meta = json.loads((tmp_path / "state" / "scripts" / sid / "meta.json").read_text())
    assert script_files(tmp_path, sid) == sorted(["meta.json", meta["content_file"], meta["notes_file"]])


def test_scripts_of_the_older_format_are_read_and_moved_on_their_first_change(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    store = flightjobd.Store(make_config(), "me")
    d = tmp_path / "state" / "scripts" / "20240101-000000000-abcdef"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({
        "format": 1, "id": d.name, "name": "old one", "template_id": "serial", "template_name": "Serial",
        "answers": {}, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "version": 4}))
    (d / "script.sh").write_text("#!/bin/bash\necho old\n")
    (d / "notes.md").write_text("old notes")
    old = store.script_get(d.name)
    assert (old["content"], old["notes"], old["etag"]) == ("#!/bin/bash\necho old\n", "old notes", '"4"')
    assert [s["name"] for s in store.scripts_list()["scripts"]] == ["old one"]
    new = store.script_update(d.name, content="#!/bin/bash\necho new\n", if_match='"4"')
    assert (new["content"], new["notes"], new["version"]) == ("#!/bin/bash\necho new\n", "old notes", 5)
    meta = json.loads((d / "meta.json").read_text())
    assert meta["format"] == flightjobd.SCRIPT_FORMAT
    assert script_files(tmp_path, d.name) == sorted(["meta.json", meta["content_file"], meta["notes_file"]])
    # submitting reads the new content
    job = store.job_submit(d.name)
    assert "echo new" in store.job_get(job["id"], script=True)["script_content"]
    # a meta.json naming a file of its own choosing is broken, not followed
    for bad in ("../../../etc/passwd", "notes.md", "script-v1-zzzzzzzz.sh", meta["notes_file"]):
        (d / "meta.json").write_text(json.dumps(dict(meta, content_file=bad)))
        with pytest.raises(flightjobd.Conflict, match="broken"):
            store.script_get(d.name)
        assert store.scripts_list()["scripts"][0]["broken"]


def test_stray_temporary_files_inside_items_are_swept(make_config, tmp_path, monkeypatch):
    """What a killed atomic_write leaves inside a script's or a job's
    directory: a script's at worker start once older than the age bound (a
    younger one may be another node's write in progress), a job's the next
    time its record is written, which an interrupted write always is."""
    monkeypatch.setenv("HOME", str(tmp_path))
    store = flightjobd.Store(make_config(), "me")
    script = store.script_create("serial")
    sdir = tmp_path / "state" / "scripts" / script["id"]
    files = script_files(tmp_path, script["id"])
    hour_ago = time.time() - 7200
    old_tmp, young_tmp = sdir / ".meta.json.0123abcd.tmp", sdir / ".notes-v2-0123abcd.md.89abcdef.tmp"
    old_body, legacy = sdir / "script-v2-0badc0de.sh", sdir / "script.sh"
    mine = sdir / "my-own-file.txt"  # not ours: never touched
    for path in (old_tmp, young_tmp, old_body, legacy, mine):
        path.write_text("left")
    for path in (old_tmp, old_body, legacy, mine, *[sdir / f for f in files]):
        os.utime(path, (hour_ago, hour_ago))
    flightjobd.Store(make_config(), "me")  # a new worker starts
    assert script_files(tmp_path, script["id"]) == sorted(files + [young_tmp.name, mine.name])
    assert flightjobd.Store(make_config(), "me").script_get(script["id"]) == script
    # a job: gated so it stays unfinished until the stray is in place
    gate = tmp_path / "gate"
    store.script_update(script["id"], content="#!/bin/bash\nwhile [ ! -e %s ]; do sleep 0.1; done\n" % gate)
    job = store.job_submit(script["id"])
    jdir = tmp_path / "state" / "jobs" / job["id"]
    stray = jdir / ".meta.json.fedcba98.tmp"
    stray.write_text("{")
    flightjobd.Store(make_config(), "me")  # not at worker start: jobs are many, see _update_job
    assert stray.exists()
    gate.write_text("")
    wait_for(lambda: store.job_get(job["id"])["finished"], 30, "the job finishing")
    assert sorted(os.listdir(jdir)) == ["meta.json", "script.sh"]
