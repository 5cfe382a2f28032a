"""Scheduler commands that hang, fail or print garbage, on the real Slurm
cluster. The faults come from wrapper scripts first on the worker's PATH
(worker.path): each runs the real command unless the test has written a
bash snippet in its control file, which then runs instead (`real "$@"`
calls the real command). The guarantees (DESIGN.md, "Jobs"): a job is never
marked finished because a scheduler command failed, timed out or answered
garbage, and the pages and the API say the scheduler did not answer; a
cancel that fails says so and changes nothing; a submit that fails is a
FAILED job with the scheduler's message, and one whose outcome is unknown is
found in the queue if the scheduler has it, else UNKNOWN after the bound:
never a duplicate, never lost."""
import os
import shlex
import shutil
import tempfile
import time

import pytest

from support import UnixUsers
from test_slurm import Site, slurm_state, wait_slurm_state

pytestmark = [pytest.mark.slurm, pytest.mark.root]

TIMEOUT = 2  # scheduler.timeout: a hang is cut short after this
REQUEST_TIMEOUT = 10  # worker.request_timeout; with TIMEOUT, the bound of a submit

HANG = "exec sleep 300"
GARBAGE = r"printf '<html>502 Bad Gateway</html>\n\x01\xfe|7|RUNNING|\n'; exit 0"
# squeue's real answer for a job id slurmctld has forgotten: only sacct knows it then
FORGOTTEN = 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1'


def fail(message):
    return "echo %s >&2; exit 1" % shlex.quote(message)


class Faults:
    """Wrapper scripts for sacct, sbatch, scancel and squeue in a directory
    every user can read; set(command, snippet) makes the command run the
    snippet instead, clear() makes them all real again."""

    COMMANDS = ("sacct", "sbatch", "scancel", "squeue")

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="flightjob-faults-", dir="/tmp")
        self.bin, self.ctl = os.path.join(self.dir, "bin"), os.path.join(self.dir, "ctl")
        os.mkdir(self.bin)
        os.mkdir(self.ctl)
        for name in self.COMMANDS:
            real = shutil.which(name)
            with open(os.path.join(self.bin, name), "w") as f:
                f.write('#!/bin/bash\nreal() { %s "$@"; }\n[ -r %s ] && . %s\nexec %s "$@"\n'
                        % (real, self._control(name), self._control(name), real))
        for d in (self.dir, self.bin, self.ctl):
            os.chmod(d, 0o755)
        for name in self.COMMANDS:
            os.chmod(os.path.join(self.bin, name), 0o755)
        self.path = self.bin + ":/usr/local/bin:/usr/bin:/bin"

    def _control(self, name):
        return os.path.join(self.ctl, name)

    def set(self, name, snippet):
        tmp = self._control(name) + ".tmp"
        with open(tmp, "w") as f:
            f.write(snippet + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self._control(name))  # a command starting now reads all of it or none

    def clear(self):
        for name in self.COMMANDS:
            if os.path.exists(self._control(name)):
                os.unlink(self._control(name))

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def faults():
    f = Faults()
    yield f
    f.remove()


@pytest.fixture(scope="module")
def site(slurm_cluster, runtime, pam_service, faults):
    """A user on the accounting cluster whose worker runs the wrappers, with
    short timeouts and no grace before UNKNOWN: a job wrongly taken as gone
    would show at once."""
    slurm_cluster.ensure(accounting=True)
    users = UnixUsers()
    s = Site(runtime, slurm_cluster, users.create(),
             worker={"path": faults.path, "request_timeout": REQUEST_TIMEOUT},
             scheduler=slurm_cluster.scheduler(timeout=TIMEOUT, unknown_grace=0))
    s.csrf = s.pages.get("/api/session").json["csrf_token"]
    yield s
    s.close()
    slurm_cluster.run("scancel", "--user", s.user.name)
    users.remove_all()


@pytest.fixture(autouse=True)
def no_faults_left(faults):
    faults.clear()
    yield
    faults.clear()


def slurm_jobs(cluster, user, script):
    """The ids of the jobs slurmctld has whose batch script is script."""
    out = cluster.run("squeue", "--noheader", "--states=all", "--user=" + user.name,
                      "--Format=ArrayJobID:|,Command:|")
    return sorted(line.split("|")[0] for line in out.splitlines() if line.split("|")[1:2] == [script])


def running(site):
    return site.wait(site.submit("sleep 300"), until=("RUNNING",))


def cancel_and_wait(site, job):
    site.api("POST", "/api/jobs/%s/cancel" % job["id"])
    job = site.wait(job)
    assert (job["state"], job["reason_text"]) == ("CANCELLED", "cancelled by the user")


# status: squeue (then sacct, for what squeue no longer lists)

SLURM_DOWN = "slurm_load_jobs error: Socket timed out on send/recv operation"


@pytest.mark.parametrize("command, fault, words", [
    ("squeue", HANG, "squeue timed out after %d seconds" % TIMEOUT),
    ("squeue", fail("squeue: error: " + SLURM_DOWN), SLURM_DOWN),
    ("squeue", GARBAGE, "squeue answered with output flightjobd cannot read"),
    ("sacct", HANG, "sacct timed out after %d seconds" % TIMEOUT),
    ("sacct", fail("sacct: error: Problem talking to the database: Connection refused"),
     "Problem talking to the database"),
    ("sacct", GARBAGE, "sacct answered with output flightjobd cannot read"),
], ids=["squeue-hangs", "squeue-fails", "squeue-garbage", "sacct-hangs", "sacct-fails", "sacct-garbage"])
def test_a_status_fault_changes_no_job_and_says_so(site, faults, slurm_cluster, command, fault, words):
    job = running(site)
    if command == "sacct":
        faults.set("squeue", FORGOTTEN)  # only sacct can tell, and it does not
    faults.set(command, fault)
    start = time.time()
    site.polled()  # the shared poll, in the background, meets the fault
    assert time.time() - start < 60  # the 2 s scheduler timeout, not the 300 s hang
    listing = site.api("GET", "/api/jobs?per_page=500")
    assert listing["scheduler"]["ok"] is False and words in listing["scheduler"]["message"]
    assert {j["id"]: j["state"] for j in listing["jobs"]}[job["id"]] == "RUNNING"
    one = site.api("GET", "/api/jobs/" + job["id"])
    assert (one["state"], one["ended_at"], one["missing_since"]) == ("RUNNING", None, None)
    assert one["scheduler_state"]["ok"] is False and words in one["scheduler_state"]["message"]
    for page in ("/jobs", "/jobs/" + job["id"]):
        text = site.pages.get(page, status=200).text
        assert "The scheduler did not answer" in text and "Running" in text
    faults.clear()
    site.polled()
    one = site.api("GET", "/api/jobs/" + job["id"])
    assert one["state"] == "RUNNING" and one["scheduler_state"]["ok"] is True  # all recovers
    cancel_and_wait(site, job)


@pytest.mark.parametrize("fault", [HANG, fail("sacct: error: Problem talking to the database"), GARBAGE],
                         ids=["hangs", "fails", "garbage"])
def test_a_sacct_fault_leaves_squeue_the_last_word_on_an_ended_job(site, faults, slurm_cluster, fault):
    """sacct only adds detail to what squeue says has ended: its fault keeps
    the job from neither its true end nor its exit code."""
    job = site.submit("exit 4")
    wait_slurm_state(slurm_cluster, job["scheduler_id"], "FAILED", 120)  # the daemon has not looked
    faults.set("sacct", fault)
    job = site.wait(job, timeout=60)
    assert (job["state"], job["exit_code"], job["reason_text"]) == ("FAILED", 4, "exit code 4")


# cancel: scancel

@pytest.mark.parametrize("fault, words", [
    (HANG, "scancel timed out after %d seconds" % TIMEOUT),
    (fail("scancel: error: Kill job error on job id 1: Unable to contact slurm controller (connect failure)"),
     "Unable to contact slurm controller"),
    (GARBAGE, "scancel answered with output flightjobd cannot read"),
], ids=["hangs", "fails", "garbage"])
def test_a_cancel_that_fails_says_so_and_a_later_one_works(site, faults, slurm_cluster, fault, words):
    job = running(site)
    faults.set("scancel", fault)
    r = site.web.post("/api/jobs/%s/cancel" % job["id"], headers=site.user.basic(), status=503)
    assert r.json["error"]["code"] == "scheduler" and words in r.json["error"]["message"]
    page = site.pages.post("/jobs/%s/cancel" % job["id"], {"csrf": site.csrf}, status=503)
    assert words in page.text
    after = site.api("GET", "/api/jobs/" + job["id"])
    assert (after["state"], after["cancel_requested_at"], after["ended_at"]) == ("RUNNING", None, None)
    assert slurm_state(slurm_cluster, job["scheduler_id"]) == "RUNNING"
    faults.clear()
    cancel_and_wait(site, job)


# submit: sbatch

REFUSAL = "Batch job submission failed: Invalid account or account/partition combination specified"
UNREACHABLE = "Batch job submission failed: Unable to contact slurm controller (connect failure)"
ANSWER_LOST = "Batch job submission failed: Socket timed out on send/recv operation"


@pytest.mark.parametrize("fault, outcome", [
    # what sbatch did                                        what the job must be
    (fail("sbatch: error: " + REFUSAL), "refused"),
    (fail("sbatch: error: " + UNREACHABLE), "failed"),
    (HANG, "unknown"),  # killed before it sent anything
    (fail("sbatch: error: " + ANSWER_LOST), "unknown"),  # the answer was lost: it may have submitted
    (GARBAGE, "unknown"),  # exit 0 says it submitted, but no job id
    ('real "$@"; exec sleep 300', "kept"),  # submitted, printed the id, hung
    ('real "$@" || exit; echo "sbatch: fatal: Segmentation fault (simulated)" >&2; exit 139', "kept"),
    ('real "$@" >/dev/null; exec sleep 300', "found"),  # submitted, hung silently
    ('real "$@" >/dev/null; ' + fail("sbatch: error: " + ANSWER_LOST), "found"),
    ('real "$@" >/dev/null; ' + GARBAGE, "found"),
], ids=["refused", "unreachable", "hangs", "answer-lost", "garbage", "submits-prints-hangs",
        "submits-prints-crashes", "submits-hangs", "submits-answer-lost", "submits-garbage"])
def test_a_submit_fault_is_never_a_lost_or_duplicated_job(site, faults, slurm_cluster, fault, outcome):
    faults.set("sbatch", fault)
    job = site.submit("echo submitted once")
    faults.clear()
    script = job["command"][-1]
    if outcome in ("refused", "failed"):
        message = REFUSAL if outcome == "refused" else UNREACHABLE
        assert (job["state"], job["raw_state"]) == ("FAILED", {"refused": "REFUSED", "failed": "SUBMIT_FAILED"}[outcome])
        assert message in job["reason_text"] and job["scheduler_id"] is None
        assert message in site.pages.get("/jobs/" + job["id"]).text
        assert slurm_jobs(slurm_cluster, site.user, script) == []
        return
    if outcome == "unknown":
        assert (job["state"], job["raw_state"], job["scheduler_id"]) == ("PENDING", "SUBMITTING", None)
        assert "the outcome of the submission is not known yet" in job["reason_text"], job
        site.api("DELETE", "/api/jobs/" + job["id"], status=409)  # it may yet be found
        job = site.wait(job, until=("UNKNOWN",), timeout=REQUEST_TIMEOUT + TIMEOUT + 60)
        assert job["state"] == "UNKNOWN" and "may or may not have run" in job["reason_text"], job
        assert job["scheduler_id"] is None and slurm_jobs(slurm_cluster, site.user, script) == []
        site.api("DELETE", "/api/jobs/" + job["id"], status=204)
        return
    found = slurm_jobs(slurm_cluster, site.user, script)
    assert len(found) == 1, found  # sbatch ran once: never again
    if outcome == "kept":  # it printed the id before it hung or crashed
        assert (job["state"], job["scheduler_id"]) == ("PENDING", found[0]), job
    else:
        assert (job["raw_state"], job["scheduler_id"]) == ("SUBMITTING", None), job
        assert "the outcome of the submission is not known yet" in job["reason_text"], job
        job = site.api("GET", "/api/jobs/" + job["id"])  # a refresh looks for it
        assert job["scheduler_id"] == found[0], job
    job = site.wait(job)
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0)
    assert open(job["stdout_path"]).read() == "submitted once\n"
    assert slurm_jobs(slurm_cluster, site.user, script) == found
    listing = site.api("GET", "/api/jobs?per_page=500")["jobs"]
    assert [j["id"] for j in listing if j["scheduler_id"] == found[0]] == [job["id"]]
