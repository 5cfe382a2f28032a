"""Start after one of my jobs, hold and release, a pending job's time limit,
and cancelling one array task: through the real app, worker and local
scheduler (tests/test_slurm.py does the same on Slurm)."""
import json
import os

import pytest

import flightjobd
from support import wait_for
from test_jobs_local import script_with

pytestmark = pytest.mark.jobs  # real local jobs and processes killed, waited for: not the fast tier

XSS = '<script>alert("x")</script>'
# a job's lines that hold it running until the test opens the gate (at most 10 minutes: a failed test leaves no job)
WAIT = "for i in $(seq 3000); do [ -e %s ] && break; sleep 0.2; done"


def job_now(client, jid):
    return client.api("GET", "/api/jobs/" + jid).json


def wait_reason(client, jid, reason, timeout=30):
    wait_for(lambda: job_now(client, jid)["reason"] == reason, timeout, "reason %s" % reason)
    return job_now(client, jid)


def after(kind, job):
    return {"job": job["id"], "type": kind}


def looked_again(tmp_path, job, passes=2):
    """Wait (bounded) until the local supervisor of a waiting job has
    written its status.json `passes` more times: each pass looks at its
    hold and its dependency again, so what it would start, it has started."""
    path = tmp_path / "state" / "local" / job["scheduler_id"] / "status.json"
    seen = []

    def written():
        try:
            st = os.stat(path)
        except FileNotFoundError:  # not yet written once
            return False
        if not seen or seen[-1] != (st.st_ino, st.st_mtime_ns):
            seen.append((st.st_ino, st.st_mtime_ns))
        return len(seen) > passes
    wait_for(written, 30, "the supervisor of job %s to look again" % job["scheduler_id"], 0.02)


# dependencies


def test_afterok_waits_for_the_job_then_runs(client, tmp_path):
    gate = tmp_path / "go"
    first = client.submit(script_with(client, tmp_path, WAIT % gate, "first"))
    second_sid = script_with(client, tmp_path, "[ -e %s ] && echo second ran || echo ran too soon" % gate, "second")
    sub = client.api("GET", "/api/scripts/%s/submission" % second_sid).json
    assert first["id"] in [c["id"] for c in sub["after_choices"]]
    assert [k for k, _ in sub["dependency_types"]] == ["afterok", "afterany", "afternotok"]
    plan = client.api("POST", "/api/scripts/%s/preview" % second_sid, {"answers": {},
                                                                      "after": after("afterok", first)}).json
    assert plan["dependency"]["scheduler_id"] == first["scheduler_id"]
    assert "--dependency=afterok:%s" % first["scheduler_id"] in plan["options"]
    second = client.api("POST", "/api/jobs", {"script": second_sid, "answers": {},
                                              "after": after("afterok", first)}, status=201).json
    assert second["dependency"] == {"type": "afterok", "job_id": first["id"],
                                    "scheduler_id": first["scheduler_id"]}
    assert "--dependency=afterok:%s" % first["scheduler_id"] in second["options"]
    second = wait_reason(client, second["id"], "Dependency")
    assert second["state"] == "PENDING"
    assert second["reason_text"] == "waiting for job %s to succeed" % first["scheduler_id"]
    page = client.web.get("/jobs/" + second["id"])
    assert "waiting for job %s to succeed" % first["scheduler_id"] in page.text
    dep = page.html.find(id="dependency")
    assert dep.find("a")["href"] == "/jobs/" + first["id"] and "after it succeeds" in dep.text
    looked_again(tmp_path, second)  # the dependency looked at while the first runs
    assert job_now(client, second["id"])["state"] == "PENDING"  # still waiting
    gate.write_text("")
    assert client.wait_job(first["id"])["state"] == "COMPLETED"
    done = client.wait_job(second["id"])
    assert done["state"] == "COMPLETED" and client.output(done["id"]) == "second ran\n"


@pytest.mark.parametrize("kind,first_body,runs", [
    ("afternotok", "exit 3", True), ("afternotok", "true", False),
    ("afterany", "exit 3", True), ("afterok", "exit 3", False)])
def test_each_kind_runs_or_never_runs(client, tmp_path, kind, first_body, runs):
    first = client.submit(script_with(client, tmp_path, first_body, "first"))
    client.wait_job(first["id"])
    second = client.api("POST", "/api/jobs", {"script": script_with(client, tmp_path, "echo ran", "second"),
                                              "answers": {}, "after": after(kind, first)}, status=201).json
    if runs:
        assert client.wait_job(second["id"])["state"] == "COMPLETED"
        return
    never = wait_reason(client, second["id"], "DependencyNeverSatisfied")
    assert never["state"] == "PENDING" and never["reason_text"].startswith(
        "will never run: it was to start once job %s would %s" % (first["scheduler_id"], {
            "afterok": "succeed", "afternotok": "fail"}[kind]))
    page = client.web.get("/jobs/" + second["id"])
    notice = page.html.find(id="never-runs")
    assert "will never run" in notice.text
    form = page.forms[[f.action for f in page.forms.values()].index("/jobs/%s/cancel" % second["id"])]
    form.submit(status=303)
    gone = client.wait_job(second["id"])
    assert gone["state"] == "CANCELLED" and gone["started_at"] is None


def test_dependency_through_the_pages(client, tmp_path):
    first = client.submit(script_with(client, tmp_path, "exit 1", "first"))
    client.wait_job(first["id"])
    sid = script_with(client, tmp_path, "echo after", "second")
    page = client.web.get("/scripts/%s/submit" % sid)
    form = page.forms[1]
    assert first["id"] in [v for v, _, _ in [(o[0], o[1], o[2]) for o in form["after_job"].options]]
    form["after_job"] = first["id"]
    form["after_type"] = "afternotok"
    summary = form.submit("action", value="review")
    assert "Starts after" in summary.text and "after it fails" in summary.text
    assert "--dependency=afternotok:%s" % first["scheduler_id"] in summary.text
    done = summary.forms[1].submit("action", value="submit", status=303).follow()
    jid = done.request.path.split("/")[-1]
    job = client.wait_job(jid)
    assert job["state"] == "COMPLETED" and job["dependency"]["type"] == "afternotok"


@pytest.mark.parametrize("field, value", [("dependency", v) for v in (
    "x", 7, True, [1, 2], {"a": 1}, {"type": "afterok", "job_id": 3})] + [("tasks", v) for v in (
        [{"state": "RUNNING"}], [{"state": "PENDING", "id": 5}], [{"state": "PENDING", "id": None}])])
def test_a_hand_edited_dependency_or_task_makes_the_record_broken_not_a_500(client, tmp_path, field, value):
    """A job record is a file of the user's (red team: a dependency that is
    no {type, job_id, scheduler_id}, or an array task with no text id,
    failed the job page with a 500): the job is broken, with the reason,
    and the jobs list still shows."""
    job = client.wait_job(client.submit(script_with(client, tmp_path, "true"))["id"])
    path = tmp_path / "state" / "jobs" / job["id"] / "meta.json"
    meta = json.loads(path.read_text())
    meta[field] = value
    path.write_text(json.dumps(meta))
    page = client.web.get("/jobs/" + job["id"], status=409)
    assert "%s is not what this version reads" % field in page.text
    client.api("GET", "/api/jobs", status=200)
    client.web.get("/jobs", status=200)
    client.api("GET", "/api/activity?watch=" + job["id"], status=200)


def test_bad_dependency_names_the_field_and_keeps_the_answers(client, tmp_path):
    sid = script_with(client, tmp_path, "true")
    other = script_with(client, tmp_path, "true", "other")
    for bad, field in (({"job": "nosuch", "type": "afterok"}, "after_job"),
                       ({"job": "../../etc", "type": "afterok"}, "after_job"),
                       ({"job": "1", "type": "afterok"}, "after_job"),
                       ({"job": other, "type": "afterok"}, "after_job"),  # a script id, not a job
                       ({"job": "x", "type": "before"}, "after_type"),
                       ("afterok:1", "after_job"), ({"job": "x", "evil": 1}, "after_job")):
        r = client.api("POST", "/api/jobs", {"script": sid, "answers": {}, "after": bad}, status=422)
        assert field in r.json["error"]["fields"], bad
    assert client.api("GET", "/api/jobs").json["total"] == 0  # nothing submitted
    # the page: the error beside the choice, and every answer as typed
    r = client.web.post("/scripts/%s/submit" % sid, {"csrf": client.csrf, "action": "review",
                                                     "q_time": "0-00:07:00", "after_job": XSS,
                                                     "after_type": "afterok"}, status=422)
    assert "not one of your jobs" in r.html.find(id="field-after").text
    assert r.forms[1]["q_time"].value == "0-00:07:00"
    assert XSS not in r.text
    # with a bad answer too: both named
    r = client.web.post("/scripts/%s/submit" % sid, {"csrf": client.csrf, "action": "review",
                                                     "q_time": "soon", "after_job": "nosuch",
                                                     "after_type": "sometime"}, status=422)
    assert "after_type" in str(r.html.find(id="field-after")) and r.forms[1]["q_time"].value == "soon"
    assert "has-error" in r.html.find(id="field-time")["class"]


# hold, release, time limit


def waiting_job(client, tmp_path, limit="0-01:00:00", body="echo held ran"):
    """A job held behind a running one (so it cannot start meanwhile)."""
    gate = tmp_path / "go"
    first = client.submit(script_with(client, tmp_path, WAIT % gate, "first"))
    second = client.api("POST", "/api/jobs", {"script": script_with(client, tmp_path, body, "second"),
                                              "answers": {"time": limit}, "after": after("afterany", first)},
                        status=201).json
    wait_reason(client, second["id"], "Dependency")
    return first, second, gate


def test_hold_then_release(client, tmp_path):
    first, second, gate = waiting_job(client, tmp_path)
    held = client.api("POST", "/api/jobs/%s/hold" % second["id"]).json
    assert (held["state"], held["reason"], held["reason_text"]) == ("PENDING", "JobHeldUser", "held by the user")
    gate.write_text("")
    client.wait_job(first["id"])
    looked_again(tmp_path, second)  # the dependency is met, but it is held
    assert job_now(client, second["id"])["reason"] == "JobHeldUser"
    page = client.web.get("/jobs/" + second["id"])
    assert page.html.find(id="release") and not page.html.find(id="hold")
    form = page.forms[[f.action for f in page.forms.values()].index("/jobs/%s/release" % second["id"])]
    form.submit(status=303)
    assert client.wait_job(second["id"])["state"] == "COMPLETED"
    assert client.output(second["id"]) == "held ran\n"


def test_every_control_route_goes_through_the_worker(client, tmp_path, monkeypatch):
    """Hold, release, time limit and task cancel, by the API and the pages:
    each is one call of its operation in the user's worker (the root
    process runs no scheduler command: tests/test_audit.py), and what the
    worker did shows in the job."""
    first, second, gate = waiting_job(client, tmp_path)
    ops, call = [], client.app.pool.call
    monkeypatch.setattr(client.app.pool, "call", lambda user, op, *a, **kw: ops.append(op) or call(user, op, *a, **kw))
    jid = second["id"]
    for method, path, body, op, status, reason in (
            ("api", "/api/jobs/%s/hold", None, "jobs.hold", 200, "JobHeldUser"),
            ("api", "/api/jobs/%s/release", None, "jobs.release", 200, "Dependency"),
            ("form", "/jobs/%s/hold", {}, "jobs.hold", 303, "JobHeldUser"),
            ("form", "/jobs/%s/release", {}, "jobs.release", 303, "Dependency"),
            ("api", "/api/jobs/%s/time-limit", {"time_limit": "30"}, "jobs.time_limit", 200, "Dependency"),
            ("form", "/jobs/%s/time-limit", {"time_limit": "20"}, "jobs.time_limit", 303, "Dependency"),
            ("api", "/api/jobs/%s/tasks/1/cancel", None, "jobs.cancel_task", 404, "Dependency"),  # no such task
            ("form", "/jobs/%s/tasks/1/cancel", {}, "jobs.cancel_task", 404, "Dependency")):
        del ops[:]
        if method == "api":
            client.api("POST", path % jid, body, status=status)
        else:
            client.web.post(path % jid, dict(body, csrf=client.csrf), status=status)
        assert ops[:1] == [op], (path, ops)  # the worker asked first: nothing done before it
        assert job_now(client, jid)["reason"] == reason, path
    assert job_now(client, jid)["time_limit"] == "0:20:00"
    gate.write_text("")
    assert client.wait_job(jid)["state"] == "COMPLETED"


def test_hold_of_a_job_that_is_not_pending_is_refused(client, tmp_path):
    job = client.wait_job(client.submit(script_with(client, tmp_path, "true"))["id"])
    r = client.api("POST", "/api/jobs/%s/hold" % job["id"], status=409)
    assert "Only a pending job" in r.json["error"]["message"]
    r = client.web.post("/jobs/%s/hold" % job["id"], {"csrf": client.csrf}, status=409)
    assert "Only a pending job" in r.html.find(id="job-problem").text


def test_time_limit_lowered_and_raised_while_it_waits(client, tmp_path):
    """As Slurm lets a user (within the partition's MaxTime, which the local
    scheduler has none of: test_slurm shows the refusal past it): lowered
    and raised while the job waits, the page saying it is done."""
    first, second, gate = waiting_job(client, tmp_path, "0-01:00:00", "sleep 30")
    assert job_now(client, second["id"])["time_limit"] == "1:00:00"
    lowered = client.api("POST", "/api/jobs/%s/time-limit" % second["id"], {"time_limit": "2"}).json
    assert lowered["time_limit"] == "0:02:00" and lowered["state"] == "PENDING"
    r = client.web.post("/jobs/%s/time-limit" % second["id"], {"csrf": client.csrf, "time_limit": "3:00:00"},
                        status=303).follow()
    assert r.html.find(id="job-done").text == "Done: the time limit is now 3:00:00."
    assert "raise it up to the longest its partition allows" in r.html.find(id="time-limit").text
    for bad in ("soon", "", XSS, "1:99:00", "0", "0:00:00"):
        r = client.web.post("/jobs/%s/time-limit" % second["id"], {"csrf": client.csrf, "time_limit": bad},
                            status=422)
        assert "Time limit:" in r.html.find(id="time-limit").text and XSS not in r.text
        assert r.html.find(id="time_limit")["value"] == bad
        client.api("POST", "/api/jobs/%s/time-limit" % second["id"], {"time_limit": bad}, status=422)
    client.api("POST", "/api/jobs/%s/time-limit" % second["id"], {"time_limit": 5}, status=422)
    client.web.post("/jobs/%s/time-limit" % second["id"], {"csrf": client.csrf, "time_limit": "0:00:01"},
                    status=303)
    gate.write_text("")
    done = client.wait_job(second["id"])
    assert (done["state"], done["reason"]) == ("FAILED", "TimeLimit")  # 1 second, not 30
    r = client.api("POST", "/api/jobs/%s/time-limit" % second["id"], {"time_limit": "1"}, status=409)
    assert "Only a pending job" in r.json["error"]["message"]


# array tasks


def test_array_task_output_links_and_cancel_one_task(client, tmp_path):
    gate = tmp_path / "go"
    sid = script_with(client, tmp_path, 'echo "task $SLURM_ARRAY_TASK_ID"\n'
                      '[ "$SLURM_ARRAY_TASK_ID" != 1 ] || ' + WAIT % gate,
                      extra="#SBATCH --array=1-3\n#SBATCH --output=arr-%A_%a.out")
    job = client.submit(sid)
    sched = job["scheduler_id"]
    wait_for(lambda: [t["state"] for t in job_now(client, job["id"])["tasks"]] == ["RUNNING", "PENDING", "PENDING"],
             30, "task 1 running")
    page = client.web.get("/jobs/" + job["id"])
    row = page.html.find("tr", attrs={"data-task": "%s_2" % sched})
    link = row.find("a", class_="danger")
    assert "Cancel task" in link.text
    assert link["href"] == "/jobs/%s/tasks/2/cancel" % job["id"]
    confirm = client.web.get(link["href"])
    assert "Cancel array task %s_2?" % sched in confirm.text
    confirm.forms[[f.action for f in confirm.forms.values()].index(link["href"])].submit(status=303)
    cancelled = job_now(client, job["id"])
    assert [t["state"] for t in cancelled["tasks"]][1] == "CANCELLED"
    r = client.api("POST", "/api/jobs/%s/tasks/2/cancel" % job["id"], status=409)
    assert "already finished" in r.json["error"]["message"]
    for bad in ("9", "x", "1_1", "../1"):
        client.api("POST", "/api/jobs/%s/tasks/%s/cancel" % (job["id"], bad), status=404)
    gate.write_text("")
    done = client.wait_job(job["id"])
    assert [(t["id"], t["state"]) for t in done["tasks"]] == [
        ("%s_1" % sched, "COMPLETED"), ("%s_2" % sched, "CANCELLED"), ("%s_3" % sched, "COMPLETED")]
    assert not (tmp_path / "work" / ("arr-%s_2.out" % sched)).exists()  # it never ran
    page = client.web.get("/jobs/" + job["id"])
    row = page.html.find("tr", attrs={"data-task": "%s_3" % sched})
    out = row.find("a", href="/jobs/%s/files/arr-%s_3.out" % (job["id"], sched))
    assert out is not None
    assert client.web.get(out["href"]).text.count("task 3") == 1
    assert not page.html.find("tr", attrs={"data-task": "%s_2" % sched}).find("a")  # no output: it never ran
    assert "Results directory" in page.text and "no results to show" not in page.text  # two tasks ran
    assert "/tasks/" not in page.text  # all over: nothing to cancel


def test_api_cancel_of_a_running_task(client, tmp_path):
    sid = script_with(client, tmp_path, 'echo "t $SLURM_ARRAY_TASK_ID"; sleep 30',
                      extra="#SBATCH --array=4-5\n#SBATCH --output=arr-%A_%a.out")
    job = client.submit(sid)
    wait_for(lambda: [t["state"] for t in job_now(client, job["id"])["tasks"]] == ["RUNNING", "PENDING"],
             30, "task 4 running")
    out = client.api("POST", "/api/jobs/%s/tasks/4/cancel" % job["id"]).json
    assert out["tasks"][0]["state"] == "CANCELLED"
    wait_for(lambda: job_now(client, job["id"])["tasks"][1]["state"] == "RUNNING", 30, "task 5 running")
    client.api("POST", "/api/jobs/%s/cancel" % job["id"])
    assert client.wait_job(job["id"])["state"] == "CANCELLED"


# CSRF and another user's jobs


def test_every_new_route_needs_the_csrf_token(client, tmp_path):
    first, second, gate = waiting_job(client, tmp_path)
    jid = second["id"]
    for path, body in (("/api/jobs/%s/hold" % jid, {}), ("/api/jobs/%s/release" % jid, {}),
                       ("/api/jobs/%s/time-limit" % jid, {"time_limit": "1"}),
                       ("/api/jobs/%s/tasks/1/cancel" % jid, {})):
        client.api("POST", path, body, status=403, headers={"X-CSRF-Token": "wrong"})
        client.web.post_json(path, body, status=403)
    for path, fields in (("/jobs/%s/hold" % jid, {}), ("/jobs/%s/release" % jid, {}),
                         ("/jobs/%s/time-limit" % jid, {"time_limit": "1"}),
                         ("/jobs/%s/tasks/1/cancel" % jid, {})):
        client.web.post(path, dict(fields, csrf="wrong"), status=403)
        client.web.post(path, fields, status=403)
    job = job_now(client, jid)
    assert (job["reason"], job["time_limit"]) == ("Dependency", "1:00:00")  # nothing was done
    gate.write_text("")
    client.wait_job(jid)


@pytest.mark.root
def test_another_users_jobs_cannot_be_named(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    h = {"X-CSRF-Token": web.post_json("/api/login", {"username": alice.name,
                                                      "password": alice.password}).json["csrf_token"]}
    sid = web.post_json("/api/scripts", {"template": "serial"}, headers=h).json["id"]
    web.patch_json("/api/scripts/" + sid, {"content": "#!/bin/bash\nsleep 30\n"}, headers=h)
    ajob = web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=h).json
    b = web.__class__(a.bottle)
    bh = {"X-CSRF-Token": b.post_json("/api/login", {"username": bob.name,
                                                     "password": bob.password}).json["csrf_token"]}
    bsid = b.post_json("/api/scripts", {"template": "serial"}, headers=bh).json["id"]
    r = b.post_json("/api/jobs", {"script": bsid, "answers": {}, "after": {"job": ajob["id"], "type": "afterok"}},
                    headers=bh, status=422)
    assert "after_job" in r.json["error"]["fields"]
    for path, body in (("hold", None), ("release", None), ("time-limit", {"time_limit": "1"}),
                       ("tasks/1/cancel", None)):
        if body is None:
            b.post("/api/jobs/%s/%s" % (ajob["id"], path), headers=bh, status=404)
        else:
            b.post_json("/api/jobs/%s/%s" % (ajob["id"], path), body, headers=bh, status=404)
    assert b.get("/api/jobs").json["total"] == 0
    web.post("/api/jobs/%s/cancel" % ajob["id"], headers=h)


# parsing the scheduler's words


def test_scontrol_refusals_in_words():
    words = flightjobd.sbatch_error_message
    assert words("slurm_update error: Access/permission denied\n", "scontrol") == "Access/permission denied"
    assert words("scontrol: error: Job is no longer pending execution for job 1234\n",
                 "scontrol") == "Job is no longer pending execution for job 1234"
    assert words("sbatch: error: Batch job submission failed: Job dependency problem\n") == \
        "Batch job submission failed: Job dependency problem"


def test_dependency_words():
    dep = {"type": "afterok", "job_id": "x", "scheduler_id": "1234"}
    assert flightjobd.dependency_words(dep, "Dependency") == "waiting for job 1234 to succeed"
    assert flightjobd.dependency_words(dict(dep, type="afterany"), "Dependency") == "waiting for job 1234 to finish"
    assert flightjobd.dependency_words(dict(dep, type="afternotok"), "DependencyNeverSatisfied") == (
        "will never run: it was to start once job 1234 would fail, and that job did not fail")
    meta = {"dependency": dep}
    for reason in ("Dependency", "DependencyNeverSatisfied"):
        changes = flightjobd.JobStatus._status_changes(meta, {"state": "PENDING", "reason": reason,
                                                             "reason_text": "x"})
        assert "job 1234" in changes["reason_text"]
    # a job without one keeps the scheduler's words
    assert flightjobd.JobStatus._status_changes({}, {"state": "PENDING", "reason": "Dependency",
                                                    "reason_text": "waiting for the jobs it depends on"}
                                               )["reason_text"] == "waiting for the jobs it depends on"


def test_squeue_reasons_of_held_and_dependent_jobs():
    # squeue --noheader --array --states=all --Format=... of a held job, a
    # dependent one, and one whose dependency can never be satisfied
    text = "".join("|".join(f) + "|\n" for f in (
        ("41", "41", "N/A", "PENDING", "JobHeldUser", "0", "N/A", "N/A", "2026-11-26T13:00:00", "0:00",
         "1:00:00", "cpu=1,mem=100M,node=1,billing=1", "1001", "debug"),
        ("42", "42", "N/A", "PENDING", "Dependency", "0", "N/A", "N/A", "2026-11-26T13:00:01", "0:00",
         "30:00", "cpu=1,mem=100M,node=1,billing=1", "1001", "debug"),
        ("43", "43", "N/A", "PENDING", "DependencyNeverSatisfied", "0", "N/A", "N/A", "2026-11-26T13:00:02",
         "0:00", "5:00", "cpu=1,mem=100M,node=1,billing=1", "1001", "debug")))
    rows = flightjobd.parse_squeue(text)
    got = [(flightjobd._status(r)["state"], flightjobd._status(r)["reason"], flightjobd._status(r)["reason_text"],
            flightjobd._status(r)["time_limit"]) for r in rows]
    assert got == [("PENDING", "JobHeldUser", "held by the user", "1:00:00"),
                   ("PENDING", "Dependency", "waiting for the jobs it depends on", "0:30:00"),
                   ("PENDING", "DependencyNeverSatisfied", "will never run: a job it depends on failed", "0:05:00")]


def test_slurm_adapter_commands():
    calls = []

    def fake(argv, timeout, env=None, cwd=None):
        calls.append(argv)
        if argv[1] == "update" and argv[3] == "TimeLimit=2:00:00":
            raise flightjobd.SchedulerError("scontrol failed", stderr="slurm_update error: Access/permission denied\n",
                                            returncode=1)
        if argv[1] == "release":
            raise flightjobd.SchedulerError("scontrol failed", stderr="scontrol: error: Unable to contact slurm "
                                            "controller (connect failure)\n", returncode=1)
        return ""
    s = flightjobd.SlurmScheduler(run=fake)
    s.hold("12")
    s.set_time_limit("12", 600)
    s.set_time_limit("12", None)
    s.cancel("12_3")
    assert calls == [["scontrol", "hold", "12"], ["scontrol", "update", "JobId=12", "TimeLimit=0:10:00"],
                     ["scontrol", "update", "JobId=12", "TimeLimit=UNLIMITED"], ["scancel", "12_3"]]
    with pytest.raises(flightjobd.SchedulerRefused) as e:
        s.set_time_limit("12", 7200)
    assert e.value.message == ("Access/permission denied (Slurm lets you lower a job's time limit, and raise a "
                               "waiting job's only up to its partition's maximum time.)")
    with pytest.raises(flightjobd.SchedulerError) as e:  # the controller, not a refusal
        s.release("12")
    assert not isinstance(e.value, flightjobd.SchedulerRefused)
    for bad in ("12;rm", "-1", "12 13", "--help"):
        with pytest.raises(flightjobd.NotFound):
            s.hold(bad)
    assert len(calls) == 6


def test_local_dependency_spec_is_checked(tmp_path):
    s = flightjobd.LocalScheduler(str(tmp_path), "/bin/false", os.environ.get("USER", "u"))
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    for dep in ("afterok:99", "after:1", "afterok:1:2", "afterok:1,afterany:2", "singleton"):
        with pytest.raises(flightjobd.SchedulerRefused) as e:
            s.submit(str(script), ["--dependency=" + dep], str(tmp_path))
        assert "Job dependency problem" in e.value.message
