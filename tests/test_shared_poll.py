"""The shared status poll on the real Slurm cluster: one squeue (and at
most one sacct) per interval for all users, counted at the command boundary
and by slurmctld itself (sdiag); what scheduler.status_user does under
Slurm's PrivateData=jobs."""
import os
import re
import subprocess
import time

import pytest
import webtest

import flightjobd
from support import UnixUsers, merge

pytestmark = [pytest.mark.slurm, pytest.mark.root]

USERS = 20
INTERVAL = 1  # scheduler.refresh_interval of these apps
RPC_RE = re.compile(r"^\s*(REQUEST_\w+)\s+\(\s*\d+\)\s+count:(\d+)", re.M)


def sdiag(cluster):
    """slurmctld's RPC counts by message type."""
    text = cluster.run("sdiag")
    by_type = text.split("Remote Procedure Call statistics by message type")[1].split(
        "Remote Procedure Call statistics by user")[0]
    return {name: int(n) for name, n in RPC_RE.findall(by_type)}


class Many:
    """One multi-user app on the cluster; its users log in with HTTP Basic."""

    def __init__(self, runtime, cluster, **scheduler):
        values = merge({"server": {"multi_user": True}, "worker": runtime, "templates": {"site_dirs": []},
                        "scheduler": cluster.scheduler(refresh_interval=INTERVAL, **scheduler)}, {})
        self.app = flightjobd.make_app(flightjobd.Config(values))
        self.web = webtest.TestApp(self.app.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})

    def api(self, user, method, path, body=None, status=None):
        call = getattr(self.web, method.lower() + ("_json" if body is not None else ""))
        r = call(*((path, body) if body is not None else (path,)), headers=user.basic(), status=status)
        return r.json if r.body else None

    def submit(self, user, body):
        s = self.api(user, "POST", "/api/scripts", {"template": "serial", "name": "poll test"}, status=201)
        self.api(user, "PATCH", "/api/scripts/" + s["id"], {"content": "#!/bin/bash\n%s\n" % body})
        return self.api(user, "POST", "/api/jobs", {"script": s["id"], "answers": {}}, status=201)

    def wait(self, user, job, timeout=90):
        end = time.time() + timeout
        while True:
            job = self.api(user, "GET", "/api/jobs/" + job["id"])
            if job["state"] in flightjobd.FINISHED or time.time() > end:
                return job
            time.sleep(0.5)

    def close(self):
        self.app.pool.stop_all()


@pytest.fixture(scope="module")
def users(slurm_cluster, pam_service):
    slurm_cluster.ensure(accounting=True)
    u = UnixUsers()
    made = [u.create() for _ in range(USERS)]
    yield made
    for user in made:
        slurm_cluster.run("scancel", "--user", user.name)
    u.remove_all()


def test_twenty_users_watching_cost_one_squeue_per_interval(users, runtime, slurm_cluster):
    many = Many(runtime, slurm_cluster)
    try:
        jobs = [many.submit(user, "#SBATCH --hold\ntrue") for user in users]
        poll = many.app.pool.poll
        assert poll.wait_round(60)
        held = [many.api(user, "GET", "/api/jobs/" + job["id"]) for user, job in zip(users, jobs)]
        assert {(j["state"], j["reason_text"]) for j in held} == {("PENDING", "held by the user")}
        counted, rpcs, start = dict(poll.counters), sdiag(slurm_cluster), time.monotonic()
        while time.monotonic() - start < 8:  # every user keeps their job's page open
            for user, job in zip(users, jobs):
                many.api(user, "GET", "/api/jobs/" + job["id"])
            time.sleep(0.5)
        window = time.monotonic() - start
        after, rpcs_after = dict(poll.counters), sdiag(slurm_cluster)
        polls = after["polls"] - counted["polls"]
        calls = {c: after.get(c, 0) - counted.get(c, 0) for c in ("squeue", "sacct", "scontrol", "sacctmgr")}
        # one squeue a poll (none of the workers asked), a poll an interval
        assert 1 <= polls <= window / INTERVAL + 1 and calls["squeue"] == polls, (polls, calls)
        assert calls["sacct"] <= polls and calls["scontrol"] == calls["sacctmgr"] == 0, calls
        for user in users:
            mine = many.app.pool.call(user.name, "jobs.take_statuses", {})
            assert "squeue" not in mine["calls"] and "sacct" not in mine["calls"], mine
        # slurmctld's own count: job-info RPCs of all kinds, not one per user
        job_info = sum(rpcs_after.get(k, 0) - rpcs.get(k, 0) for k in rpcs_after if k.startswith("REQUEST_JOB_INFO"))
        assert job_info <= polls + 2, (job_info, polls, rpcs_after)
    finally:
        many.close()


def private_data(cluster, value):
    """Set (or with None remove) PrivateData in the running cluster's slurm.conf."""
    with open(cluster.conf) as f:
        lines = [line for line in f if not line.startswith("PrivateData=")]
    if value:
        lines.append("PrivateData=%s\n" % value)
    # whole or not at all: slurmd may still be reading the file for the last
    # reconfigure (a truncated slurm.conf is fatal to it: seen under load)
    part = cluster.conf + ".part"
    with open(part, "w") as f:
        f.writelines(lines)
    os.chmod(part, 0o644)
    os.replace(part, cluster.conf)
    subprocess.run(["scontrol", "reconfigure"], check=True, capture_output=True, timeout=60,
                   env=dict(os.environ, SLURM_CONF=cluster.conf))


@pytest.mark.parametrize("status_user, shared", [("nobody", False), ("root", True), ("slurm", True), ("operator", True)])
def test_private_data_jobs_and_the_status_user(users, runtime, slurm_cluster, status_user, shared):
    """With PrivateData=jobs "nobody" sees no one's jobs: the poll says so
    and every user's worker polls for itself (jobs still end right); root,
    the SlurmUser (the test cluster's is `slurm`, not root, as a site's) or
    a dedicated account made a Slurm operator sees them all and the shared
    poll serves: no worker polls for its user."""
    config = slurm_cluster.run("scontrol", "show", "config")
    slurm_user = re.search(r"^SlurmUser\s*=\s*(\w[\w.-]*)\((\d+)\)", config, re.M)
    assert slurm_user and slurm_user.group(2) != "0", "the SlurmUser is root: its case would be root's"
    if status_user == "slurm":
        status_user = slurm_user.group(1)  # as the README advises, the name scontrol gives
    elif status_user == "operator":
        status_user = users[6].name  # one of the users, but not one whose jobs are polled here
        subprocess.run([slurm_cluster.script, "add-user", status_user], check=True, capture_output=True, timeout=60)
        slurm_cluster.run("sacctmgr", "-i", "modify", "user", status_user, "set", "adminlevel=operator")
        assert slurm_cluster.run("sacctmgr", "-n", "-P", "show", "user", status_user,
                                 "format=adminlevel").strip() == "Operator"
    private_data(slurm_cluster, "jobs")
    assert "jobs" in re.search(r"^PrivateData\s*=\s*(.*)$", slurm_cluster.run("scontrol", "show", "config"), re.M).group(1)
    many = Many(runtime, slurm_cluster, status_user=status_user)
    try:
        user, other = users[0], users[1]
        jobs = [(u, many.submit(u, "sleep 2; exit 3")) for u in (user, other)]
        for u, job in jobs:
            job = many.wait(u, job)
            assert (job["state"], job["exit_code"]) == ("FAILED", 3), job
        poll = many.app.pool.poll
        # what each user's worker asked the scheduler itself
        asked = [many.app.pool.call(u.name, "jobs.take_statuses", {})["calls"] for u in (user, other)]
        if shared:
            assert poll.hidden[0] is None and poll.counters.get("squeue", 0) >= 1
            assert not any("squeue" in calls or "sacct" in calls for calls in asked), asked
        else:
            assert "PrivateData=jobs" in poll.hidden[0] and "status_user (nobody)" in poll.hidden[0]
            assert poll.counters.get("squeue", 0) == 0
            assert all(calls.get("squeue", 0) >= 1 for calls in asked), asked
    finally:
        many.close()
        private_data(slurm_cluster, None)
        if status_user == users[6].name:
            slurm_cluster.run("sacctmgr", "-i", "delete", "user", status_user)


def sbatch_as(cluster, user, *argv):
    """sbatch run by the user in a shell of their own, not through flightjobd."""
    r = subprocess.run(["runuser", "-u", user.name, "--", "env", "SLURM_CONF=" + cluster.conf,
                        "sbatch", "--parsable"] + list(argv), cwd=user.home,
                       capture_output=True, text=True, timeout=60, check=True)
    return r.stdout.strip().split(";")[0]


def test_a_job_submitted_outside_flightjobd_shows_and_is_followed(users, runtime, slurm_cluster):
    """The user's own sbatch jobs that the shared poll sees are on Monitor
    jobs, marked, with their state, times, output path and cancel; each is
    followed until it ends, with its true final state. Another user's
    outside job never shows for them."""
    many = Many(runtime, slurm_cluster, background_refresh=1)
    user, other = users[3], users[4]
    pages = webtest.TestApp(many.app.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    pages.post_json("/api/login", {"username": user.name, "password": user.password})
    try:
        long = sbatch_as(slurm_cluster, user, "--job-name=by hand", "--output=%s/hand-%%j.out" % user.home,
                         "--wrap=sleep 300")
        short = sbatch_as(slurm_cluster, user, "--job-name=fails", "--wrap=sleep 4; exit 3")
        theirs = sbatch_as(slurm_cluster, other, "--job-name=not yours", "--wrap=sleep 300")
        end = time.time() + 60
        while True:  # the user has Monitor jobs open
            listed = {j["scheduler_id"]: j for j in many.api(user, "GET", "/api/jobs")["jobs"]}
            if {long, short} <= set(listed) or time.time() > end:
                break
            time.sleep(0.5)
        assert {long, short} <= set(listed), listed
        assert theirs not in listed
        hand = listed[long]
        assert hand["origin"] == "outside" and hand["script_name"] == "by hand" and hand["script_id"] == ""
        assert hand["stdout_path"] == "%s/hand-%s.out" % (user.home, long)
        assert hand["state"] in flightjobd.UNFINISHED and hand["submitted_at"]
        text = pages.get("/jobs").text
        assert "by hand" in text and "(outside flightjobd)" in text
        page = pages.get("/jobs/" + hand["id"]).text
        assert "submitted outside flightjobd" in page and "Submit the script again" not in page
        assert "Cancel job" in page
        failed = many.wait(user, listed[short])
        assert (failed["state"], failed["exit_code"], failed["reason_text"]) == ("FAILED", 3, "exit code 3"), failed
        cancelled = many.api(user, "POST", "/api/jobs/%s/cancel" % hand["id"])
        cancelled = many.wait(user, cancelled)
        assert (cancelled["state"], cancelled["reason_text"]) == ("CANCELLED", "cancelled by the user"), cancelled
        # followed once: the polls after their ends (each would hand them over again) make no second record
        for _ in range(3):
            assert many.app.pool.poll.wait_round(60)
        ids = [j["scheduler_id"] for j in many.api(user, "GET", "/api/jobs?per_page=500")["jobs"]]
        assert ids.count(long) == 1 and ids.count(short) == 1
    finally:
        many.close()
        slurm_cluster.run("scancel", long, short, theirs)


def test_a_failing_array_never_stalls_another_user_s_jobs(users, runtime, slurm_cluster):
    """Issue 26, 1: a 42-task array whose tasks all fail rolls up a reason
    of ~1,100 characters, past a status's bound: root refused the whole
    poll answer every round, and another user's finished job stayed
    "PENDING, submitted". Now the reason is cut to its bound; the other
    user's job ends COMPLETED and the array FAILED, and the other user is
    answered all along."""
    many = Many(runtime, slurm_cluster, background_refresh=1)
    attacker, other = users[5], users[6]
    try:
        array = many.submit(attacker, "#SBATCH --array=1-42\nexit 101")
        job = many.submit(other, "true")
        job = many.wait(other, job)
        assert (job["state"], job["exit_code"]) == ("COMPLETED", 0), job
        array = many.wait(attacker, array, timeout=120)
        assert array["state"] == "FAILED" and len(array["tasks"]) == 42, array
        assert len(array["reason_text"]) == flightjobd.STATUS_TEXT and array["reason_text"].endswith("…")
        assert array["reason_text"].startswith("task %s_1: exit code 101; " % array["scheduler_id"])
        assert many.app.pool.poll.counters["failed"] == 0
    finally:
        many.close()


def test_cancelled_pending_arrays_never_blow_the_poll_s_answer(users, runtime, slurm_cluster):
    """Issue 26, 2: a pending 1,001-task array cancelled is one sacct row
    that expands to 1,001 tasks (~123 KB of status): 8 of them were past
    a 768 KiB worker.max_message and failed the poll for everyone. Now one
    user's statuses take at most their share of half of it: the other
    user's job ends COMPLETED; the arrays are CANCELLED, those past the
    share with their tasks cut (the last entry counting the rest) or left
    for a later round, saying why."""
    many = Many(runtime, slurm_cluster, background_refresh=1)
    many.app.config["worker"]["max_message"] = 768 << 10
    attacker, other = users[7], users[8]
    try:
        arrays = [many.submit(attacker, "#SBATCH --array=0-1000\n#SBATCH --hold\ntrue") for _ in range(8)]
        ids = [many.api(attacker, "GET", "/api/jobs/" + a["id"])["scheduler_id"] for a in arrays]
        slurm_cluster.run("scancel", *ids)  # outside flightjobd: only the poll tells
        job = many.wait(other, many.submit(other, "true"))
        assert (job["state"], job["exit_code"]) == ("COMPLETED", 0), job
        end, seen = time.time() + 60, []
        while time.time() < end:
            seen = [many.api(attacker, "GET", "/api/jobs/" + a["id"]) for a in arrays]
            if all(a["state"] == "CANCELLED" and a["tasks"] for a in seen):
                break
            time.sleep(1)
        assert all(a["state"] == "CANCELLED" for a in seen), [(a["state"], a["reason_text"], len(a["tasks"])) for a in seen]
        # each array's share of a half of 768 KiB: some hundreds of tasks listed, then one entry counting the
        # rest; or all 1,001 whole, when its final status came in a round with room for it (fewer competing)
        assert all(100 < len(a["tasks"]) < 1001 and a["tasks"][-1]["reason_text"] == "%d more tasks, not listed here"
                   % (1002 - len(a["tasks"])) or [t["id"] for t in a["tasks"]] == [
                       "%s_%d" % (a["scheduler_id"], n) for n in range(1001)] for a in seen), [
            (a["scheduler_id"], len(a["tasks"]), a["tasks"][-1], a["tasks"][:2]) for a in seen]
        assert any(len(a["tasks"]) < 1001 for a in seen)  # not all fitted whole: the share cut some
        assert many.app.pool.poll.counters["failed"] == 0
    finally:
        many.close()
