"""The Slurm adapter against a real single-node cluster, as real users
through the web app and their workers. Slow jobs (the time limit) are
submitted first, so that the waits overlap."""
import os
import subprocess
import time

import pytest
import webtest

import flightjobd
from support import Http, UnixUsers, merge, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.root]

# The no-accounting cluster's MinJobAge: how long slurmctld keeps a finished
# job (then it forgets it at its next purge, at most 60 s later). A daemon
# stopped while a job ends must be back within it: 30 s is a generous window.
MIN_JOB_AGE = 30


def slurm_state(cluster, scheduler_id):
    """The job's state in slurmctld now, as root sees it; "" once slurmctld
    has forgotten the job; None when squeue failed otherwise."""
    r = subprocess.run(["squeue", "--noheader", "--states=all", "--jobs", scheduler_id, "--format=%T"],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, SLURM_CONF=cluster.conf))
    if r.returncode == 0:
        return r.stdout.strip()
    return "" if "Invalid job id specified" in r.stderr else None


def wait_slurm_state(cluster, scheduler_id, state, timeout):
    wait_for(lambda: slurm_state(cluster, scheduler_id) == state, timeout,
             "slurmctld showing job %s as %r" % (scheduler_id, state), interval=1)


class Site:
    """One multi-user app on the cluster and one real user, logged in with
    HTTP Basic (as curl -u would)."""

    def __init__(self, runtime, cluster, user, **sections):
        values = merge({"server": {"multi_user": True}, "worker": runtime,
                        "scheduler": cluster.scheduler(), "templates": {"site_dirs": []}}, sections)
        self.app = flightjobd.make_app(flightjobd.Config(values))
        self.web = webtest.TestApp(self.app.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
        self.user = user
        self.pages = webtest.TestApp(self.app.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
        self.pages.post_json("/api/login", {"username": user.name, "password": user.password})

    def api(self, method, path, body=None, status=None):
        call = getattr(self.web, method.lower() + ("_json" if body is not None else ""))
        args = (path, body) if body is not None else (path,)
        r = call(*args, headers=self.user.basic(), status=status)
        return r.json if r.body else None

    def script(self, body, directives="", template="serial"):
        s = self.api("POST", "/api/scripts", {"template": template, "name": "slurm test"}, status=201)
        content = "#!/bin/bash\n#SBATCH --output=job-%%j.out\n%s\n%s\n" % (directives, body)
        self.api("PATCH", "/api/scripts/" + s["id"], {"content": content})
        return s["id"]

    def submit(self, body, directives="", answers=None):
        return self.api("POST", "/api/jobs", {"script": self.script(body, directives),
                                              "answers": answers or {}}, status=201)

    def wait(self, job, until=flightjobd.FINISHED, timeout=120, detail=False):
        """The job once its state is in `until` (and, with detail, once
        sacct's whole record is in: no longer detail_pending)."""
        end = time.time() + timeout
        while True:
            job = self.api("GET", "/api/jobs/" + job["id"])
            if job["state"] in until and not (detail and job.get("detail_pending")) or time.time() > end:
                return job
            time.sleep(0.5)

    def polled(self):
        """After the shared status poll's next whole round (the poll runs in
        the background: pages never wait on the scheduler)."""
        assert self.app.pool.poll.wait_round(90), "no status poll came"

    def close(self):
        self.app.pool.stop_all()


@pytest.fixture(scope="module")
def site(slurm_cluster, runtime, pam_service):
    slurm_cluster.ensure(accounting=True)
    users = UnixUsers()
    s = Site(runtime, slurm_cluster, users.create())
    s.slow = s.submit("echo start; sleep 300", answers={"time": "1"})  # a one-minute limit
    yield s
    s.close()
    slurm_cluster.run("scancel", "--user", s.user.name)
    users.remove_all()


def test_partitions_come_from_the_scheduler(site):
    sid = site.script("true")
    sub = site.api("GET", "/api/scripts/%s/submission" % sid)
    part = [q for q in sub["questions"] if q["id"] == "partition"][0]
    assert {"debug", "long"} <= {o["value"] for o in part["options"]}
    assert "debug (default), up to 1:00:00" in [o["label"] for o in part["options"]]


def test_submit_page_shows_free_cores_and_offers_only_usable_partitions(site):
    """Will it start soon: each partition the user may use with its free and
    total cores, nodes and GPUs and the jobs waiting, from the shared poll's
    one summary; "staff" (AllowGroups=root) is not offered, and a submit
    naming it is refused naming the field (Open OnDemand #3932 offered it)."""
    sid = site.script("true")
    wait_for(lambda: (site.api("GET", "/api/scripts/%s/submission" % sid)["cluster"] or {}).get("shared"), 30,
             "the shared poll's partition summary")
    sub = site.api("GET", "/api/scripts/%s/submission" % sid)
    parts = {p["name"]: p for p in sub["cluster"]["partitions"]}
    assert {"debug", "long"} <= set(parts) and "staff" not in parts
    cores = int(subprocess.run(["sinfo", "--noheader", "--Node", "--partition=debug", "--format=%c"],
                               capture_output=True, text=True, timeout=60, check=True,
                               env=dict(os.environ, SLURM_CONF=site.app.config["scheduler"]["environment"]["SLURM_CONF"])
                               ).stdout.split()[0])
    debug = parts["debug"]
    assert debug["cpus_total"] == cores and 0 <= debug["cpus_free"] <= cores and debug["nodes_total"] == 1
    assert debug["default"] and debug["state"] == "up" and debug["waiting"] >= 0 and debug["gpus_total"] == 0
    part = [q for q in sub["questions"] if q["id"] == "partition"][0]
    assert "staff" not in [o["value"] for o in part["options"]]
    page = site.pages.get("/scripts/%s/submit" % sid)
    row = page.html.select_one('[data-cluster] tr[data-partition="debug"]')
    assert row.select_one('[data-field="cores"]').text.endswith("of %d" % cores)
    assert not page.html.select('option[value="staff"]') and "the same figures for every user" in page.text
    r = site.api("POST", "/api/jobs", {"script": sid, "answers": {"partition": "staff"}}, status=422)
    assert "partition" in r["error"]["fields"]
    assert site.app.pool.poll.counters.get("partitions", 0) >= 1


def test_job_completes_with_accounting_details(site):
    job = site.submit("echo hello from $SLURM_JOB_ID; sleep 2", answers={"mem": "200M"})
    assert job["scheduler"] == "slurm" and job["scheduler_id"].isdigit()
    assert job["command"][:2] == ["sbatch", "--parsable"] and "--mem=200M" in job["command"]
    job = site.wait(job, detail=True)
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0)
    assert job["started_at"] and job["ended_at"] and job["elapsed_s"] >= 2
    assert job["requested_mem_mb"] == 200 and job["max_rss_mb"] is not None
    out = site.web.get("/api/jobs/%s/output/stdout" % job["id"], headers=site.user.basic()).text
    assert out == "hello from %s\n" % job["scheduler_id"]
    files = site.api("GET", "/api/jobs/%s/files" % job["id"])["files"]
    assert files[0]["name"] == "job-%s.out" % job["scheduler_id"]
    assert os.stat(job["stdout_path"]).st_uid == site.user.uid  # written by the job, as the user
    page = site.pages.get("/jobs/" + job["id"])
    assert "Completed" in page.text and "Efficiency" in page.text and "of 200 MiB asked for" in page.text


def test_memory_of_a_multi_task_job_is_all_its_tasks(site):
    """srun -n 4, each task holding 100 MB: the job used ~400 MB, not the
    ~100 MB of one task that MaxRSS says (reportseff's bug #41)."""
    job = site.submit("srun -n 4 python3 -c 'a = b\"1\" * (100 << 20); import time; time.sleep(4)'",
                      directives="#SBATCH --ntasks=4", answers={"mem": "4G"})
    job = site.wait(job, detail=True)
    eff = job["efficiency"]
    seen = (job["state"], job.get("mem_used_mb"), job.get("mem_tasks"), job.get("max_rss_mb"), eff)
    assert job["state"] == "COMPLETED" and eff is not None, (seen, site_sacct(site, job["scheduler_id"]))
    assert 380 <= eff["mem_used_mb"] <= 560 and job["mem_tasks"] == 4, (seen, site_sacct(site, job["scheduler_id"]))
    assert 95 <= eff["max_task_rss_mb"] <= 150  # one task's peak
    assert eff["mem_requested_mb"] == 4096 and eff["alloc_cpus"] == 4
    assert eff["advice"][0].startswith("Used ") and "of the 4 GiB asked for: next time ~" in eff["advice"][0]
    page = site.pages.get("/jobs/" + job["id"])
    assert "the peaks of the 4 tasks of its largest step added up" in page.text
    assert page.html.select_one('[data-field="mem_used"]').text == flightjobd.mem_words(eff["mem_used_mb"])


def test_cpu_efficiency_of_a_busy_and_an_idle_job(site):
    """CPU time / (run time x CPUs): a CPU-bound job near 100 %, a sleeping
    one holding 2 CPUs near 0 %, told it used less than 1 of 2 cores; both
    as columns on Monitor jobs."""
    busy = site.submit("timeout 8 sh -c 'while :; do :; done'; true")
    idle = site.submit("sleep 8", directives="#SBATCH --cpus-per-task=2")
    busy, idle = site.wait(busy, detail=True), site.wait(idle, detail=True)
    eb, ei = busy["efficiency"], idle["efficiency"]
    # a busy loop gets what the machine spares (a shared 2-CPU machine, and sacct samples CPU time):
    # not 100 %, but far from the idle job's <= 5 %
    assert eb and eb["alloc_cpus"] == 1 and eb["cpu_percent"] >= 25, (busy, site_sacct(site, busy["scheduler_id"]))
    assert ei and ei["alloc_cpus"] == 2 and ei["cpu_percent"] <= 5, (idle, site_sacct(site, idle["scheduler_id"]))
    assert "Used less than 1 of 2 cores" in ei["advice"][-1]
    assert eb["time_limit_s"] == 3600 and eb["time_percent"] <= 1  # the template's one-hour default
    rows = {tr["data-job"]: tr for tr in site.pages.get("/jobs").html.select("tr[data-job]")}
    for job, eff in ((busy, eb), (idle, ei)):
        assert rows[job["id"]].select_one('[data-field="cpu_percent"]').text == "%g %%" % round(eff["cpu_percent"])


def test_a_template_job_runs_in_a_folder_of_its_own(site):
    """A script as the serial template made it runs each job in
    <working dir>/<script name>-<n>, made before sbatch: Slurm's WorkDir
    and StdOut are there, and each job's listing is its own output only."""
    work = os.path.join(site.user.home, "folders")
    subprocess.run(["runuser", "-u", site.user.name, "--", "mkdir", work], check=True)
    sid = site.api("POST", "/api/scripts", {"template": "serial", "name": "per job",
                                            "answers": {"working_dir": work}}, status=201)["id"]
    jobs = [site.wait(site.api("POST", "/api/jobs", {"script": sid, "answers": {}}, status=201)) for _ in (1, 2)]
    for n, job in enumerate(jobs, 1):
        sched = job["scheduler_id"]
        folder = os.path.join(work, "per-job-%d" % n)
        assert job["state"] == "COMPLETED" and job["results_dir"] == folder
        shown = site.api("GET", "/api/jobs/%s/files" % job["id"])["files"]
        assert [f["name"] for f in shown] == ["job-%s.out" % sched]
        # slurmdbd may not have the job's record yet when the daemon saw it end (a loaded CI run did so)
        asked = wait_for(lambda: subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", sched, "-o", "WorkDir"], capture_output=True, text=True, timeout=60,
            env=dict(os.environ, SLURM_CONF=site.app.config["scheduler"]["environment"]["SLURM_CONF"])).stdout.strip(),
            what="sacct's record of job %s" % sched, interval=0.5)
        assert asked == folder
    assert sorted(os.listdir(work)) == ["per-job-1", "per-job-2"]


def test_a_job_runs_as_from_the_users_login_shell(site):
    """sbatch runs in the user's login environment, with the login umask
    (login.defs here): the job's umask, PATH and what the user's profile
    sets are those of the same script sbatch'd from `runuser -l USER`."""
    home, name = site.user.home, site.user.name
    subprocess.run(["runuser", "-u", name, "--", "sh", "-c", "echo 'export FJ_PROFILE=read' >> %s/.profile" % home],
                   check=True)
    body = 'echo "umask=$(umask) PATH=$PATH profile=${FJ_PROFILE:-none}"'
    ours = site.wait(site.submit(body))
    with open(ours["stdout_path"]) as f:
        seen = f.read().strip()
    script = os.path.join(home, "by-hand.sh")
    with open(script, "w") as f:
        f.write("#!/bin/bash\n%s\n" % body)
    os.chmod(script, 0o755)
    with open("/etc/login.defs") as f:  # what a login's umask is on this machine (no pam_umask here: login.defs')
        login = int(([line.split()[1] for line in f if line.split()[:1] == ["UMASK"]] or ["022"])[-1], 8)
    conf = site.app.config["scheduler"]["environment"]["SLURM_CONF"]
    out = os.path.join(home, "by-hand.out")
    subprocess.run(["runuser", "-l", name, "-c", "SLURM_CONF=%s sbatch --output=%s %s" % (conf, out, script)],
                   check=True, capture_output=True, umask=login, cwd="/")
    theirs = wait_for(lambda: os.path.exists(out) and open(out).read().strip(), 60, "the job sbatch'd by hand")
    assert seen == theirs and "profile=read" in seen and "umask=%04o" % login in seen, (seen, theirs)


def test_nonzero_exit(site):
    job = site.wait(site.submit("exit 3"))
    assert (job["state"], job["exit_code"], job["reason_text"], job["raw_state"]) == ("FAILED", 3, "exit code 3", "FAILED")


def site_sacct(site, scheduler_id):
    """What sacct says of a job now, every row (for a failure's message)."""
    return subprocess.run(["sacct", "--parsable2", "--jobs", scheduler_id, "--format=" + flightjobd.SACCT_FORMAT],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, SLURM_CONF=site.app.config["scheduler"]["environment"]["SLURM_CONF"])).stdout


def test_out_of_memory(site):
    """The test cluster has no cgroups: JobAcctGatherParams=OverMemoryKill
    kills the job by SIGKILL, and sacct's MaxRSS above the request tells
    it was memory (once slurmdbd has the record: the job is FAILED at once,
    its reason comes with sacct's detail)."""
    job = site.wait(site.submit("python3 -c 'a = bytearray(700 << 20); import time; time.sleep(20)'",
                                answers={"mem": "100M"}), detail=True)
    seen = {k: job.get(k) for k in ("state", "raw_state", "reason_text", "signal", "max_rss_mb",
                                    "requested_mem_mb", "detail_pending", "ended_at")}
    assert job["state"] == "FAILED" and job["reason_text"] == "ran out of memory", (
        seen, site_sacct(site, job["scheduler_id"]))


def test_more_memory_than_the_node_has_is_refused_at_submit(site):
    job = site.submit("true", answers={"mem": "100000000M"})
    assert job["state"] == "FAILED" and job["raw_state"] == "REFUSED"
    assert "Memory specification can not be satisfied" in job["reason_text"]
    page = site.pages.get("/jobs/" + job["id"])
    assert "Memory specification can not be satisfied" in page.text
    # titled by its script, with the way back to the form: the answers kept, sbatch's words beside Memory
    assert page.html.h1.text.split("\n")[0].strip() == "slurm test (not submitted)"
    assert page.html.title.text.startswith("slurm test (not submitted)")
    back = page.click(linkid="again-with-answers")
    assert back.html.select_one("#again-with-answers") is None and "Edit the answers and submit again" in page.text
    field = back.html.select_one("#field-mem")
    assert "Memory specification can not be satisfied" in field.select_one(".field-error").text
    assert back.html.select_one("#q_mem")["value"] == "100000000M"
    assert not back.html.select_one("#field-time .field-error")
    row = site.pages.get("/jobs").html.find("tr", attrs={"data-job": job["id"]})
    assert "slurm test (not submitted)" in row.text and job["id"] not in row.text


def test_cancel_pending_job_with_an_estimated_start(site):
    job = site.wait(site.submit("true", "#SBATCH --begin=now+1hour"), until=("PENDING",))
    site.polled()
    job = site.api("GET", "/api/jobs/" + job["id"])
    assert job["state"] == "PENDING" and job["reason_text"] == "waiting for its start time"
    assert flightjobd.parse_iso(job["estimated_start_at"]) > time.time() + 3000
    job = site.api("POST", "/api/jobs/%s/cancel" % job["id"])
    assert job["state"] == "CANCELLED" and job["started_at"] is None
    assert site.wait(job)["reason_text"] == "cancelled by the user"


def test_cancel_running_job(site):
    job = site.wait(site.submit("echo up; sleep 300"), until=("RUNNING",))
    assert job["state"] == "RUNNING" and job["started_at"]
    site.api("DELETE", "/api/jobs/" + job["id"], status=409)
    job = site.api("POST", "/api/jobs/%s/cancel" % job["id"])
    job = site.wait(job)
    assert job["state"] == "CANCELLED" and job["ended_at"]
    page = site.pages.get("/jobs/" + job["id"])
    assert "Time since cancellation" in page.text
    site.api("DELETE", "/api/jobs/" + job["id"], status=204)


def test_bulk_cancel_then_remove_and_search_by_job_name_and_id(site, slurm_cluster):
    """Issue 16: one request cancels a pending and a running job (each its
    own scancel, then one status call a round); the list finds them by the
    --job-name Slurm has and by scheduler id; one request removes both."""
    pending = site.submit("true", "#SBATCH --begin=now+1hour\n#SBATCH --job-name=bulk-pending")
    running = site.wait(site.submit("echo up; sleep 300", "#SBATCH --job-name=bulk-running"), until=("RUNNING",))
    assert site.api("GET", "/api/jobs/" + pending["id"])["job_name"] == "bulk-pending"
    found = site.api("GET", "/api/jobs?q=BULK-&sort=name&order=asc")["jobs"]
    assert [j["id"] for j in found] == [pending["id"], running["id"]]
    assert [j["id"] for j in site.api("GET", "/api/jobs?q=" + running["scheduler_id"])["jobs"]] == [running["id"]]
    done = site.api("POST", "/api/jobs/bulk", {"action": "cancel", "ids": [pending["id"], running["id"]]})
    assert [j["done"] for j in done["jobs"]] == [True, True]
    for job in (pending, running):
        assert site.wait(job)["state"] == "CANCELLED"
        wait_slurm_state(slurm_cluster, job["scheduler_id"], "CANCELLED", 60)
    gone = site.api("POST", "/api/jobs/bulk", {"action": "remove", "ids": [pending["id"], running["id"]]})
    assert [j["done"] for j in gone["jobs"]] == [True, True]
    assert site.api("GET", "/api/jobs?q=bulk-")["total"] == 0


def test_array_of_four_with_one_failing(site):
    job = site.wait(site.submit('echo "task $SLURM_ARRAY_TASK_ID"; [ "$SLURM_ARRAY_TASK_ID" != 3 ] || exit 2',
                                "#SBATCH --array=1-4\n#SBATCH --output=arr-%A_%a.out"))
    assert job["state"] == "FAILED" and "task %s_3: exit code 2" % job["scheduler_id"] in job["reason_text"], job
    states = {t["id"]: t["state"] for t in job["tasks"]}
    sid = job["scheduler_id"]
    assert states == {"%s_1" % sid: "COMPLETED", "%s_2" % sid: "COMPLETED",
                      "%s_3" % sid: "FAILED", "%s_4" % sid: "COMPLETED"}
    assert job["stdout_path"].endswith("arr-%s_1.out" % sid)
    names = [f["name"] for f in site.api("GET", "/api/jobs/%s/files" % job["id"])["files"]]
    assert {"arr-%s_%d.out" % (sid, i) for i in range(1, 5)} <= set(names)
    assert "Array tasks" in site.pages.get("/jobs/" + job["id"]).text


def test_imported_script_runs_where_it_is(site):
    """An imported script run where it is: sbatch gets --chdir to the file's
    directory, the job runs there and its output lands there (no copy);
    the submission's defaults are the file's #SBATCH lines; each submit
    reads the file as it is then."""
    data = os.path.join(site.user.home, "run in place")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "input.dat"), "w") as f:
        f.write("42\n")
    with open(os.path.join(data, "run.sh"), "w") as f:
        f.write("#!/bin/bash\n#SBATCH --output=here-%j.out\n#SBATCH --time=0-00:05:00\n#SBATCH --mem=100M\n"
                "pwd > where.txt\necho ran $(cat input.dat) on $SLURM_JOB_ID\n")
    for path in (data, os.path.join(data, "input.dat"), os.path.join(data, "run.sh")):
        os.chown(path, site.user.uid, site.user.gid)
    script = site.api("POST", "/api/import", {"path": "run in place/run.sh", "in_place": True}, status=201)
    sub = site.api("GET", "/api/scripts/%s/submission" % script["id"])
    defaults = {q["id"]: q["default"] for q in sub["questions"]}
    assert defaults["time"] == "0-00:05:00" and defaults["mem"] == "100M"
    job = site.api("POST", "/api/jobs", {"script": script["id"], "answers": {}}, status=201)
    assert "--chdir=" + data in job["command"] and job["run_in"] == data
    job = site.wait(job)
    assert job["state"] == "COMPLETED", job
    assert job["results_dir"] == data and job["stdout_path"] == os.path.join(data, "here-%s.out" % job["scheduler_id"])
    assert open(job["stdout_path"]).read() == "ran 42 on %s\n" % job["scheduler_id"]
    assert open(os.path.join(data, "where.txt")).read() == data + "\n"
    assert os.stat(job["stdout_path"]).st_uid == site.user.uid
    files = [f["name"] for f in site.api("GET", "/api/jobs/%s/files" % job["id"])["files"]]
    assert "here-%s.out" % job["scheduler_id"] in files and "input.dat" in files
    assert "Ran where it is" in site.pages.get("/jobs/" + job["id"]).text
    # changed where it is: the next job runs the new text
    with open(os.path.join(data, "run.sh"), "w") as f:
        f.write("#!/bin/bash\n#SBATCH --output=again-%j.out\necho again\n")
    again = site.wait(site.api("POST", "/api/jobs", {"script": script["id"], "answers": {}}, status=201))
    assert open(os.path.join(data, "again-%s.out" % again["scheduler_id"])).read() == "again\n"


def test_one_squeue_and_at_most_one_sacct_per_poll(site, slurm_cluster):
    sid = site.script("true", "#SBATCH --hold")
    jobs = [site.api("POST", "/api/jobs", {"script": sid, "answers": {}}, status=201) for _ in range(50)]
    site.api("GET", "/api/jobs")
    # the user's worker asks the scheduler nothing: the shared poll does
    before = site.app.pool.call(site.user.name, "jobs.take_statuses", {})
    site.polled()
    poll = site.app.pool.poll
    counted = dict(poll.counters)
    site.polled()
    after = site.app.pool.call(site.user.name, "jobs.take_statuses", {})
    assert {k: v for k, v in after["calls"].items() if v != before["calls"].get(k, 0)} == {}
    assert after["unfinished"] >= 50 and set(after["ids"]) >= {j["scheduler_id"] for j in jobs}
    polls = poll.counters["polls"] - counted["polls"]
    squeue, sacct = (poll.counters.get(c, 0) - counted.get(c, 0) for c in ("squeue", "sacct"))
    assert polls >= 2 and squeue == polls and sacct <= polls, poll.counters
    held = site.api("GET", "/api/jobs/" + jobs[0]["id"])
    assert held["state"] == "PENDING" and held["reason_text"] == "held by the user"
    slurm_cluster.run("scancel", *[j["scheduler_id"] for j in jobs])


def test_time_limit(site):
    """A time-out reads as one: TIMEOUT beside the words, no "Exit code 0"
    (Slurm's 0:15 is its SIGTERM, not the program's), found by "timeout"
    in the job list and labelled so there."""
    job = site.wait(site.slow, timeout=300, detail=True)  # a 1-minute limit, checked every 30 s
    assert (job["state"], job["raw_state"], job["reason_text"]) == ("FAILED", "TIMEOUT", "ran out of time")
    advice = job["efficiency"]["advice"]  # no memory was asked for: the node's default, and no advice on it
    assert advice[0].startswith("It ran out of time: it ran 0:01:") and "of its 0:01:00 limit" in advice[0], advice
    assert len(advice) == 1 and job["mem_asked"] is False
    memory = site.pages.get("/jobs/" + job["id"]).html.select_one('[data-field="mem_used"]').parent.text
    assert "of the node's default of 256 MiB" in memory, (memory, job["efficiency"])
    said = site_sacct(site, job["scheduler_id"]).splitlines()[1].split("|")
    assert said[2] == "TIMEOUT" and job["program_exit"] is None
    page = site.pages.get("/jobs/" + job["id"]).html
    assert page.find(attrs={"data-field": "raw_state"}).text == "TIMEOUT"
    assert page.find(attrs={"data-row": "exit_code"}).has_attr("hidden")
    assert "Failed — ran out of time" in page.find(attrs={"data-field": "state-text"}).text
    assert job["id"] in [j["id"] for j in site.api("GET", "/api/jobs?q=timeout")["jobs"]]
    listed = site.pages.get("/jobs?q=timeout").html.find("tr", attrs={"data-job": job["id"]})
    assert listed.find(attrs={"data-field": "state"}).text == "Failed · timeout"


def test_a_launch_failure_says_why(site, slurm_cluster):
    """A job whose output folder is gone when Slurm starts it: slurmd cannot
    open the file (squeue's exit_code 4021, sacct's 0:53, reason
    JobLaunchFailure). The page says so in words, naming the folder, and
    shows no "exit code 15"."""
    theirs = os.path.join(site.user.home, "not-mine")  # checked before submit, as the user: refused, no offer
    os.mkdir(theirs, 0o755)
    r = site.web.post_json("/api/jobs", {"script": site.script("true", "#SBATCH --output=%s/x.out" % theirs),
                                         "answers": {}, "make_folders": True}, headers=site.user.basic(), status=422)
    assert r.json["error"]["message"] == "The job would fail at launch: it could not write its output to %s/x.out: " \
        "the folder %s is not yours to write in." % (theirs, theirs)
    folder = os.path.join(site.user.home, "gone")
    subprocess.run(["runuser", "-u", site.user.name, "--", "mkdir", folder], check=True)
    job = site.submit("echo never", directives="#SBATCH --hold\n#SBATCH --output=%s/job-%%j.out" % folder)
    os.rmdir(folder)
    slurm_cluster.run("scontrol", "release", job["scheduler_id"])
    job = site.wait(job, detail=True)
    said = site_sacct(site, job["scheduler_id"]).splitlines()[1].split("|")
    assert (said[2], said[3]) == ("FAILED", "0:53"), said
    assert (job["state"], job["reason"], job["program_exit"]) == ("FAILED", "JobLaunchFailure", None)
    assert job["reason_text"] == "%s: could not write its output to %s/job-%s.out: the folder %s does not exist" % (
        flightjobd.LAUNCH_FAILURE, folder, job["scheduler_id"], folder), job
    page = site.pages.get("/jobs/" + job["id"]).text
    assert "does not exist" in page and "exit code 15" not in page.lower()


def test_controller_down_then_back(site, slurm_cluster):
    running = site.wait(site.submit("sleep 300"), until=("RUNNING",))
    subprocess.run([slurm_cluster.script, "stop-ctld"], check=True, capture_output=True)
    try:
        site.polled()
        listing = site.api("GET", "/api/jobs?per_page=500")
        assert listing["scheduler"]["ok"] is False and "Unable to contact slurm controller" in listing["scheduler"]["message"]
        assert {j["id"]: j["state"] for j in listing["jobs"]}[running["id"]] == "RUNNING"
        assert "The scheduler did not answer" in site.pages.get("/jobs/" + running["id"]).text
        refused = site.submit("true")
        assert refused["state"] == "FAILED" and refused["raw_state"] == "SUBMIT_FAILED"
        assert "the Slurm controller did not answer" in refused["reason_text"]
    finally:
        subprocess.run([slurm_cluster.script, "start-ctld"], check=True, capture_output=True)
    site.polled()
    job = site.api("GET", "/api/jobs/" + running["id"])
    assert job["state"] == "RUNNING" and job["scheduler_state"]["ok"] is True  # all recovers
    site.api("POST", "/api/jobs/%s/cancel" % running["id"])
    assert site.wait(running)["state"] == "CANCELLED"


def daemon_flow(make_daemon, runtime, slurm_cluster, user, **scheduler):
    d = make_daemon(server={"multi_user": True}, worker=runtime,
                    storage={"state_dir": "~/.local/share/flight-job"},
                    scheduler=slurm_cluster.scheduler(**scheduler))
    http = Http(d.url, user.name, user.password)
    s = http("POST", "/api/scripts", {"template": "serial"}, status=201)
    http("PATCH", "/api/scripts/" + s["id"], {"content": "#!/bin/bash\nsleep 2\nexit 5\n"}, status=200)
    return d, http, http("POST", "/api/jobs", {"script": s["id"], "answers": {}}, status=201)


def looked_at(http, job, timeout=60):
    """The job as its page shows it once the restarted daemon's status poll
    has come round (within a few refresh intervals)."""
    end = time.time() + timeout
    while True:
        job = http("GET", "/api/jobs/" + job["id"])
        if job["state"] in flightjobd.FINISHED or time.time() > end:
            return job
        time.sleep(0.5)


def test_job_that_ends_while_the_daemon_is_stopped(site, make_daemon, runtime, slurm_cluster):
    d, http, job = daemon_flow(make_daemon, runtime, slurm_cluster, site.user)
    d.stop()
    wait_slurm_state(slurm_cluster, job["scheduler_id"], "FAILED", 180)  # ends while nobody looks
    d.start()
    job = looked_at(http, job)
    assert (job["state"], job["exit_code"], job["reason_text"]) == ("FAILED", 5, "exit code 5")


# without accounting (the cluster is restarted without slurmdbd): these
# run after every other test of the session (the no_accounting marker), so
# the cluster is reconfigured once


@pytest.fixture(scope="module")
def plain_site(slurm_cluster, runtime, pam_service):
    slurm_cluster.ensure(accounting=False, min_job_age=MIN_JOB_AGE)
    users = UnixUsers()
    s = Site(runtime, slurm_cluster, users.create())
    yield s
    s.close()
    slurm_cluster.run("scancel", "--user", s.user.name)
    users.remove_all()


@pytest.mark.no_accounting
def test_without_accounting_states_come_from_squeue(plain_site):
    job = plain_site.wait(plain_site.submit("echo hi; exit 3"))
    assert (job["state"], job["exit_code"]) == ("FAILED", 3)
    calls = plain_site.app.pool.poll.counters
    assert calls.get("squeue", 0) >= 1 and "sacct" not in calls


@pytest.mark.no_accounting
def test_without_accounting_a_stopped_daemon_still_gets_the_true_state(plain_site, make_daemon, runtime, slurm_cluster):
    d, http, job = daemon_flow(make_daemon, runtime, slurm_cluster, plain_site.user)
    d.stop()
    wait_slurm_state(slurm_cluster, job["scheduler_id"], "FAILED", 180)  # ends while nobody looks
    d.start()  # back well within MinJobAge, while slurmctld still has the job
    job = looked_at(http, job)
    assert (job["state"], job["exit_code"]) == ("FAILED", 5)


@pytest.mark.no_accounting
def test_background_refresh_catches_the_end_before_slurm_forgets(plain_site, make_daemon, runtime, slurm_cluster):
    d, http, job = daemon_flow(make_daemon, runtime, slurm_cluster, plain_site.user,
                               background_refresh=1, unknown_grace=0)
    # nobody looks: the job ends, and slurmctld forgets it (MinJobAge, then
    # its next purge of old jobs, at most 60 s later)
    wait_slurm_state(slurm_cluster, job["scheduler_id"], "", MIN_JOB_AGE + 240)
    job = http("GET", "/api/jobs/" + job["id"])
    assert (job["state"], job["exit_code"]) == ("FAILED", 5)


def test_activity_and_results_archive_on_slurm(site):
    """What a page's tab polls follows a Slurm job from running to its end
    (through the shared poll), and its results come back as one .zip
    written by the user's worker."""
    import io
    import zipfile
    job = site.submit('echo "result of $SLURM_JOB_ID" > "result-$SLURM_JOB_ID.txt"; sleep 5')

    def running():
        brief = site.api("GET", "/api/activity")
        return brief if any(j["id"] == job["id"] and j["state"] == "RUNNING" for j in brief["unfinished"]) else None
    brief = wait_for(running, 120, "the job running in /api/activity", interval=1)
    assert brief["counts"]["RUNNING"] >= 1  # the module's slow job may run too
    site.wait(job)
    ended = site.api("GET", "/api/activity?watch=" + job["id"])
    assert [(w["id"], w["state"]) for w in ended["watched"]] == [(job["id"], "COMPLETED")]
    assert job["id"] not in {j["id"] for j in ended["unfinished"]}
    sid = site.api("GET", "/api/jobs/" + job["id"])["scheduler_id"]
    chosen = ["result-%s.txt" % sid, "job-%s.out" % sid]
    r = site.web.post_json("/api/jobs/%s/archive" % job["id"], {"paths": chosen}, headers=site.user.basic())
    assert r.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.body)) as z:
        assert {i.filename: z.read(i) for i in z.infolist()} == {
            "result-%s.txt" % sid: ("result of %s\n" % sid).encode(), "job-%s.out" % sid: b""}


def test_submit_again_copy_and_own_template_on_slurm(site):
    """Issue 15's first two items on the cluster: a job submitted again with
    its answers runs with them in Slurm; a copy of the script and a script
    from the user's own template (saved from it) run as the original does."""
    script = site.script('echo "again from $SLURM_JOB_ID"')
    first = site.wait(site.api("POST", "/api/jobs", {"script": script, "answers": {"time": "0-00:07:00"}},
                               status=201))
    assert first["state"] == "COMPLETED" and flightjobd.parse_duration(first["time_limit"]) == 420, first
    again = site.api("GET", "/api/scripts/%s/submission?from_job=%s" % (script, first["id"]))
    answers = {q["id"]: q["default"] for q in again["questions"]}
    assert answers["time"] == "0-00:07:00" and again["from_job"]["scheduler_id"] == first["scheduler_id"]
    second = site.wait(site.api("POST", "/api/jobs", {"script": script, "answers": answers}, status=201))
    assert second["state"] == "COMPLETED" and flightjobd.parse_duration(second["time_limit"]) == 420, second
    assert "--time=0-00:07:00" in second["command"]
    copy = site.api("POST", "/api/scripts/%s/copy" % script, {"name": "slurm copy"}, status=201)
    saved = site.api("POST", "/api/scripts/%s/save-as-template" % script, {"name": "My Slurm one"}, status=201)
    made = site.api("POST", "/api/scripts", {"template": saved["id"], "name": "from my template"}, status=201)
    for sid in (copy["id"], made["id"]):
        job = site.wait(site.api("POST", "/api/jobs", {"script": sid, "answers": {}}, status=201))
        assert job["state"] == "COMPLETED", job
        out = site.web.get("/api/jobs/%s/output/stdout" % job["id"], headers=site.user.basic()).text
        assert ("again from %s" % job["scheduler_id"]) in out, out


def test_output_pattern_padding_is_bounded_as_slurm_bounds_it(site):
    """Issue 26, 8: `#SBATCH -o %999999999j` made the worker build a string
    of a billion characters. Slurm pads a number to at most 10 digits and a
    name not at all: the path flightjobd shows is the file Slurm wrote."""
    job = site.wait(site.submit("true", "#SBATCH --output=pad-%999999999j-%5x-%12A-%3s.out\n#SBATCH --job-name=abc"))
    sid = int(job["scheduler_id"])
    assert job["state"] == "COMPLETED" and job["stdout_path"] == os.path.join(
        job["results_dir"], "pad-%010d-abc-%010d-batch.out" % (sid, sid)), job
    assert os.path.exists(job["stdout_path"])
