"""A job is (scheduler, cluster, id) (issue 24), on the real cluster: two
daemons sharing one home (local and Slurm; two Slurm clusters under one
slurmdbd) each keep every job's own state and cancel only their own; a
plain sbatch job shows in a single-user daemon and is cancelled there;
where output goes is Slurm's word."""
import os
import subprocess

import pytest

from support import UnixUsers, wait_for
from test_slurm import Site

pytestmark = [pytest.mark.slurm, pytest.mark.root]


def sacct_state(cluster, name, scheduler_id):
    """The job's state in the accounting of cluster `name` (root's view)."""
    out = cluster.run("sacct", "--clusters=" + name, "--noheader", "--parsable2", "-X", "--jobs", scheduler_id,
                      "--format=State")
    return out.split()[0] if out.split() else ""


def job(site, jid):
    return site.api("GET", "/api/jobs/" + jid)


@pytest.fixture(scope="module")
def user(slurm_cluster, runtime, pam_service):
    slurm_cluster.ensure(accounting=True)
    users = UnixUsers()
    yield users.create()
    slurm_cluster.run("scancel", "--clusters=all", "--user", users.created[0])
    users.remove_all()


def test_local_and_slurm_daemons_sharing_a_home(slurm_cluster, runtime, user):
    """Slurm job N and local job N at once in one home: each daemon refreshes
    and cancels only its own, shows the other's read-only where it runs."""
    cluster = slurm_cluster.ensure(accounting=True)
    slurm = Site(runtime, cluster, user)
    local = Site(runtime, cluster, user, scheduler={"type": "local"})
    try:
        theirs = slurm.submit("sleep 300", "#SBATCH --hold")
        number = int(theirs["scheduler_id"])
        mine = local.submit("sleep 300")
        if int(mine["scheduler_id"]) < number:  # local ids count from 1: the user's counter set to Slurm's number
            local.api("POST", "/api/jobs/%s/cancel" % mine["id"])
            subprocess.run(["runuser", "-u", user.name, "--", "tee", os.path.join(
                user.home, ".local/share/flight-job/local/next_id")], input="%d\n" % number, text=True,
                capture_output=True, check=True, timeout=60)
            mine = local.submit("sleep 300")
        assert mine["scheduler_id"] == theirs["scheduler_id"]
        wait_for(lambda: job(local, mine["id"])["state"] == "RUNNING", 60, "the local job running")
        slurm.polled()
        slurm.polled()
        local.api("POST", "/api/jobs/%s/hold" % theirs["id"], status=409)
        for site in (local, slurm):  # each keeps each job's own state, whoever refreshes
            assert (job(site, theirs["id"])["state"], job(site, theirs["id"])["reason"]) == ("PENDING", "JobHeldUser")
            assert job(site, mine["id"])["state"] == "RUNNING"
        foreign = job(slurm, mine["id"])
        assert foreign["managed"] is False and foreign["where"] == "on machine %s" % os.uname().nodename
        assert job(local, theirs["id"])["where"] == "on cluster flightjob" and job(slurm, theirs["id"])["managed"]
        page = slurm.pages.get("/jobs/" + mine["id"])
        assert page.html.find(id="not-managed") and "/jobs/%s/cancel" % mine["id"] not in page.text
        row = slurm.pages.get("/jobs").html.select_one('tr[data-job="%s"] [data-where]' % mine["id"])
        assert row.text == "(on machine %s, read-only)" % os.uname().nodename
        r = slurm.api("POST", "/api/jobs/%s/cancel" % mine["id"], status=409)
        assert "on machine" in r["error"]["message"]
        local.api("POST", "/api/jobs/%s/cancel" % theirs["id"], status=409)
        bulk = local.api("POST", "/api/jobs/bulk", {"ids": [theirs["id"], mine["id"]], "action": "cancel"})
        assert [j["done"] for j in bulk["jobs"]] == [False, True]
        wait_for(lambda: sacct_state(cluster, "flightjob", theirs["scheduler_id"]) == "PENDING", 30, "sacct")
        assert slurm.api("POST", "/api/jobs/%s/cancel" % theirs["id"])["state"] == "CANCELLED"
        wait_for(lambda: sacct_state(cluster, "flightjob", theirs["scheduler_id"]) == "CANCELLED", 30, "sacct")
        assert job(local, mine["id"])["state"] == "CANCELLED" and job(slurm, mine["id"])["state"] == "CANCELLED"
    finally:
        slurm.close()
        local.close()


@pytest.fixture()
def second(slurm_cluster):
    """A second cluster "second" beside the first, under its slurmdbd, its
    job numbers from the first's next one (a job of root's tells it)."""
    cluster = slurm_cluster.ensure(accounting=True)
    taken = cluster.run("sbatch", "--parsable", "--hold", "--chdir=/tmp", "--output=/dev/null", "--wrap", "true")
    cluster.run("scancel", taken.strip())
    conf = slurm_cluster.start_second("second", int(taken.strip()) + 1)
    yield conf
    slurm_cluster.stop_second("second")


def test_two_clusters_sharing_a_home(slurm_cluster, runtime, user, second):
    """Job N on cluster flightjob and job N on cluster second, in one home,
    one daemon on each cluster: both serve both (one slurmdbd), each job
    keeps its own state, a cancel reaches only its own job (sacct of both
    clusters); the submit page offers the clusters; a plain sbatch job on
    the other cluster is taken in as an outside job of that cluster."""
    cluster = slurm_cluster
    first = Site(runtime, cluster, user, scheduler={"unknown_grace": 0})  # a job missing once is UNKNOWN
    other = Site(runtime, cluster, user, scheduler={"environment": {"SLURM_CONF": second}})
    try:
        sid = first.script("sleep 300")
        question = [q for q in first.api("GET", "/api/scripts/%s/submission" % sid)["questions"]
                    if q["id"] == "clusters"][0]
        assert [o["value"] for o in question["options"]] == ["", "second"]
        page = first.pages.get("/scripts/%s/submit" % sid)  # the page asks, the cluster's own by default
        assert [o.text for o in page.html.select("select#q_clusters option")] == ["flightjob (this cluster)", "second"]
        a = first.api("POST", "/api/jobs", {"script": sid, "answers": {}}, status=201)
        assert a["cluster"] == "flightjob"
        b = other.submit("sleep 300")  # the second cluster counts from the first's next number
        assert b["cluster"] == "second" and a["scheduler_id"] == b["scheduler_id"]
        number = a["scheduler_id"]
        c = first.api("POST", "/api/jobs", {"script": sid, "answers": {"clusters": "second"}}, status=201)
        assert c["cluster"] == "second" and "--clusters=second" in c["command"]
        r = first.api("POST", "/api/jobs", {"script": sid, "answers": {"clusters": "second"},
                                            "after": {"job": a["id"], "type": "afterany"}}, status=422)
        assert "another cluster" in r["error"]["fields"]["after_job"]  # job N there is another job
        for site in (first, other):
            site.polled()
            got = {j: job(site, x["id"]) for j, x in (("a", a), ("b", b), ("c", c))}
            assert got["a"]["where"] == "on cluster flightjob" and got["b"]["where"] == "on cluster second"
            assert all(g["managed"] and g["state"] in ("PENDING", "RUNNING") for g in got.values()), got
        outside = cluster.run("runuser", "-u", user.name, "--", "sbatch", "--parsable", "--clusters=second",
                              "--chdir=/tmp", "--output=/dev/null", "--wrap", "sleep 300").strip()
        assert outside.endswith(";second")

        def taken():
            first.polled()
            return [j for j in first.api("GET", "/api/jobs?per_page=100")["jobs"]
                    if j.get("scheduler_id") == outside.split(";")[0] and j.get("origin") == "outside"]
        wait_for(taken, 120, "the outside job on cluster second taken in", interval=0)
        taken_in = job(first, taken()[0]["id"])
        assert taken_in["cluster"] == "second" and taken_in["where"] == "on cluster second"
        subprocess.run([cluster.script, "stop-ctld", "second"], check=True, capture_output=True, timeout=120)
        try:  # squeue -M a,b leaves a down cluster out, exit 0; asked on its own, its jobs are left as they were
            assert "second" not in cluster.run("squeue", "-M", "flightjob,second", "-h", "-O", "cluster,jobid")
            first.polled()
            first.polled()
            assert {job(first, x["id"])["state"] for x in (b, c, taken_in)} <= {"PENDING", "RUNNING"}
        finally:
            subprocess.run([cluster.script, "start-ctld", "second"], check=True, capture_output=True, timeout=120)
        assert first.api("POST", "/api/jobs/%s/cancel" % b["id"])["state"] == "CANCELLED"  # the other's job, here
        wait_for(lambda: sacct_state(cluster, "second", number) == "CANCELLED", 30, "sacct of second")
        assert sacct_state(cluster, "flightjob", number) in ("PENDING", "RUNNING")
        assert job(other, a["id"])["state"] in ("PENDING", "RUNNING")
        assert other.api("POST", "/api/jobs/%s/cancel" % a["id"])["state"] == "CANCELLED"
        wait_for(lambda: sacct_state(cluster, "flightjob", number) == "CANCELLED", 30, "sacct of flightjob")
        for x in (c, taken_in):
            first.api("POST", "/api/jobs/%s/cancel" % x["id"])
        assert job(other, c["id"])["state"] == "CANCELLED"
    finally:
        first.close()
        other.close()


def test_a_plain_sbatch_job_shows_in_a_single_user_daemon(slurm_cluster, make_app):
    """Single-user mode (the daemon's user is root here): one refresh lists
    the user's job submitted with plain sbatch, with Slurm's own paths, and
    it can be cancelled there."""
    cluster = slurm_cluster.ensure(accounting=True)
    client = make_app(scheduler=cluster.scheduler())
    client.api("GET", "/api/jobs")
    calls = client.api("GET", "/api/jobs").json["scheduler"].get("calls", {})
    out = subprocess.run(["sbatch", "--parsable", "--chdir=/tmp", "--output=/tmp/fj-plain-%j.out",
                          "--wrap", "sleep 300"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, SLURM_CONF=cluster.conf), check=True).stdout.strip()
    listed = client.api("GET", "/api/jobs?per_page=100").json
    found = [j for j in listed["jobs"] if j.get("scheduler_id") == out and j.get("origin") == "outside"]
    assert found, "not listed after one refresh"
    assert listed["scheduler"]["calls"].get("squeue", 0) - calls.get("squeue", 0) == 1
    page = client.api("GET", "/api/jobs/" + found[0]["id"]).json
    assert page["stdout_path"] == "/tmp/fj-plain-%s.out" % out and page["managed"]
    assert client.api("POST", "/api/jobs/%s/cancel" % found[0]["id"]).json["state"] == "CANCELLED"
    wait_for(lambda: sacct_state(cluster, "flightjob", out) == "CANCELLED", 30, "sacct")


def test_output_link_is_the_file_slurm_wrote(slurm_cluster, runtime, user):
    """--output='my file.out': the job page shows what Slurm wrote in that
    file, its path told by scontrol, not worked out."""
    site = Site(runtime, slurm_cluster.ensure(accounting=True), user)
    try:
        sid = site.api("POST", "/api/scripts", {"template": "serial", "name": "quoted"}, status=201)["id"]
        site.api("PATCH", "/api/scripts/" + sid, {"content": "#!/bin/bash\n#SBATCH --output='my file.out' "
                                                             "# where it goes\necho written by slurm\n"})
        j = site.api("POST", "/api/jobs", {"script": sid, "answers": {}}, status=201)
        assert j["stdout_path"].endswith("/my file.out") and j["outputs_guessed"] is False
        site.wait(j)
        page = site.pages.get("/jobs/" + j["id"])
        assert "written by slurm" in page.text and "a guess" not in page.text
        assert os.path.exists(os.path.join(j["results_dir"], "my file.out"))
    finally:
        site.close()
