#!/usr/bin/env python3
"""flightjobd's benchmark: `make bench` prints one table of figures, each
with what it is compared to, measured in the same run on the same machine.

    .venv/bin/python tests/bench.py              everything (Slurm rows: n/a
                                                  when the test cluster is down)
    .venv/bin/python tests/bench.py --quick      fewer samples, for a try-out
    .venv/bin/python tests/bench.py --only joblist   one part (small, listing,
                                                  joblist, slurm, workers, poll, fair,
                                                  download)

The figures (issue 7): throughput of an authenticated GET /api/jobs/ID vs a
bare Bottle+waitress route; listing latency with 10,000 finished and 200
unfinished jobs, warm and with a fresh worker; scheduler commands per
refresh on the real test Slurm cluster vs one `scontrol show job` per job;
submit overhead; memory footprint; start-up time. See README "Benchmarks".

Everything runs on 127.0.0.1 in a temporary directory that is removed at
the end; the processes started here are ended by their own pids. Internal
modes (run by the bench itself): --bare PORT THREADS BODYFILE, --load ...
"""
import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "--bare" not in sys.argv and "--load" not in sys.argv:
    # not in the bare process (its footprint is the yardstick) nor the load
    # generator: support imports pytest, WebTest and flightjobd
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from support import UnixUsers, children, free_port, install_pam_service, make_runtime, write_toml  # noqa: E402

DAEMON = os.path.join(ROOT, "flightjobd.py")
PY = sys.executable
SLURM_DIR = os.environ.get("FLIGHTJOB_SLURM_DIR", "/tmp/flightjob-slurm")
SLURM_CONF = os.path.join(SLURM_DIR, "etc", "slurm.conf")


# Small helpers ##############################################################

def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def uss_mb(pid):
    """Memory private to the process (not shared with others): what one
    more such process costs."""
    total = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024.0


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def ms(seconds):
    return seconds * 1000.0


class HTTP:
    """A keep-alive client for setup calls and sequential latency samples."""

    def __init__(self, port, cookie=None, csrf=None):
        self.port, self.cookie, self.csrf = port, cookie, csrf
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method, path, body=None, expect=None):
        headers = {}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if self.csrf and method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                if attempt == 2:
                    raise
        if expect is not None and r.status != expect:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, raw[:300]))
        return r, raw

    def json(self, method, path, body=None, expect=200):
        return json.loads(self.request(method, path, body, expect)[1].decode())

    def timed(self, method, path, body=None, expect=200):
        t = time.perf_counter()
        self.request(method, path, body, expect)
        return time.perf_counter() - t

    def close(self):
        self.conn.close()


def wait_http(port, path, deadline, proc=None):
    """Poll until GET path answers 200; the time it did."""
    while time.perf_counter() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return time.perf_counter()
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        time.sleep(0.005)
    raise RuntimeError("no answer on port %d" % port)


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Daemon:
    """flightjobd as a real process, single-user, logged in by its token."""

    def __init__(self, workdir, name, sections, env=None):
        self.port = free_port()
        self.config = os.path.join(workdir, "%s.toml" % name)
        self.log = os.path.join(workdir, "%s.log" % name)
        write_toml(self.config, sections)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.http = None

    def start(self):
        """Start; returns seconds from process start to /api/health answering."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([PY, "-m", "flightjobd", "--config", self.config,
                                      "--listen", "127.0.0.1:%d" % self.port],
                                     stdout=subprocess.PIPE, stderr=open(self.log, "ab"),
                                     env=self.env, cwd=ROOT)  # -m, as make run does
        t1 = wait_http(self.port, "/api/health", t0 + 60, self.proc)
        self.token = None
        line = self.proc.stdout.readline().decode()
        m = re.search(r"token=(\S+)", line)
        self.token = m.group(1) if m else None
        return t1 - t0

    def login(self):
        h = HTTP(self.port)
        r, _ = h.request("GET", "/login?token=" + self.token, expect=303)
        cookie = r.getheader("Set-Cookie").split(";", 1)[0]
        h.cookie = cookie
        h.csrf = h.json("GET", "/api/session")["csrf_token"]
        self.http = h
        return h

    def worker_pid(self):
        pids = children(self.proc.pid, "--worker")
        return pids[0] if pids else None

    def kill_worker(self):
        pid = self.worker_pid()
        if pid:
            kill_and_wait(pid)

    def stop(self):
        if self.http:
            self.http.close()
        stop(self.proc)


class Bare:
    """A bare Bottle+waitress process whose one route returns a constant
    JSON body: what the daemon is compared to."""

    def __init__(self, workdir, threads, body):
        self.port = free_port()
        self.body_file = os.path.join(workdir, "bare-body-%d.json" % self.port)
        with open(self.body_file, "wb") as f:
            f.write(body)
        self.threads = threads
        self.proc = None

    def start(self):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([PY, os.path.abspath(__file__), "--bare", str(self.port),
                                      str(self.threads), self.body_file],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return wait_http(self.port, "/", t0 + 30, self.proc) - t0

    def stop(self):
        stop(self.proc)


def bare_main(port, threads, body_file):
    import bottle
    from waitress import serve
    with open(body_file, "rb") as f:
        body = f.read()
    app = bottle.Bottle()

    @app.route("/")
    def constant():
        bottle.response.set_header("Content-Type", "application/json")
        return body
    serve(app, host="127.0.0.1", port=port, threads=threads, _quiet=True)


# The load generator (its own processes) ####################################

def load_main(port, path, cookie, conns, seconds, count):
    """conns keep-alive connections on raw sockets, each sending GET path
    back to back, for `seconds` or until `count` requests in all. Prints
    {"requests", "errors", "seconds"} as JSON."""
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sAccept: */*\r\n\r\n"
               % (path, port, ("Cookie: %s\r\n" % cookie) if cookie else "")).encode()
    done = [0] * conns
    errors = [0] * conns
    per_conn = (count + conns - 1) // conns if count else None
    start = time.perf_counter()
    deadline = start + seconds if seconds else None

    def connect():
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def one(i):
        s = connect()
        buf = b""
        while True:
            if per_conn is not None and done[i] >= per_conn:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            try:
                s.sendall(request)
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                length = int(m.group(1)) if m else 0
                while len(buf) < length:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    buf += chunk
                buf = buf[length:]
                if head[9:12] != b"200":
                    errors[i] += 1
                done[i] += 1
            except OSError:
                errors[i] += 1
                done[i] += 1
                s.close()
                s, buf = connect(), b""
        s.close()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"requests": sum(done), "errors": sum(errors),
                      "seconds": time.perf_counter() - start}))


def load(port, path, cookie=None, procs=2, conns=4, seconds=None, count=None):
    """Run the load generator in `procs` processes of `conns` connections:
    (requests per second, requests, errors)."""
    argv = [PY, os.path.abspath(__file__), "--load", str(port), path, cookie or "",
            str(conns), str(seconds or 0), str((count + procs - 1) // procs if count else 0)]
    ps = [subprocess.Popen(argv, stdout=subprocess.PIPE) for _ in range(procs)]
    results = [json.loads(p.communicate()[0].decode()) for p in ps]
    requests = sum(r["requests"] for r in results)
    errors = sum(r["errors"] for r in results)
    elapsed = max(r["seconds"] for r in results)
    return requests / elapsed, requests, errors


# Job records on disk, in the state directory's format ######################

def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def job_id(ts, n):
    return "%s%03d-%06x" % (time.strftime("%Y%m%d-%H%M%S", time.gmtime(ts)), n % 1000, n)


SCRIPT = "#!/bin/bash\n#SBATCH --job-name=bench\n#SBATCH --output=bench-%j.out\necho hello\n"


def make_meta(jid, ts, scheduler, sid, state, results):
    finished = state not in ("PENDING", "RUNNING")
    return {"format": 1, "id": jid, "script_id": "20240101-000000000-abcdef",
            "script_name": "bench script %s" % jid[-6:], "scheduler": scheduler,
            "scheduler_id": sid, "state": state, "raw_state": state,
            "reason": "None", "reason_text": "", "exit_code": 0 if finished else None,
            "submitted_at": iso(ts), "started_at": iso(ts + 5),
            "estimated_start_at": None, "ended_at": iso(ts + 65) if finished else None,
            "answers": {"time": "0-00:10:00", "partition": ""},
            "options": ["--time=0-00:10:00"], "command": ["sbatch", "--time=0-00:10:00",
                                                          "script.sh"],
            "ignored_options": [], "results_dir": results,
            "stdout_path": os.path.join(results, "bench-%s.out" % sid),
            "stderr_path": os.path.join(results, "bench-%s.out" % sid),
            "tasks": [], "updated_at": iso(ts + 65), "missing_since": None}


def write_job(jobs_dir, meta):
    d = os.path.join(jobs_dir, meta["id"])
    os.mkdir(d, 0o700)
    with open(os.path.join(d, "meta.json"), "w") as f:
        f.write(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    with open(os.path.join(d, "script.sh"), "w") as f:
        f.write(SCRIPT)


def make_local_jobs(state_dir, finished, unfinished, results):
    """finished COMPLETED/FAILED jobs plus unfinished RUNNING ones with real
    local-scheduler records, whose supervisor (for LocalScheduler's
    liveness check) is one sleeping process naming every job directory.
    Returns (supervisor process, ids of the unfinished jobs)."""
    jobs_dir = os.path.join(state_dir, "jobs")
    local_dir = os.path.join(state_dir, "local")
    os.makedirs(jobs_dir, 0o700)
    os.makedirs(local_dir, 0o700)
    base = time.time() - 86400 * 30
    total = finished + unfinished
    dirs = [os.path.join(local_dir, str(n + 1)) for n in range(unfinished)]
    supervisor = subprocess.Popen([PY, "-c", "import time; time.sleep(3600)"] + dirs,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ids = []
    for i in range(total):
        ts = base + i * (86400 * 30.0 / total)
        jid = job_id(ts, i)
        if i < finished:
            state = "FAILED" if i % 10 == 0 else "COMPLETED"
            meta = make_meta(jid, ts, "local", str(100000 + i), state, results)
            if state == "FAILED":
                meta.update(exit_code=1, reason="NonZeroExitCode", reason_text="exit code 1")
        else:
            n = i - finished + 1
            jobdir = dirs[n - 1]
            os.mkdir(jobdir, 0o700)
            status = {"format": 1, "state": "RUNNING", "raw_state": "RUNNING", "reason": "None",
                      "reason_text": "", "supervisor": supervisor.pid, "started_at": iso(ts + 5),
                      "exit_code": None, "ended_at": None, "tasks": [], "pgid": supervisor.pid}
            with open(os.path.join(jobdir, "spec.json"), "w") as f:
                json.dump({"format": 1, "id": str(n), "user": "bench", "cwd": results,
                           "time_limit": None, "tasks": None, "cpus": 1, "outputs": []}, f)
            with open(os.path.join(jobdir, "status.json"), "w") as f:
                json.dump(status, f)
            meta = make_meta(jid, ts, "local", str(n), "RUNNING", results)
            meta.update({k: v for k, v in status.items() if k not in ("format", "supervisor", "pgid")})
            ids.append(jid)
        write_job(jobs_dir, meta)
    return supervisor, ids


# The figures ###############################################################

class Table:
    def __init__(self):
        self.rows = []

    def add(self, figure, value, compared, verdict):
        self.rows.append((figure, value, compared, verdict))
        print("  %s: %s | %s | %s" % (figure, value, compared, verdict), file=sys.stderr, flush=True)

    def na(self, figure, why):
        self.add(figure, "n/a", why, "n/a")

    def markdown(self):
        head = ("figure", "measured", "compared to (same run)", "target")
        lines = ["| %s |" % " | ".join(head), "|%s" % ("---|" * len(head))]
        lines += ["| %s |" % " | ".join(r) for r in self.rows]
        return "\n".join(lines)


def verdict(ok, target):
    return ("met (%s)" if ok else "MISSED (%s)") % target


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024.0 / 1024.0
    return ("%d CPUs (nproc), %s, %.1f GiB memory, Python %s, %s"
            % (os.cpu_count(), model, mem, platform.python_version(), platform.platform()))


def log(msg):
    print("bench: %s" % msg, file=sys.stderr, flush=True)


def bench_throughput_footprint(work, table, quick):
    """Figures 1, 5 and 6: throughput, footprint, start-up."""
    state = os.path.join(work, "state-small")
    results = os.path.join(work, "results")
    os.makedirs(results, exist_ok=True)
    sections = {"storage": {"state_dir": state, "user_templates": os.path.join(work, "no-templates")},
                "scheduler": {"type": "local"}, "templates": {"site_dirs": []}}
    # Start-up: daemon vs bare process, alternating; the bare one with the daemon's default threads.
    runs, threads = (3 if quick else 5), __import__("flightjobd").SCHEMA["server"]["threads"][0]
    daemon_starts, bare_starts = [], []
    for _ in range(runs):
        d = Daemon(work, "startup", sections)
        daemon_starts.append(d.start())
        d.stop()
        b = Bare(work, threads, b"{}")
        bare_starts.append(b.start())
        b.stop()
    log("start-up measured")

    # One finished job to GET.
    os.makedirs(os.path.join(state, "jobs"), 0o700)
    jid = job_id(time.time() - 3600, 1)
    write_job(os.path.join(state, "jobs"), make_meta(jid, time.time() - 3600, "local", "1",
                                                     "COMPLETED", results))
    d = Daemon(work, "small", sections)
    d.start()
    time.sleep(0.5)
    daemon_idle = rss_mb(d.proc.pid)
    h = d.login()
    path = "/api/jobs/%s" % jid
    _, body = h.request("GET", path, expect=200)
    bare = Bare(work, threads, body)
    bare.start()
    time.sleep(0.5)
    bare_idle = rss_mb(bare.proc.pid)

    # Footprint after 1,000 requests, and growth over 10,000 more.
    load(d.port, path, h.cookie, count=1000)
    load(bare.port, "/", count=1000)
    daemon_1k = rss_mb(d.proc.pid)
    bare_1k = rss_mb(bare.proc.pid)
    worker_1k = rss_mb(d.worker_pid())
    load(d.port, path, h.cookie, count=10000)
    daemon_11k = rss_mb(d.proc.pid)
    worker_11k = rss_mb(d.worker_pid())
    log("footprint measured")

    # Throughput, alternating rounds, same load generator, same threads (8).
    seconds = 2 if quick else 4
    ours, theirs = [], []
    errors = 0
    for _ in range(2 if quick else 3):
        rate, _, err = load(bare.port, "/", seconds=seconds)
        theirs.append(rate)
        errors += err
        rate, _, err = load(d.port, path, h.cookie, seconds=seconds)
        ours.append(rate)
        errors += err
    # Where the time goes: one connection, so latency = 1 / rate.
    single = {}
    for name, port, p, cookie in (("bare", bare.port, "/", None),
                                  ("session", d.port, "/api/session", h.cookie),
                                  ("job", d.port, path, h.cookie)):
        single[name] = load(port, p, cookie, procs=1, conns=1, seconds=seconds / 2.0)[0]
    log("throughput measured")
    ours_rate, bare_rate = statistics.median(ours), statistics.median(theirs)
    ratio = ours_rate / bare_rate
    table.add("Throughput: GET /api/jobs/ID, session cookie, through the worker (%d threads, "
              "8 keep-alive connections)" % threads, "%.0f req/s" % ours_rate,
              "bare Bottle+waitress constant JSON (same body): %.0f req/s; ratio %.2f%s"
              % (bare_rate, ratio, "" if not errors else "; %d errors" % errors),
              verdict(ratio >= 0.5 and not errors, ">= 0.5x"))
    table.add("Latency, 1 connection: GET /api/jobs/ID (through the worker)",
              "%.0f us" % (1e6 / single["job"]),
              "bare route %.0f us; GET /api/session, same daemon, no worker call %.0f us"
              % (1e6 / single["bare"], 1e6 / single["session"]), "(explains the line above)")
    table.add("Footprint: daemon RSS idle / after 1,000 requests",
              "%.1f MB / %.1f MB" % (daemon_idle, daemon_1k),
              "bare process: %.1f MB / %.1f MB; ratio %.2f / %.2f"
              % (bare_idle, bare_1k, daemon_idle / bare_idle, daemon_1k / bare_1k),
              verdict(daemon_1k / bare_1k <= 1.3 and daemon_idle / bare_idle <= 1.3, "<= 1.3x"))
    table.add("Footprint: one worker RSS (1 job)", "%.1f MB" % worker_1k,
              "of which private (USS, not shared with other processes): %.1f MB; "
              "the daemon's private memory: %.1f MB, the bare process's: %.1f MB"
              % (uss_mb(d.worker_pid()), uss_mb(d.proc.pid), uss_mb(bare.proc.pid)),
              verdict(worker_1k <= 30, "<= 30 MB"))
    table.add("Footprint: growth over 10,000 more requests (daemon / worker)",
              "%+.1f MB / %+.1f MB" % (daemon_11k - daemon_1k, worker_11k - worker_1k),
              "RSS after 1,000 requests: %.1f MB / %.1f MB" % (daemon_1k, worker_1k),
              verdict(daemon_11k - daemon_1k < 2 and worker_11k - worker_1k < 2,
                      "no growth: < 2 MB"))
    table.add("Start-up: process start to /api/health answering (p50 of %d)" % runs,
              "%.0f ms" % ms(statistics.median(daemon_starts)),
              "bare Bottle+waitress process start to first answer: %.0f ms"
              % ms(statistics.median(bare_starts)),
              verdict(statistics.median(daemon_starts) <= 1.0, "<= 1 s"))
    bare.stop()
    return d


def proc_memory(pid):
    """(RSS, USS, PSS) in MB, from /proc/PID/smaps_rollup."""
    kb = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                kb[parts[0].rstrip(":")] = int(parts[1])
    return (kb["Rss"] / 1024.0, (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024.0, kb["Pss"] / 1024.0)


def basic_get(port, user, path):
    """GET path as user with HTTP Basic: seconds taken (200 expected)."""
    import base64
    token = base64.b64encode(("%s:%s" % (user.name, user.password)).encode()).decode()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": "Basic " + token})
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    if r.status != 200:
        raise RuntimeError("GET %s as %s: %d %s" % (path, user.name, r.status, body[:200]))
    return time.perf_counter() - t0


def worker_of(daemon_pid, user):
    for pid in children(daemon_pid):
        try:
            if os.stat("/proc/%d" % pid).st_uid == user.uid:
                return pid
        except OSError:
            pass
    return None


def kill_and_wait(pid):
    """SIGKILL, then until it is a zombie or gone (its pidfd or reader sees it)."""
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return
        except OSError:
            return
        time.sleep(0.005)


def bench_workers(work, table, quick):
    """Worker start time and memory, spawned (worker.fork_server = false) vs
    forked from the template process, root multi-user with real users."""
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"):
        table.na("Workers: start time and memory, spawn vs fork", "needs root (real users) and /usr/bin/python3")
        return
    install_pam_service()
    runtime = make_runtime(os.path.join(work, "runtime"))
    count = int(os.environ.get("BENCH_USERS", "5" if quick else "100"))
    starts = 5 if quick else 15
    users = UnixUsers()
    figures = {}
    try:
        people = [users.create(prefix="fjb") for _ in range(count)]
        for mode in ("spawn", "fork"):
            sections = {"server": {"multi_user": True, "threads": 16},
                        "worker": dict(runtime, fork_server=mode == "fork"),
                        "auth": {"session_dir": os.path.join(work, "sessions-" + mode), "basic_cache": 600,
                                 "login_slots": 16},
                        "storage": {"state_dir": "~/.local/share/flight-job"},
                        "scheduler": {"type": "local", "refresh_interval": 0, "background_refresh": 0},
                        "templates": {"site_dirs": []}}
            d = Daemon(work, "workers-" + mode, sections)
            try:
                d.start()
                first = people[0]
                basic_get(d.port, first, "/api/scripts")
                time.sleep(0.5)
                one = proc_memory(worker_of(d.proc.pid, first))
                warm = statistics.median(basic_get(d.port, first, "/api/scripts") for _ in range(starts))
                cold = []
                for _ in range(starts):
                    kill_and_wait(worker_of(d.proc.pid, first))
                    cold.append(basic_get(d.port, first, "/api/scripts"))
                for u in people[1:]:
                    basic_get(d.port, u, "/api/scripts")
                time.sleep(0.5)
                mems = [proc_memory(worker_of(d.proc.pid, u)) for u in people]
                servers = children(d.proc.pid, "--fork-server")
                total = sum(m[2] for m in mems) + proc_memory(d.proc.pid)[2] + sum(proc_memory(p)[2] for p in servers)
                figures[mode] = (statistics.median(cold) - warm, warm, one,
                                 [statistics.median(m[i] for m in mems) for i in range(3)], total)
            finally:
                d.stop()
    finally:
        users.remove_all()
    log("workers measured")
    spawn, fork = figures["spawn"], figures["fork"]
    table.add("Worker start: first request to a fresh worker minus a warm one (p50 of %d)" % starts,
              "fork %.0f ms" % ms(fork[0]), "spawn %.0f ms (warm request: %.1f / %.1f ms)"
              % (ms(spawn[0]), ms(fork[1]), ms(spawn[1])), verdict(fork[0] < spawn[0], "faster than spawn"))
    for label, i in (("1 user", 2), ("%d users (median worker)" % count, 3)):
        f, s = fork[i], spawn[i]
        table.add("Worker memory at %s: RSS / USS / PSS" % label, "fork %.1f / %.1f / %.1f MB" % tuple(f),
                  "spawn %.1f / %.1f / %.1f MB" % tuple(s), verdict(f[1] <= 4, "USS <= 4 MB"))
    table.add("Memory, daemon + fork server + all workers at %d users (sum of PSS)" % count,
              "fork %.0f MB" % fork[4], "spawn %.0f MB" % spawn[4], "(the sum of what they cost)")


def bench_download(work, table, quick):
    """Root's peak memory (VmHWM) across one whole download of a sparse
    10 GiB result file (1 GiB with --quick) by a real user of a root
    multi-user daemon: the whole-file figure behind the README's "root's
    memory stays flat" (CI's test_hostile streams 512 MiB of such a file)."""
    size = (1 if quick else 10) << 30
    figure = "Root's peak RSS (VmHWM) across a whole %d GiB download (sparse result file)" % (size >> 30)
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"):
        table.na(figure, "needs root (a real user) and /usr/bin/python3")
        return
    install_pam_service()
    runtime = make_runtime(os.path.join(work, "runtime-download"))
    users = UnixUsers()
    d = None
    try:
        u = users.create(prefix="fjb")
        out = os.path.join(u.home, "out")
        os.mkdir(out)
        os.chown(out, u.uid, u.gid)
        d = Daemon(work, "download", {"server": {"multi_user": True}, "worker": runtime,
                                      "auth": {"session_dir": os.path.join(work, "sessions-download")},
                                      "storage": {"state_dir": "~/.local/share/flight-job"},
                                      "scheduler": {"type": "local", "refresh_interval": 0, "background_refresh": 0},
                                      "templates": {"site_dirs": []}})
        d.start()
        import base64
        auth = {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (u.name, u.password)).encode()).decode()}

        def call(method, path, body=None):
            conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
            conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                         headers=dict(auth, **({"Content-Type": "application/json"} if body is not None else {})))
            return conn, conn.getresponse()

        def api(method, path, body=None):
            conn, r = call(method, path, body)
            raw = r.read()
            conn.close()
            if r.status >= 300:
                raise RuntimeError("%s %s: %d %s" % (method, path, r.status, raw[:300]))
            return json.loads(raw)
        sid = api("POST", "/api/scripts", {"template": "serial", "name": "download"})["id"]
        api("PATCH", "/api/scripts/" + sid, {"content": "#!/bin/bash\n#SBATCH --chdir=%s\n"
                                                       "#SBATCH --output=job.out\ntruncate -s %d big.bin\n" % (out, size)})
        jid = api("POST", "/api/jobs", {"script": sid, "answers": {}})["id"]
        end = time.time() + 120
        while api("GET", "/api/jobs/" + jid)["state"] in ("PENDING", "RUNNING"):
            if time.time() > end:
                raise RuntimeError("the download bench's job did not finish")
            time.sleep(0.2)
        with open("/proc/%d/status" % d.proc.pid) as f:
            before = int([line for line in f if line.startswith("VmHWM:")][0].split()[1]) / 1024.0
        conn, r = call("GET", "/api/jobs/%s/files/big.bin" % jid)
        got, t0 = 0, time.perf_counter()
        while True:
            piece = r.read(1 << 20)
            if not piece:
                break
            got += len(piece)
        took = time.perf_counter() - t0
        conn.close()
        with open("/proc/%d/status" % d.proc.pid) as f:
            after = int([line for line in f if line.startswith("VmHWM:")][0].split()[1]) / 1024.0
    finally:
        if d is not None:
            d.stop()
        users.remove_all()
    log("download measured")
    if got != size:
        raise RuntimeError("the whole download gave %d bytes of %d" % (got, size))
    table.add(figure, "+%.1f MB (%.1f -> %.1f MB)" % (after - before, before, after),
              "%.0f MiB/s, %.0f s" % (got / took / (1 << 20), took), verdict(after - before <= 3, "+0 to 3 MB"))


def bench_submit_local(work, table, d, quick):
    """Figure 4 on the local scheduler: POST /api/jobs vs LocalScheduler.submit."""
    import flightjobd
    h = d.http
    out = os.path.join(work, "submit-out")
    os.makedirs(out)
    script = h.json("POST", "/api/scripts", {"template": "serial", "name": "bench",
                                             "answers": {"working_dir": out}}, expect=201)
    plan = h.json("POST", "/api/scripts/%s/preview" % script["id"], {"answers": {}})
    content = h.json("GET", "/api/scripts/%s" % script["id"])["content"]
    bare_dir = os.path.join(work, "state-bare-submit")
    os.makedirs(bare_dir)
    path = os.path.join(bare_dir, "script.sh")
    with open(path, "w") as f:
        f.write(content)
    sched = flightjobd.LocalScheduler(bare_dir, PY, "bench")
    n = 8 if quick else 20
    posts, bares = [], []
    for _ in range(n):
        t = time.perf_counter()
        sched.submit(path, plan["options"], out)
        bares.append(time.perf_counter() - t)
        time.sleep(0.25)
        posts.append(h.timed("POST", "/api/jobs", {"script": script["id"], "answers": {}}, expect=201))
        time.sleep(0.25)
    p_post, p_bare = statistics.median(posts), statistics.median(bares)
    table.add("Submit overhead, local scheduler: POST /api/jobs p50 minus bare submit p50 (%d each)" % n,
              "%.1f ms" % ms(p_post - p_bare),
              "POST /api/jobs %.1f ms; LocalScheduler.submit alone, in-process %.1f ms"
              % (ms(p_post), ms(p_bare)), verdict(p_post - p_bare <= 0.05, "<= 50 ms"))


def bench_listing(work, table, quick):
    """Figure 2: 10,000 finished + 200 unfinished jobs."""
    state = os.path.join(work, "state-big")
    results = os.path.join(work, "results")
    os.makedirs(results, exist_ok=True)
    t = time.perf_counter()
    supervisor, _ = make_local_jobs(state, 10000, 200, results)
    log("10,200 job records written in %.1f s" % (time.perf_counter() - t))
    sections = {"storage": {"state_dir": state, "user_templates": os.path.join(work, "no-templates")},
                "scheduler": {"type": "local"}, "templates": {"site_dirs": []}}
    d = Daemon(work, "big", sections)
    try:
        d.start()
        h = d.login()
        pages = (("GET /api/jobs (first page, 50 jobs)", "/api/jobs"),
                 ("GET /jobs (Monitor jobs page)", "/jobs"),
                 ("GET / (home page: 8 jobs, what is free)", "/"))
        listing = h.json("GET", "/api/jobs")
        assert listing["total"] == 10200, listing["total"]
        assert listing["scheduler"].get("unfinished") in (None, 200), listing["scheduler"]
        n_warm = 20 if quick else 60
        n_cold = 3 if quick else 5
        cold_first = {}
        for name, path in pages:
            # cold: a fresh worker (no parse cache), the request that starts it
            cold = []
            for _ in range(n_cold):
                d.kill_worker()
                cold.append(h.timed("GET", path))
            for _ in range(3):
                h.timed("GET", path)
            warm = []
            for _ in range(n_warm):
                warm.append(h.timed("GET", path))
                time.sleep(0.1)  # spread over the refresh interval
            import flightjobd
            every = flightjobd.SCHEMA["scheduler"]["refresh_interval"][0]  # the default, as the daemon runs
            due = []  # the request that finds the refresh interval passed
            for _ in range(n_cold):
                time.sleep(every + 0.1)
                due.append(h.timed("GET", path))
            cold_first[name] = cold
            p50, p95 = ms(pct(warm, 50)), ms(pct(warm, 95))
            table.add("Listing, 10,000 finished + 200 running jobs: %s, warm p50 / p95 (%d)"
                      % (name, n_warm), "%.1f / %.1f ms" % (p50, p95),
                      "fresh worker (caches dropped) p50 / p95 (%d): %.0f / %.0f ms; warm with "
                      "the 200 jobs' status refresh due (every %d s) p50: %.0f ms"
                      % (n_cold, ms(pct(cold, 50)), ms(pct(cold, 95)), every, ms(pct(due, 50))),
                      verdict(p50 <= 100, "warm p50 <= 100 ms"))
        worker = d.worker_pid()
        table.add("Footprint: the worker of the user with 10,200 jobs (all parsed, cached)",
                  "%.1f MB" % rss_mb(worker), "worker with 1 job: see above",
                  verdict(rss_mb(worker) <= 30, "<= 30 MB"))
    finally:
        d.stop()
        stop(supervisor)


def bench_joblist(work, table, quick):
    """Issue 16: the jobs list searched and sorted at 10,000 finished jobs
    (+ 200 running), against the same list unsearched, in the same run on
    the same daemon; and a fresh worker's first list, which reads the job
    index (job-index.json) instead of 10,000 records."""
    state = os.path.join(work, "state-joblist")
    results = os.path.join(work, "results-joblist")
    os.makedirs(results, exist_ok=True)
    supervisor, _ = make_local_jobs(state, 10000, 200, results)
    sections = {"storage": {"state_dir": state, "user_templates": os.path.join(work, "no-templates")},
                "scheduler": {"type": "local"}, "templates": {"site_dirs": []}}
    d = Daemon(work, "joblist", sections)
    try:
        d.start()
        h = d.login()
        plain = "/api/jobs"
        searched = "/api/jobs?q=script+001&sort=name&order=asc&from=2000-01-01"
        page = "/jobs?q=script+001&sort=name&order=asc"
        first = h.json("GET", plain)
        assert first["total"] == 10200, first["total"]
        found = h.json("GET", searched)
        assert 0 < found["total"] < 10200, found["total"]
        assert [j["script_name"] for j in found["jobs"]] == sorted(j["script_name"] for j in found["jobs"])
        assert os.path.exists(os.path.join(state, "job-index.json"))
        n_warm = 20 if quick else 60
        n_cold = 3 if quick else 5
        timings = {plain: [], searched: [], page: []}
        for _ in range(3):
            for path in timings:
                h.timed("GET", path)
        for _ in range(n_warm):  # interleaved: the same moments of the machine for each
            for path in timings:
                timings[path].append(h.timed("GET", path))
            time.sleep(0.1)
        cold = []
        for _ in range(n_cold):
            d.kill_worker()
            cold.append(h.timed("GET", searched))
        base = ms(pct(timings[plain], 50))
        for name, path in (("GET /api/jobs searched (q) and sorted by name", searched),
                           ("GET /jobs (the page) searched and sorted by name", page)):
            p50, p95 = ms(pct(timings[path], 50)), ms(pct(timings[path], 95))
            table.add("Job list, 10,000 finished + 200 running jobs: %s (%d matching), warm p50 / p95 (%d)"
                      % (name, found["total"], n_warm), "%.1f / %.1f ms" % (p50, p95),
                      "unsearched GET /api/jobs, same run: p50 %.1f ms (x%.2f)" % (base, p50 / base),
                      verdict(p50 <= 100, "warm p50 <= 100 ms"))
        table.add("Job list, 10,000 finished + 200 running jobs: a fresh worker's first searched list "
                  "(reads the job index), p50 / p95 (%d)" % n_cold,
                  "%.0f / %.0f ms" % (ms(pct(cold, 50)), ms(pct(cold, 95))),
                  "warm searched p50: %.1f ms" % ms(pct(timings[searched], 50)), "(no target)")
    finally:
        d.stop()
        stop(supervisor)


# Slurm ######################################################################

def slurm_store(state, ids, out):
    """A Store on the real cluster whose state holds one PENDING job record
    for each Slurm job id in ids."""
    import flightjobd
    os.makedirs(os.path.join(state, "jobs"), 0o700)
    base = time.time() - 600
    for i, sid in enumerate(ids):
        write_job(os.path.join(state, "jobs"), make_meta(job_id(base + i, i), base + i, "slurm", sid, "PENDING", out))
    config = flightjobd.Config({"storage": {"state_dir": state},
                                "scheduler": {"type": "slurm", "refresh_interval": 0,
                                              "environment": {"SLURM_CONF": SLURM_CONF}},
                                "templates": {"site_dirs": []}})
    return flightjobd.Store(config, "root")


STARTED = []  # the cluster script, when this run started the cluster (stopped at the end)


def slurm_ready():
    """(env, None) when the test cluster answers, else (None, why)."""
    import flightjobd
    env = dict(os.environ, SLURM_CONF=SLURM_CONF)
    script = os.path.join(ROOT, "tests", "slurm", "cluster")
    if os.geteuid() == 0 and subprocess.run([script, "status"], capture_output=True, env=env).returncode != 0:
        log("starting the test Slurm cluster (tests/slurm/cluster start)")
        if subprocess.run([script, "start"], capture_output=True, timeout=300).returncode == 0:
            STARTED.append(script)
    if not os.path.exists(SLURM_CONF):
        return None, "the test Slurm cluster is not started (tests/slurm/cluster start)"
    end = time.time() + 90  # the tests restart the shared cluster: give it time to come back
    while True:
        try:
            subprocess.run(["scontrol", "ping"], env=env, check=True, capture_output=True, timeout=10)
            break
        except (OSError, subprocess.SubprocessError):
            if time.time() > end:
                return None, "the test Slurm cluster does not answer (tests/slurm/cluster status)"
            log("waiting for the test Slurm cluster to answer")
            time.sleep(5)
    s = flightjobd.SlurmScheduler(timeout=20, env=env)
    try:
        ok = s.available()
    except Exception as e:  # noqa: BLE001 - any failure means not usable here
        ok, why = False, getattr(e, "message", e)
    else:
        why = "sinfo failed"
    if not ok:
        return None, "the Slurm adapter does not answer: %s" % why
    return env, None


def sbatch_held(env, out, n):
    ids = []
    for _ in range(n):
        r = subprocess.run(["sbatch", "--parsable", "--hold", "--job-name=bench",
                            "--output=%s/slurm-%%j.out" % out, "--wrap=sleep 600"],
                           env=env, check=True, capture_output=True, text=True)
        ids.append(r.stdout.strip().split(";")[0])
    return ids


def bench_slurm(work, table, quick):
    """Figure 3 (scheduler load) and figure 4 on Slurm."""
    env, why = slurm_ready()
    sizes = (1, 50, 500)
    if env is None:
        for n in sizes:
            table.na("Scheduler load: commands per refresh, %d unfinished (held, pending) jobs "
                     "(real Slurm)" % n, why)
        table.na("Scheduler load: the refresh after 25 of 50 unfinished jobs ended (real Slurm)", why)
        table.na("Submit overhead on Slurm: POST /api/jobs p50 minus bare sbatch p50", why)
        return
    out = os.path.join(work, "slurm-out")
    os.makedirs(out, 0o755)
    submitted = []
    try:
        for n in sizes:
            ids = sbatch_held(env, out, n)
            submitted += ids
            store = slurm_store(os.path.join(work, "state-slurm-%d" % n), ids, out)
            store.ask_scheduler()  # first refresh writes the jobs' states
            rounds = 3 if n == 500 else 5
            calls, walls = [], []
            for _ in range(rounds):
                before = dict(store.scheduler.counters)
                t = time.perf_counter()
                store.ask_scheduler()
                walls.append(time.perf_counter() - t)
                after = store.scheduler.counters
                calls.append({k: after.get(k, 0) - before.get(k, 0) for k in after
                              if after.get(k, 0) != before.get(k, 0)})
            anchor = []
            for _ in range(1 if n == 500 else 3):
                t = time.perf_counter()
                for sid in ids:
                    subprocess.run(["scontrol", "show", "job", sid], env=env, check=True,
                                   capture_output=True)
                anchor.append(time.perf_counter() - t)
            per = calls[-1]
            words = ", ".join("%d %s" % (v, k) for k, v in sorted(per.items())) or "none"
            total = sum(per.values())
            table.add("Scheduler load: commands per refresh, %d unfinished (held, pending) jobs "
                      "(real Slurm)" % n,
                      "%s; %.0f ms" % (words, ms(statistics.median(walls))),
                      "anchors (one scontrol show job per job): %d commands; %.0f ms"
                      % (n, ms(statistics.median(anchor))),
                      verdict(total <= 2 and per.get("squeue", 0) <= 1, "1 squeue + <= 1 sacct"))
        # 50 unfinished of which 25 ended since the last refresh: the sacct path
        ids = sbatch_held(env, out, 50)
        submitted += ids
        store = slurm_store(os.path.join(work, "state-slurm-ended"), ids, out)
        store.ask_scheduler()
        subprocess.run(["scancel"] + ids[:25], env=env, check=True, capture_output=True)
        time.sleep(1)
        before = dict(store.scheduler.counters)
        t = time.perf_counter()
        result = store.ask_scheduler()
        wall = time.perf_counter() - t
        per = {k: v - before.get(k, 0) for k, v in store.scheduler.counters.items()
               if v != before.get(k, 0)}
        words = ", ".join("%d %s" % (v, k) for k, v in sorted(per.items())) or "none"
        table.add("Scheduler load: the refresh after 25 of 50 unfinished jobs ended (real Slurm, "
                  "accounting %s)" % ("on" if store.scheduler.accounting() else "off"),
                  "%s; %.0f ms; %s left unfinished" % (words, ms(wall), result.get("unfinished")),
                  "anchors: 50 scontrol show job",
                  verdict(sum(per.values()) <= 2 and per.get("squeue", 0) <= 1,
                          "1 squeue + <= 1 sacct"))
    finally:
        for i in range(0, len(submitted), 200):
            subprocess.run(["scancel"] + submitted[i:i + 200], env=env, capture_output=True)
    bench_submit_slurm(work, table, env, quick)


def bench_submit_slurm(work, table, env, quick):
    sections = {"storage": {"state_dir": os.path.join(work, "state-slurm-submit"),
                            "user_templates": os.path.join(work, "no-templates")},
                "scheduler": {"type": "slurm", "environment": {"SLURM_CONF": SLURM_CONF}},
                "templates": {"site_dirs": []}}
    d = Daemon(work, "slurm", sections, env={"SLURM_CONF": SLURM_CONF})
    out = os.path.join(work, "slurm-submit-out")
    os.makedirs(out, 0o755)
    sids = []
    try:
        d.start()
        h = d.login()
        script = h.json("POST", "/api/scripts", {"template": "serial", "name": "bench",
                                                 "answers": {"working_dir": out}}, expect=201)
        answers = {"time": "0-00:05:00"}
        plan = h.json("POST", "/api/scripts/%s/preview" % script["id"], {"answers": answers})
        content = h.json("GET", "/api/scripts/%s" % script["id"])["content"]
        path = os.path.join(out, "script.sh")
        with open(path, "w") as f:
            f.write(content)
        n = 8 if quick else 20
        posts, bares = [], []
        for _ in range(n):
            t = time.perf_counter()
            r = subprocess.run(["sbatch", "--parsable", "--hold"] + plan["options"] + [path],
                               env=env, cwd=out, capture_output=True, text=True)
            bares.append(time.perf_counter() - t)
            if r.returncode == 0:
                sids.append(r.stdout.strip().split(";")[0])
            t = time.perf_counter()
            job = h.json("POST", "/api/jobs", {"script": script["id"], "answers": answers}, expect=201)
            posts.append(time.perf_counter() - t)
            if job.get("scheduler_id"):
                sids.append(job["scheduler_id"])
            subprocess.run(["scontrol", "hold"] + sids[-1:], env=env, capture_output=True)
        p_post, p_bare = statistics.median(posts), statistics.median(bares)
        table.add("Submit overhead on Slurm: POST /api/jobs p50 minus bare sbatch p50 (%d each)" % n,
                  "%.1f ms" % ms(p_post - p_bare),
                  "POST /api/jobs %.1f ms; the same sbatch alone %.1f ms" % (ms(p_post), ms(p_bare)),
                  verdict(p_post - p_bare <= 0.05, "<= 50 ms"))
    finally:
        if sids:
            subprocess.run(["scancel"] + sids, env=env, capture_output=True)
        d.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--only", choices=("small", "listing", "joblist", "slurm", "workers", "poll", "fair",
                                           "download"), action="append")
    args, rest = parser.parse_known_args()
    only = set(args.only or ("small", "listing", "joblist", "slurm", "workers", "poll", "fair", "download"))
    started = time.time()
    load_at_start = " ".join(open("/proc/loadavg").read().split()[:3])
    work = tempfile.mkdtemp(prefix="flightjob-bench-")
    os.chmod(work, 0o755)
    table = Table()
    log("machine: %s" % machine())
    try:
        if "small" in only:
            d = bench_throughput_footprint(work, table, args.quick)
            try:
                bench_submit_local(work, table, d, args.quick)
            finally:
                d.stop()
        if "listing" in only:
            bench_listing(work, table, args.quick)
        if "joblist" in only:
            bench_joblist(work, table, args.quick)
        if "slurm" in only:
            bench_slurm(work, table, args.quick)
        if "workers" in only:
            bench_workers(work, table, args.quick)
        if "download" in only:
            bench_download(work, table, args.quick)
        if "poll" in only:
            from bench_poll import bench_poll  # the shared status poll (issue 14)
            bench_poll(work, table, args.quick, slurm_ready, verdict, log)
        if "fair" in only:
            from bench_fair import bench_fair  # fair shares between users (issue 26)
            bench_fair(work, table, args.quick, Daemon, verdict, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("flightjobd %s benchmark, %s" % (version(), time.strftime("%Y-%m-%d")))
    print("Machine: %s" % machine())
    print("Load average at the start / end (other work on the machine skews the figures): %s / %s"
          % (load_at_start, " ".join(open("/proc/loadavg").read().split()[:3])))
    print()
    print(table.markdown())
    print()
    print("(%.0f s in all)" % (time.time() - started))
    for script in STARTED:
        subprocess.run([script, "stop"], capture_output=True, timeout=120)


def version():
    with open(DAEMON) as f:
        m = re.search(r'__version__ = "([^"]+)"', f.read())
    return m.group(1) if m else "?"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare":
        bare_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "--load":
        port, path, cookie, conns, seconds, count = sys.argv[2:8]
        load_main(int(port), path, cookie, int(conns), float(seconds), int(count))
    else:
        sys.path.insert(0, ROOT)
        main()
