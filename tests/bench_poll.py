"""`make bench` rows of the shared status poll (issue 14), on the real test
Slurm cluster with real Unix users, each with one unfinished job whose page
they keep open (a look every 2 s, as the job page does):

- slurmctld's RPCs per minute (sdiag, every message type) at 1, 10 and 100
  users, with each worker polling for its own user (scheduler.shared_poll =
  false: the old path, kept) and with the shared poll, in the same run;
- the time from a job's end to its page showing the final state, p50 and
  max, at 100 users.

Run by tests/bench.py (`--only poll`); needs root (users, a multi-user app)."""
import os
import re
import statistics
import subprocess
import threading
import time

import flightjobd
from support import UnixUsers, make_runtime

RPC_RE = re.compile(r"^\s*(\w+)\s+\(\s*\d+\)\s+count:(\d+)", re.M)
SIZES = (1, 10, 100)
LOOK_EVERY = 2.0  # seconds between two looks of one user at their job's page


def rpc_total(env):
    """All RPCs slurmctld has counted, every message type."""
    text = subprocess.run(["sdiag"], env=env, capture_output=True, text=True, check=True).stdout
    part = text.split("Remote Procedure Call statistics by message type")[1].split(
        "Remote Procedure Call statistics by user")[0]
    return sum(int(n) for _, n in RPC_RE.findall(part))


def rpcs_per_call(env, argv, times=10):
    """slurmctld's RPCs (all types) one run of argv costs: the sdiag
    difference over `times` runs, less that of `times` runs of `true`
    (sdiag's own request and the cluster's background traffic)."""
    def cost(cmd):
        before = rpc_total(env)
        for _ in range(times):
            subprocess.run(cmd, env=env, capture_output=True, check=True)
        return rpc_total(env) - before
    return (cost(argv) - cost(["true"])) / float(times)


SQUEUE_POLL = ["squeue", "--noheader", "--array", "--states=all", "--users=root",
               "--Format=" + flightjobd.SQUEUE_FORMAT]


def make_app(runtime, env, shared):
    config = flightjobd.Config({
        "server": {"multi_user": True, "threads": 64},
        "worker": dict(runtime, idle_timeout=3600, max_requests_per_user=4),
        "templates": {"site_dirs": []},
        "scheduler": {"type": "slurm", "environment": {"SLURM_CONF": env["SLURM_CONF"]},
                      "shared_poll": shared, "timeout": 30}})
    return flightjobd.make_app(config)


def submit(app, user, body):
    s = app.pool.call(user, "scripts.create", {"template": "serial", "name": "bench"})
    app.pool.call(user, "scripts.update", {"id": s["id"], "content": "#!/bin/bash\n%s\n" % body})
    return app.pool.call(user, "jobs.submit", {"script": s["id"], "answers": {}})


class Watchers:
    """One thread looks at each user's job page (jobs.get) every LOOK_EVERY
    seconds, spread over the interval, as an unfinished job's open page
    does; seen[user] = when it first showed a final state, started[user]
    when it first showed the job started."""

    def __init__(self, app, jobs):
        self.app, self.jobs, self.seen, self.started, self.stop = app, jobs, {}, {}, threading.Event()
        self.errors = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        users = list(self.jobs)
        gap = LOOK_EVERY / max(1, len(users))
        while not self.stop.is_set():
            for user in users:
                if self.stop.is_set():
                    return
                t = time.time()
                try:
                    job = self.app.pool.call(user, "jobs.get", {"id": self.jobs[user]["id"]})
                    if job["state"] != "PENDING" and user not in self.started:
                        self.started[user] = time.time()
                    if job["state"] in flightjobd.FINISHED and user not in self.seen:
                        self.seen[user] = time.time()
                except flightjobd.FlightJobError:
                    self.errors += 1
                time.sleep(max(0.0, gap - (time.time() - t)))

    def close(self):
        self.stop.set()
        self.thread.join()


def rpcs_per_minute(env, app, users, seconds):
    jobs = {u.name: submit(app, u.name, "#SBATCH --hold\ntrue") for u in users}
    watchers = Watchers(app, jobs)
    try:
        time.sleep(LOOK_EVERY * 2)  # every worker started, the poll following all
        if app.pool.poll and app.pool.poll.serving():  # its process started, its first checks made
            app.pool.poll.wait_round(120)
        before, t = rpc_total(env), time.time()
        time.sleep(seconds)
        return (rpc_total(env) - before) * 60.0 / (time.time() - t), watchers.errors
    finally:
        watchers.close()
        subprocess.run(["scancel"] + [j["scheduler_id"] for j in jobs.values()], env=env, capture_output=True)


def to_page(app, users, runs_for):
    """Every user's job starts when the cluster has room and runs about
    runs_for seconds; each job writes the moment it starts and the moment it
    ends; the watchers note when its page first shows each. ({"start": [lag
    per job], "end": [...]}, jobs never shown)"""
    marks, jobs = {}, {}
    for i, u in enumerate(users):
        marks[u.name] = [os.path.join(u.home, name) for name in ("started-at", "ended-at")]
        jobs[u.name] = submit(app, u.name, "date +%%s.%%N > %s; sleep %d; date +%%s.%%N > %s" % (
            marks[u.name][0], runs_for + i % 5, marks[u.name][1]))
    watchers = Watchers(app, jobs)
    try:
        deadline = time.time() + runs_for * len(users) + 180
        while len(watchers.seen) < len(users) and time.time() < deadline:
            time.sleep(0.5)
    finally:
        watchers.close()
    lags = {"start": [], "end": []}
    for name, (started, ended) in marks.items():
        for which, mark, seen in (("start", started, watchers.started), ("end", ended, watchers.seen)):
            if name in seen and os.path.exists(mark):
                lags[which].append(seen[name] - float(open(mark).read().strip()))
    return lags, len(users) - len(lags["end"])


def bench_poll(work, table, quick, slurm_ready, verdict, log):
    env, why = slurm_ready()
    rows = ["Scheduler load: slurmctld RPCs per minute (sdiag, all types), %d users each watching "
            "an unfinished job" % n for n in SIZES]
    lag_rows = ["Time from a job's %s (written by the job) to its page showing it, %d user%s watching (shared poll)"
                % (which, n, "" if n == 1 else "s") for n in (1, max(SIZES)) for which in ("start", "end")]
    options_row = "slurmctld RPCs of one squeue as the poll runs it (--users, --Format, --states=all)"
    if env is None or os.geteuid() != 0:
        for row in rows + lag_rows + [options_row]:
            table.na(row, why or "needs root (real users)")
        return
    seconds = 20 if quick else 45
    made = UnixUsers()
    runtime = make_runtime(os.path.join(work, "runtime"))
    try:
        users = [made.create(prefix="fjb") for _ in range(max(SIZES))]
        plain = rpcs_per_call(env, SQUEUE_POLL)
        local = rpcs_per_call(env, SQUEUE_POLL + ["--local"])
        table.add(options_row, "%.1f with --local" % local, "%.1f without (same run)" % plain,
                  "informational: the poll uses --local when it saves one" if local < plain
                  else "informational: --local saves nothing here")
        results = {}
        for shared in (False, True):
            for n in SIZES:
                app = make_app(runtime, env, shared)
                try:
                    log("poll: %d users, %s" % (n, "shared poll" if shared else "a poll per worker"))
                    results[shared, n] = rpcs_per_minute(env, app, users[:n], seconds)
                finally:
                    app.pool.stop_all()
        idle_before = rpc_total(env)
        time.sleep(seconds / 3)
        idle = (rpc_total(env) - idle_before) * 60.0 / (seconds / 3)
        after = [results[True, n][0] for n in SIZES]
        for n, row in zip(SIZES, rows):
            (per_worker, e1), (shared, e2) = results[False, n], results[True, n]
            failed = " (%d failed looks)" % (e1 + e2) if e1 + e2 else ""
            table.add(row, "%.0f with the shared poll%s" % (shared, failed),
                      "%.0f with a poll per worker (the old path, same run); %.0f with nobody watching"
                      % (per_worker, idle),
                      verdict(max(after) <= 1.1 * min(after) + 10 and shared <= 60,
                              "flat from 1 to 100 users (10 %), <= 60 a minute"))
        interval = flightjobd.SCHEMA["scheduler"]["refresh_interval"][0]
        for n in (1, max(SIZES)):
            app = make_app(runtime, env, True)
            try:
                log("poll: the time from a job's start and end to its page, %d users" % n)
                lags, missed = to_page(app, users[:n], 5)
            finally:
                app.pool.stop_all()
            for which in ("start", "end"):
                row = lag_rows.pop(0)
                if not lags[which]:
                    table.na(row, "no job was seen to %s" % which)
                    continue
                table.add(row, "p50 %.1f s, max %.1f s%s" % (
                    statistics.median(lags[which]), max(lags[which]), " (%d never shown)" % missed if missed else ""),
                    "scheduler.refresh_interval = %d s (the default), a look every %g s" % (interval, LOOK_EVERY),
                    verdict(statistics.median(lags[which]) <= 3 and max(lags[which]) <= 10 and not missed,
                            "p50 <= 3 s, max <= 10 s"))
    finally:
        made.remove_all()
