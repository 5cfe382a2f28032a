"""Hold and release, a pending job's time limit, start after one of my
jobs, and cancelling one array task, on the real Slurm cluster (as
tests/test_control.py does on the local scheduler)."""
import pytest

from support import UnixUsers, wait_for
from test_slurm import Site

pytestmark = [pytest.mark.slurm, pytest.mark.root]

LATER = "#SBATCH --begin=now+1hour"  # pending for an hour: reason BeginTime


@pytest.fixture(scope="module")
def site(slurm_cluster, runtime, pam_service):
    slurm_cluster.ensure(accounting=True)
    users = UnixUsers()
    s = Site(runtime, slurm_cluster, users.create())
    yield s
    s.close()
    slurm_cluster.run("scancel", "--user", s.user.name)
    users.remove_all()


def submit_after(site, body, kind, first, directives=""):
    return site.api("POST", "/api/jobs", {"script": site.script(body, directives), "answers": {},
                                          "after": {"job": first["id"], "type": kind}}, status=201)


def polled_job(site, job, until):
    """The job once until(job) holds, each look after a whole poll round."""
    def look():
        site.polled()
        now = site.api("GET", "/api/jobs/" + job["id"])
        return now if until(now) else None
    return wait_for(look, 120, "job %s as expected" % job["id"], interval=0)


def form_of(page, action):
    return page.forms[[f.action for f in page.forms.values()].index(action)]


def test_hold_then_release(site):
    job = site.wait(site.submit("true", LATER), until=("PENDING",))
    held = site.api("POST", "/api/jobs/%s/hold" % job["id"])
    assert (held["state"], held["reason"], held["reason_text"]) == ("PENDING", "JobHeldUser", "held by the user")
    page = site.pages.get("/jobs/" + job["id"])
    assert "held by the user" in page.text and page.html.find(id="release")
    form_of(page, "/jobs/%s/release" % job["id"]).submit(status=303)
    released = polled_job(site, job, lambda j: j["reason"] != "JobHeldUser")
    assert released["state"] == "PENDING" and released["reason"] in ("BeginTime", None), released
    site.api("POST", "/api/jobs/%s/cancel" % job["id"])
    # a job that has finished cannot be held
    done = site.wait(site.submit("true"))
    site.api("POST", "/api/jobs/%s/hold" % done["id"], status=409)


def test_time_limit_lowered_then_raising_refused_in_slurms_words(site):
    job = site.wait(site.submit("true", LATER, answers={"time": "0-00:10:00"}), until=("PENDING",))
    lowered = site.api("POST", "/api/jobs/%s/time-limit" % job["id"], {"time_limit": "5"})
    assert lowered["time_limit"] == "0:05:00"
    # a waiting job's limit may be raised up to its partition's MaxTime (debug: 1 hour), no further
    raised = site.api("POST", "/api/jobs/%s/time-limit" % job["id"], {"time_limit": "0-00:30:00"})
    assert raised["time_limit"] == "0:30:00"
    r = site.web.post_json("/api/jobs/%s/time-limit" % job["id"], {"time_limit": "0-02:00:00"},
                           headers=site.user.basic(), status=422)
    err = r.json["error"]
    assert err["code"] == "refused" and "denied" in err["message"].lower(), err
    assert "partition's maximum time" in err["message"], err
    page = site.pages.get("/jobs/" + job["id"])
    r = form_of(page, "/jobs/%s/time-limit" % job["id"])
    r["time_limit"] = "0-02:00:00"
    r = r.submit(status=422)
    assert err["message"] in r.html.find(id="time-limit").text
    assert r.html.find(id="time_limit")["value"] == "0-02:00:00"
    assert site.api("GET", "/api/jobs/" + job["id"])["time_limit"] == "0:30:00"
    # raised from the page: it says so, and its help says what Slurm allows
    r = form_of(page, "/jobs/%s/time-limit" % job["id"])
    r["time_limit"] = "0-00:40:00"
    r = r.submit(status=303).follow()
    assert r.html.find(id="job-done").text == "Done: the time limit is now 0:40:00."
    assert "raise it up to the longest its partition allows" in r.html.find(id="time-limit").text
    site.api("POST", "/api/jobs/%s/cancel" % job["id"])


def test_afterok_chain(site):
    first = site.submit("sleep 30")
    second = submit_after(site, "echo second", "afterok", first)
    assert "--dependency=afterok:%s" % first["scheduler_id"] in second["command"]
    waiting = polled_job(site, second, lambda j: j["reason"] == "Dependency")
    assert waiting["reason_text"] == "waiting for job %s to succeed" % first["scheduler_id"]
    page = site.pages.get("/jobs/" + second["id"])
    assert "waiting for job %s to succeed" % first["scheduler_id"] in page.text
    assert page.html.find(id="dependency").find("a")["href"] == "/jobs/" + first["id"]
    assert site.wait(first)["state"] == "COMPLETED"
    assert site.wait(second)["state"] == "COMPLETED"


def test_afternotok_never_satisfied_is_shown_with_cancel(site):
    first = site.submit("true")
    second = submit_after(site, "echo never", "afternotok", first)
    assert site.wait(first)["state"] == "COMPLETED"
    never = polled_job(site, second, lambda j: j["reason"] == "DependencyNeverSatisfied")
    assert never["state"] == "PENDING" and never["reason_text"] == (
        "will never run: it was to start once job %s would fail, and that job did not fail" % first["scheduler_id"])
    page = site.pages.get("/jobs/" + second["id"])
    assert "will never run" in page.html.find(id="never-runs").text
    form_of(page, "/jobs/%s/cancel" % second["id"]).submit(status=303)
    assert site.wait(second)["state"] == "CANCELLED"


def test_array_task_output_link_and_single_task_cancel(site):
    job = site.submit('echo "task $SLURM_ARRAY_TASK_ID"; sleep 5',
                      "#SBATCH --array=1-3%1\n#SBATCH --output=arr-%A_%a.out")
    sid = job["scheduler_id"]
    job = polled_job(site, job, lambda j: len(j["tasks"]) == 3 and j["tasks"][2]["state"] == "PENDING")
    page = site.pages.get("/jobs/" + job["id"])
    link = page.html.find("tr", attrs={"data-task": "%s_3" % sid}).find("a", class_="danger")
    confirm = site.pages.get(link["href"])
    form_of(confirm, "/jobs/%s/tasks/3/cancel" % job["id"]).submit(status=303)
    done = site.wait(job)
    states = {t["id"]: t["state"] for t in done["tasks"]}
    assert states == {"%s_1" % sid: "COMPLETED", "%s_2" % sid: "COMPLETED", "%s_3" % sid: "CANCELLED"}, done
    page = site.pages.get("/jobs/" + job["id"])
    out = page.html.find("tr", attrs={"data-task": "%s_2" % sid}).find("a", href="/jobs/%s/files/arr-%s_2.out"
                                                                          % (job["id"], sid))
    assert site.pages.get(out["href"]).text.count("task 2") >= 1
