"""Submit, monitor, cancel, remove and results on the real local scheduler."""
import json
import os
import time

import pytest

import flightjobd
from support import gate, wait_finished, wait_for, wait_gone

pytestmark = pytest.mark.jobs  # real local jobs and processes killed, waited for: not the fast tier


def script_with(client, tmp_path, body, name="job", extra=""):
    """A script from the serial template whose work is `body`, running in
    tmp_path/work with output job-%j.out."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    s = client.create_script("serial", name=name, answers={"working_dir": str(work)})
    content = ('#!/bin/bash\n#SBATCH --chdir="%s"\n#SBATCH --job-name=%s\n#SBATCH --output=job-%%j.out\n%s\n%s\n'
               % (work, name, extra, body))
    client.api("PATCH", "/api/scripts/" + s["id"], {"content": content})
    return s["id"]


def test_job_completes_with_results(client, tmp_path):
    """The job of a script with "#FLIGHTJOB job-folder" (the shipped
    templates') runs in a folder of its own, <working dir>/<script
    name>-<n>, made before it is submitted: its results are its own (a
    second job of the script lists only its own), the working directory
    and the folders of other names untouched."""
    sid = script_with(client, tmp_path, "echo hello from $SLURM_JOB_ID\necho data > result.txt", name="My job",
                      extra="#FLIGHTJOB job-folder")
    (tmp_path / "work" / "My-job-7").mkdir()  # numbers go on after the highest taken
    (tmp_path / "work" / "other.txt").write_text("not a result")
    preview = client.api("POST", "/api/scripts/%s/preview" % sid, {"answers": {}}).json
    assert "--chdir=%s" % (tmp_path / "work" / "My-job-8") in preview["options"]
    assert not (tmp_path / "work" / "My-job-8").exists()  # a preview makes nothing
    job = client.submit(sid)
    assert job["state"] in ("PENDING", "RUNNING") and job["scheduler_id"]
    folder = tmp_path / "work" / "My-job-8"
    assert job["results_dir"] == str(folder) and folder.is_dir()
    assert oct(folder.stat().st_mode & 0o777) == oct(0o777 & ~flightjobd.job_umask())
    assert job["stdout_path"] == str(folder / ("job-%s.out" % job["scheduler_id"]))
    second = client.wait_job(client.submit(sid)["id"])
    assert second["results_dir"] == str(tmp_path / "work" / "My-job-9")
    assert sorted(f["name"] for f in client.api("GET", "/api/jobs/%s/files" % second["id"]).json["files"]) == \
        ["job-%s.out" % second["scheduler_id"], "result.txt"]
    job = client.wait_job(job["id"])
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0)
    assert job["started_at"] and job["ended_at"] and job["submitted_at"] <= job["ended_at"]
    assert client.output(job["id"]) == "hello from %s\n" % job["scheduler_id"]
    files = client.api("GET", "/api/jobs/%s/files" % job["id"]).json["files"]
    names = [f["name"] for f in files]
    assert names[0] == "job-%s.out" % job["scheduler_id"] and "result.txt" in names
    assert files[0]["output"] and files[0]["size"] > 0
    assert client.api("GET", "/api/jobs/%s/files/result.txt" % job["id"]).body == b"data\n"
    assert client.api("GET", "/api/jobs/%s/files/result.txt?tail=2" % job["id"]).body == b"a\n"
    page = client.web.get("/jobs/" + job["id"])
    assert "Completed" in page.text and "Results directory" in page.text and "result.txt" in page.text
    assert "Time to completion" in page.text and "hello from" in page.text
    view = client.web.get("/jobs/%s/files/result.txt" % job["id"])
    assert "data" in view.text and "Download" in view.text
    assert client.web.get("/jobs/%s/download/result.txt" % job["id"]).headers["Content-Disposition"].startswith("attachment")


def test_what_would_fail_at_launch_is_checked_before_submit(client, tmp_path):
    """An output folder that is not there: the preview and the summary say
    so and offer to make it; a submit without that is 422 naming
    make_folders (no job, nothing made); with it the folder is made with
    the job's umask and the job runs."""
    sid = script_with(client, tmp_path, "echo hi", extra="#SBATCH --output=logs/deep/job-%j.out")
    logs = tmp_path / "work" / "logs"
    plan = client.api("POST", "/api/scripts/%s/preview" % sid, {"answers": {}}).json
    assert plan["problems"] == [{"what": "write its output to", "path": str(logs / "deep" / "job-%j.out"),
                                 "folder": str(logs / "deep"), "why": "the folder %s does not exist" % (logs / "deep"),
                                 "missing": True}]
    summary = client.web.get("/scripts/%s/submit" % sid).forms[1].submit("action", value="review")
    assert "would fail at launch" in summary.text and summary.html.select_one("#make_folders")
    refused = summary.forms[1].submit("action", value="submit", status=422)
    assert "could not write its output to" in refused.html.select_one("#launch-problems").text
    r = client.api("POST", "/api/jobs", {"script": sid, "answers": {}}, status=422)
    assert "make_folders" in r.json["error"]["fields"] and not logs.exists()
    assert client.api("GET", "/api/jobs").json["total"] == 0
    form = refused.forms[1]
    form["make_folders"].checked = True
    job = client.wait_job(form.submit("action", value="submit", status=303).follow().request.path.split("/")[-1])
    assert job["state"] == "COMPLETED" and (logs / "deep" / ("job-%s.out" % job["scheduler_id"])).read_text() == "hi\n"
    assert oct(logs.stat().st_mode & 0o777) == oct(0o777 & ~flightjobd.job_umask())


def test_efficiency_of_a_busy_and_an_idle_local_job(client, tmp_path):
    """The local scheduler records CPU time (its tasks' processes) and the
    largest process's peak: a CPU-bound job is near 100 %, a sleeping one
    near 0 %, on the job page and as Monitor jobs columns."""
    busy = client.submit(script_with(client, tmp_path, "timeout 3 sh -c 'while :; do :; done'; true",
                                     name="busy"))
    idle = client.submit(script_with(client, tmp_path, "sleep 3", name="idle",
                                     extra="#SBATCH --cpus-per-task=2"))
    busy, idle = client.wait_job(busy["id"]), client.wait_job(idle["id"])
    eb, ei = busy["efficiency"], idle["efficiency"]
    # a busy loop gets what the machine spares (the test machine is shared): not 100 %, but far from idle
    assert eb["alloc_cpus"] == 1 and 10 <= eb["cpu_percent"] <= 110 and eb["cpu_time_s"] >= 0.3
    assert ei["alloc_cpus"] == 2 and ei["cpu_percent"] <= 5 and ei["cpu_alloc_s"] >= 6
    assert ei["advice"] == ["Used less than 1 of 2 cores: ask for 1 next time, or make the program use them all."]
    assert busy["time_limit"] and eb["time_limit_s"] == flightjobd.parse_duration(busy["time_limit"])
    assert eb["time_percent"] < 1 and eb["mem_used_mb"] > 0
    assert "largest single process" in eb["mem_what"]
    page = client.web.get("/jobs/" + idle["id"])
    assert "Efficiency" in page.html.select_one("#efficiency-h").text
    assert page.html.select_one('[data-field="cpu_percent"]').text.strip() == "%g %%" % round(ei["cpu_percent"])
    assert "Used less than 1 of 2 cores" in page.html.select_one(".advice").text
    rows = {tr["data-job"]: tr for tr in client.web.get("/jobs").html.select("tr[data-job]")}
    cell = rows[busy["id"]].select_one('[data-field="cpu_percent"]').text
    assert cell == "%g %%" % round(eb["cpu_percent"])


@pytest.mark.parametrize("figures", [
    {"alloc_cpus": None},  # CPU time and held time, no CPU count
    {"cpu_time_s": "lots", "mem_used_mb": -3, "time_limit": 7},  # nothing a number: a broken record
    {"mem_used_mb": 3 * 1024.0, "requested_mem_mb": 64 * 1024.0, "mem_tasks": 8, "max_rss_mb": None, "mem_asked": True},
])
def test_a_job_page_shows_whatever_figures_its_record_holds(client, tmp_path, figures):
    """A record is a file in the user's home (edited by hand, or by an older
    version): the efficiency shows what is a number and never fails; figures
    of a wrong shape make the record broken (409 naming them), never a 500,
    and the list still shows."""
    job = client.wait_job(client.submit(script_with(client, tmp_path, "true"))["id"])
    path = tmp_path / "state" / "jobs" / job["id"] / "meta.json"
    meta = json.loads(path.read_text())
    meta.update(figures)
    path.write_text(json.dumps(meta))
    if figures.get("cpu_time_s") == "lots":
        page = client.web.get("/jobs/" + job["id"], status=409)
        assert "cpu_time_s, mem_used_mb, time_limit" in page.text
        client.web.get("/jobs", status=200)
        return
    page = client.web.get("/jobs/" + job["id"], status=200)
    eff = client.api("GET", "/api/jobs/" + job["id"]).json["efficiency"]
    if eff is None:
        assert not page.html.select("#efficiency-h")
    else:
        assert page.html.select_one("#efficiency-h")
    if figures.get("mem_tasks"):
        assert "the peaks of the 8 tasks" in page.text and "Used 5 % of the 64 GiB asked for" in page.text
    client.web.get("/jobs", status=200)


def test_job_snapshot_is_kept(client, tmp_path):
    sid = script_with(client, tmp_path, "echo original")
    job = client.wait_job(client.submit(sid)["id"])
    client.api("PATCH", "/api/scripts/" + sid, {"content": "#!/bin/bash\necho changed\n"})
    client.api("DELETE", "/api/scripts/" + sid, status=204)
    again = client.api("GET", "/api/jobs/%s?script=1" % job["id"]).json
    assert "echo original" in again["script_content"]
    assert "echo original" in client.web.get("/jobs/" + job["id"]).text


def test_nonzero_exit_is_failed_with_the_code(client, tmp_path):
    job = client.wait_job(client.submit(script_with(client, tmp_path, "echo oops >&2\nexit 3"))["id"])
    assert (job["state"], job["exit_code"], job["reason_text"]) == ("FAILED", 3, "exit code 3")
    page = client.web.get("/jobs/" + job["id"])
    assert "exit code 3" in page.text and "Remove" in page.text


def test_time_limit_is_enforced(client, tmp_path):
    sid = script_with(client, tmp_path, "echo start\nsleep 600\necho never")
    start = time.time()
    job = client.wait_job(client.submit(sid, {"time": "0:02"})["id"], timeout=120)
    assert time.time() - start < 120  # a 2 s limit, far from the job's own 600 s
    assert (job["state"], job["raw_state"], job["reason_text"]) == ("FAILED", "TIMEOUT", "ran out of time")
    assert client.output(job["id"]) == "start\n"


def test_cancel_running_job(client, tmp_path):
    sid = script_with(client, tmp_path, "echo started\nsleep 60")
    job = client.submit(sid)
    job = client.wait_job(job["id"], until=("RUNNING",))
    assert job["state"] == "RUNNING"
    client.api("DELETE", "/api/jobs/" + job["id"], status=409)
    job = client.api("POST", "/api/jobs/%s/cancel" % job["id"]).json
    assert job["state"] == "CANCELLED" and job["ended_at"]
    status = flightjobd.read_json(str(tmp_path / "state" / "local" / job["scheduler_id"] / "status.json"))
    wait_gone([status["supervisor"]])
    page = client.web.get("/jobs/" + job["id"])
    assert "Time since cancellation" in page.text and "no results" in page.text
    assert "Results directory" not in page.text
    # cancelling a finished job reports its state, not an error
    assert client.api("POST", "/api/jobs/%s/cancel" % job["id"]).json["state"] == "CANCELLED"


def test_cancel_through_the_pages(client, tmp_path):
    job = client.wait_job(client.submit(script_with(client, tmp_path, "sleep 60"))["id"], until=("RUNNING",))
    page = client.web.get("/jobs/%s" % job["id"]).html
    assert page.select_one("h1 .badge").text == flightjobd.STATE_LABELS["RUNNING"]
    assert json.loads(page.body["data-vocabulary"])["labels"] == flightjobd.STATE_LABELS  # for app.js
    confirm = client.web.get("/jobs/%s/cancel" % job["id"])
    assert confirm.html.h1.text == "Cancel job"
    # one wording: app.js's dialog asks what the page without JavaScript asks
    assert confirm.html.select_one(".confirm p").text == page.select_one("[data-confirm]")["data-confirm"]
    confirm.forms[1].submit(status=303)
    assert client.api("GET", "/api/jobs/" + job["id"]).json["state"] == "CANCELLED"
    client.web.get("/jobs/%s/remove" % job["id"]).forms[1].submit(status=303)
    client.api("GET", "/api/jobs/" + job["id"], status=404)


def test_remove_only_when_finished_and_results_stay(client, tmp_path):
    held, release = gate(tmp_path / "gate")
    sid = script_with(client, tmp_path, held + "\necho done")
    job = client.submit(sid)
    client.api("DELETE", "/api/jobs/" + job["id"], status=409)  # held: surely unfinished
    release()
    job = client.wait_job(job["id"])
    out = job["stdout_path"]
    client.api("DELETE", "/api/jobs/" + job["id"], status=204)
    client.api("GET", "/api/jobs/" + job["id"], status=404)
    assert open(out).read() == "done\n"


def test_refused_submission_is_a_failed_job(client, tmp_path):
    sid = script_with(client, tmp_path, "echo never")
    job = client.submit(sid, {"mem": "100000000M"})
    assert job["state"] == "FAILED" and job["scheduler_id"] is None
    assert "Memory specification can not be satisfied" in job["reason_text"]
    assert "refused" in client.web.get("/jobs/" + job["id"]).text
    listed = client.api("GET", "/api/jobs").json["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_submit_page_shows_the_machine_s_free_cores(client, tmp_path):
    """Will it start soon: the local scheduler's one partition is this
    machine, its cores and those its load average leaves idle."""
    sid = script_with(client, tmp_path, "echo hi")
    cluster = client.api("GET", "/api/scripts/%s/submission" % sid).json["cluster"]
    local, = cluster["partitions"]
    cores = os.cpu_count()
    assert (local["name"], local["cpus_total"], local["waiting"], cluster["shared"]) == ("local", cores, 0, False)
    assert 0 <= local["cpus_free"] <= cores
    page = client.web.get("/scripts/%s/submit" % sid)
    row = page.html.select_one('[data-cluster] tr[data-partition="local"]')
    assert row.select_one('[data-field="cores"]').text == "%d of %d" % (local["cpus_free"], cores)
    assert "load average" in page.text
    assert "cores free" in page.html.select_one('select option[value="local"]').text


def test_submission_questions_summary_and_job_page(client, tmp_path):
    sid = script_with(client, tmp_path, "echo hi")
    sub = client.api("GET", "/api/scripts/%s/submission" % sid).json
    ids = [q["id"] for q in sub["questions"]]
    assert "partition" in ids and "time" in ids
    part = [q for q in sub["questions"] if q["id"] == "partition"][0]
    assert "local" in [o["value"] for o in part["options"]]  # options from the scheduler
    page = client.web.get("/scripts/%s/submit" % sid)
    f = page.forms[1]
    f["q_time"] = "soon"
    r = f.submit("action", value="review", status=422)
    assert "Time limit: use D-HH:MM:SS" in r.text and "soon" in r.text
    f = r.forms[1]
    f["q_time"] = "0-00:10:00"
    f["q_partition"] = "local"
    summary = f.submit("action", value="review")
    assert "--time=0-00:10:00" in summary.text and "Command" in summary.text
    assert "job-%j.out" in summary.text
    job_page = summary.forms[1].submit("action", value="submit", status=303).follow()
    jid = job_page.request.path.split("/")[-1]
    job = client.wait_job(jid)
    assert job["options"] == ["--partition=local", "--time=0-00:10:00"]
    assert job["answers"]["time"] == "0-00:10:00"


def test_local_notes_what_it_cannot_honour(client, tmp_path):
    s = client.create_script("mpi", answers={"working_dir": str(tmp_path)})
    plan = client.api("POST", "/api/scripts/%s/preview" % s["id"], {"answers": {"nodes": 4, "mem": "1G"}}).json
    text = " ".join(plan["ignored_options"])
    assert "one node" in text and "--nodes=4" in text and "memory is not limited" in text
    assert "one node" in client.web.post("/scripts/%s/submit" % s["id"], {
        "csrf": client.csrf, "action": "review", "q_nodes": "4"}).text


def test_array_job_runs_every_task(client, tmp_path):
    sid = script_with(client, tmp_path, 'echo "task $SLURM_ARRAY_TASK_ID"\n[ "$SLURM_ARRAY_TASK_ID" != 2 ]',
                      extra="#SBATCH --array=1-3\n#SBATCH --output=arr-%A_%a.out")
    job = client.wait_job(client.submit(sid)["id"])
    assert job["state"] == "FAILED" and "task 2" in job["reason_text"]
    assert [(t["id"].split("_")[1], t["state"]) for t in job["tasks"]] == [
        ("1", "COMPLETED"), ("2", "FAILED"), ("3", "COMPLETED")]
    work = tmp_path / "work"
    assert (work / ("arr-%s_3.out" % job["scheduler_id"])).read_text() == "task 3\n"
    assert "Array tasks" in client.web.get("/jobs/" + job["id"]).text


def test_jobs_list_filter_and_pages(client, tmp_path):
    good = script_with(client, tmp_path, "true", name="good")
    bad = script_with(client, tmp_path, "false", name="bad")
    ids = [client.submit(good)["id"], client.submit(bad)["id"], client.submit(good)["id"]]
    for jid in ids:
        client.wait_job(jid)
    listing = client.api("GET", "/api/jobs?per_page=2").json
    assert listing["total"] == 3 and [j["id"] for j in listing["jobs"]] == ids[::-1][:2]
    assert [j["id"] for j in client.api("GET", "/api/jobs?per_page=2&page=2").json["jobs"]] == [ids[0]]
    assert [j["id"] for j in client.api("GET", "/api/jobs?state=FAILED").json["jobs"]] == [ids[1]]
    client.api("GET", "/api/jobs?state=BOGUS", status=400)
    client.api("GET", "/api/jobs?page=x", status=400)
    page = client.web.get("/jobs?state=COMPLETED")
    assert page.text.count('data-job="') == 2 and "ago" in page.text


def test_failed_status_call_changes_no_state(make_config, tmp_path, monkeypatch):
    """Fault injection beside the real local scheduler: its status call
    fails, and nothing is marked finished."""
    monkeypatch.setenv("HOME", str(tmp_path))
    store = flightjobd.Store(make_config(), "me")
    s = store.script_create("serial", answers={"working_dir": str(tmp_path)})
    store.script_update(s["id"], content="#!/bin/bash\nsleep 30\n")
    job = store.job_submit(s["id"], {})
    real = store.scheduler.status

    def broken(ids):
        raise flightjobd.SchedulerError("The scheduler did not answer: squeue timed out after 20 seconds.")
    store.scheduler.status = broken
    store.config["scheduler"]["unknown_grace"] = 0
    result = store.ask_scheduler()
    assert result["ok"] is False and "did not answer" in result["message"]
    assert store.job_get(job["id"])["state"] == "PENDING"
    listing = store.jobs_list()
    assert listing["scheduler"]["ok"] is False and listing["jobs"][0]["state"] == "PENDING"
    store.scheduler.status = real
    assert store.ask_scheduler()["ok"] is True
    store.scheduler.cancel(job["scheduler_id"])


def test_the_pool_knows_who_has_unfinished_jobs(client, tmp_path):
    """The background refresh visits the users whose last reply said they
    have unfinished jobs: a submit, a job page and a list all say so."""
    me, active = client.app.daemon_user, client.app.pool.active
    client.submit(script_with(client, tmp_path, "exit 0", extra="#SBATCH --mem=999999G"))  # refused
    assert me not in active
    job = client.submit(script_with(client, tmp_path, "sleep 1"))
    assert me in active
    assert client.wait_job(job["id"])["state"] == "COMPLETED"
    assert me not in active  # the job page's refresh found it finished
    job = client.submit(script_with(client, tmp_path, "sleep 30"))
    active.clear()
    client.api("GET", "/api/jobs")
    assert me in active
    active.clear()
    client.app.pool.call(me, "jobs.ask_scheduler", {})
    assert me in active
    assert client.api("POST", "/api/jobs/%s/cancel" % job["id"]).json["state"] == "CANCELLED"
    assert me not in active


def test_job_that_ends_while_the_daemon_is_down(make_daemon, tmp_path):
    import http.cookiejar
    import json
    import urllib.request
    d = make_daemon()
    jar = http.cookiejar.CookieJar()
    web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    web.open(d.login_url).read()

    def api(method, path, body=None):
        csrf = json.load(web.open(d.url + "/api/session"))["csrf_token"]
        req = urllib.request.Request(d.url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
        return json.load(web.open(req))
    s = api("POST", "/api/scripts", {"template": "serial", "answers": {"working_dir": str(tmp_path)}})
    api("PATCH", "/api/scripts/" + s["id"], {"content": "#!/bin/bash\nsleep 2\nexit 7\n"})
    job = api("POST", "/api/jobs", {"script": s["id"], "answers": {}})
    d.stop()
    status = str(tmp_path / "state" / "local" / job["scheduler_id"] / "status.json")

    def ended():
        try:
            return flightjobd.read_json(status)["state"] in flightjobd.FINISHED
        except (OSError, ValueError):
            return False
    wait_for(ended, 60, "the job ending while nobody is there")
    d.start()
    jar.clear()
    web.open(d.login_url).read()
    job = api("GET", "/api/jobs/" + job["id"])
    assert (job["state"], job["exit_code"], job["reason_text"]) == ("FAILED", 7, "exit code 7")


@pytest.mark.root
def test_results_path_and_symlink_attacks(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    token = web.post_json("/api/login", {"username": alice.name, "password": alice.password}).json["csrf_token"]
    h = {"X-CSRF-Token": token}
    sid = web.post_json("/api/scripts", {"template": "serial"}, headers=h).json["id"]
    web.patch_json("/api/scripts/" + sid, {"content": (
        "#!/bin/bash\n#SBATCH --chdir=%s/out\n#SBATCH --output=job.out\n"
        "ln -s /etc/shadow shadow\nln -s %s/secret bobs\nln -s .. up\necho ok\n") % (alice.home, bob.home)}, headers=h)
    os.makedirs(alice.home + "/out")
    os.chown(alice.home + "/out", alice.uid, alice.gid)
    with open(bob.home + "/secret", "w") as f:
        f.write("bob's secret")
    os.chmod(bob.home, 0o700)
    jid = web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=h).json["id"]
    assert wait_finished(web, jid)["state"] == "COMPLETED"
    assert web.get("/api/jobs/%s/files/job.out" % jid).body == b"ok\n"
    for path, status, code in (("shadow", 403, "forbidden"), ("bobs", 403, "forbidden"),
                               ("up/.bashrc", 403, "forbidden"), ("../.bashrc", 404, "not_found"),
                               ("%2Fetc%2Fpasswd", 404, "not_found"), ("a/../../x", 404, "not_found"),
                               ("nosuch", 404, "not_found")):
        r = web.get("/api/jobs/%s/files/%s" % (jid, path), status=status)
        assert r.json["error"]["code"] == code, (path, r.json)
        assert b"root:" not in r.body and b"bob's secret" not in r.body, path
    # another user sees nothing of alice's job
    b = web.__class__(a.bottle)
    bt = b.post_json("/api/login", {"username": bob.name, "password": bob.password}).json["csrf_token"]
    b.get("/api/jobs/" + jid, status=404)
    b.get("/api/jobs/%s/files/job.out" % jid, status=404)
    b.post("/api/jobs/%s/cancel" % jid, headers={"X-CSRF-Token": bt}, status=404)
    b.delete("/api/jobs/" + jid, headers={"X-CSRF-Token": bt}, status=404)
    assert b.get("/api/jobs").json["total"] == 0


def test_activity_counts_running_jobs_and_tells_how_watched_ones_ended(client, tmp_path):
    """GET /api/activity, what every page's tab polls: the unfinished jobs
    in brief with counts by state, and the state now of the watched ones."""
    empty = client.api("GET", "/api/activity").json
    assert empty["counts"] == {"PENDING": 0, "RUNNING": 0} and empty["unfinished"] == [] and empty["watched"] == []
    held, release = gate(tmp_path / "gate")
    sid = script_with(client, tmp_path, held + "\nexit 3", name="held")
    job = client.submit(sid)
    running = wait_for(lambda: (lambda a: a if a["counts"]["RUNNING"] == 1 else None)(
        client.api("GET", "/api/activity").json), what="the job running")
    started = client.api("GET", "/api/jobs/" + job["id"]).json["started_at"]
    assert running["unfinished"] == [{"id": job["id"], "scheduler_id": job["scheduler_id"], "name": "held",
                                      "state": "RUNNING", "raw_state": "RUNNING", "reason_text": "",
                                      "started_at": started, "ended_at": None}]
    assert running["scheduler"]["ok"] is True
    release()
    wait_finished(client.web, job["id"])
    done = client.api("GET", "/api/activity?watch=%s&watch=%s&watch=nosuchjob&watch=../x" % (job["id"], job["id"])).json
    assert done["counts"] == {"PENDING": 0, "RUNNING": 0} and done["unfinished"] == []
    assert [(w["id"], w["state"], w["name"]) for w in done["watched"]] == [(job["id"], "FAILED", "held")]
    assert "exit code 3" in done["watched"][0]["reason_text"]
    too_many = "&".join("watch=%d" % i for i in range(101))
    r = client.api("GET", "/api/activity?" + too_many, status=422)
    assert r.json["error"]["fields"] == {"watch": "at most 100 job ids"}
    assert client.web.get("/api/activity", headers={"Cookie": ""}, status=401)


def test_hold_and_time_limit_right_after_submit_are_in_the_answer(client, tmp_path):
    """Sent before the job's supervisor has first written its status (issue
    24): the answers say held and the new limit, not "starting"."""
    first = client.submit(script_with(client, tmp_path, "sleep 60", "first"))
    second = client.api("POST", "/api/jobs", {"script": script_with(client, tmp_path, "echo hi", "second"),
                                              "answers": {"time": "0:30"},
                                              "after": {"job": first["id"], "type": "afterok"}}, status=201).json
    held = client.api("POST", "/api/jobs/%s/hold" % second["id"]).json
    assert (held["state"], held["reason"], held["time_limit"]) == ("PENDING", "JobHeldUser", "0:00:30")
    lowered = client.api("POST", "/api/jobs/%s/time-limit" % second["id"], {"time_limit": "0:10"}).json
    assert (lowered["reason"], lowered["time_limit"]) == ("JobHeldUser", "0:00:10")
    for job in (second, first):
        client.api("POST", "/api/jobs/%s/cancel" % job["id"])
