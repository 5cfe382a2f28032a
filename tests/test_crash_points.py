"""kill -9 at a certain moment, not a random one: a daemon whose worker is
armed with a test-only fault point (FLIGHTJOB_TEST_FAULT, see FAULT_POINTS
in flightjobd.py) is driven into one operation; its worker stops itself dead
at the named step (SIGSTOP, and a marker file naming the step); the test
checks it is that worker, frozen, at that step (and what is on disk at that
moment), kills the worker and the daemon with SIGKILL, restarts, and checks
that every script, job and local/N record is whole, old or new, and that a
submit of unknown outcome is neither lost nor duplicated and becomes UNKNOWN
only after its time bound. Real daemon processes, the local scheduler."""
import contextlib
import json
import os
import secrets
import signal
import threading
import time

import pytest

import flightjobd
from support import children, wait_for, wait_gone
from test_hardening import Api, Lost

pytestmark = pytest.mark.jobs  # real local jobs and processes killed, waited for: not the fast tier

WRITE_STEPS = ["write.before_write", "write.after_write", "write.after_fsync", "write.after_replace"]
QUIET = {"type": "local", "refresh_interval": 0, "background_refresh": 0}


def proc_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def text_of(tag, kib=200):
    """A distinctive text of about `kib` KiB: a torn write cannot pass for it."""
    line = "# %s %s\n" % (tag, secrets.token_hex(16))
    return "#!/bin/bash\n" + line * (kib * 1024 // len(line)) + "echo %s\n" % tag


def which(text, **known):
    """The name of the known text that text is, or how it is neither (big
    texts: no diff of 200 KiB in the failure message)."""
    names = [name for name, value in known.items() if text == value]
    return names[0] if names else "neither (%d bytes: %r...)" % (len(text), text[:80])


class World:
    """One state directory and the daemons that live on it, one at a time."""

    def __init__(self, make_daemon, tmp_path):
        self.make_daemon, self.tmp = make_daemon, tmp_path
        self.state = tmp_path / "state"
        self.out = tmp_path / "out"
        self.out.mkdir()
        self.marker = tmp_path / "fault-marker"

    def start(self, worker=None, **scheduler):
        d = self.make_daemon(worker=dict({"request_timeout": 120}, **(worker or {})),
                             scheduler=dict(QUIET, **scheduler))
        return d, Api(d)

    def job_script(self):
        """A job that records each run of it, so a duplicate would show."""
        return ("#!/bin/bash\n#SBATCH --chdir=%s\n#SBATCH --output=job-%%j.out\n"
                "echo run >> runs.txt\necho done\n" % self.out)

    def runs(self):
        path = self.out / "runs.txt"
        return path.read_text().count("run\n") if path.exists() else 0

    def local_ids(self):
        local = self.state / "local"
        return sorted(n for n in os.listdir(local) if n.isdigit()) if local.exists() else []

    def local_finished(self, n):
        with_status = self.state / "local" / n / "status.json"
        return with_status.exists() and flightjobd.read_json(with_status)["state"] in flightjobd.FINISHED

    def script(self, api, content=None, name="crash test", notes="old notes"):
        status, s = api("POST", "/api/scripts", {"template": "serial", "name": name, "notes": notes})
        assert status == 201, (status, s)
        status, s = api("PATCH", "/api/scripts/" + s["id"], {"content": content or self.job_script()})
        assert status == 200, (status, s)
        return s

    def cut(self, step, method, path, body=None, frozen=None):
        """Start a daemon armed at step, send one request, see its worker
        stop dead there, call frozen() while it is stopped, then kill -9 the
        daemon and the worker. The client never gets an answer."""
        with contextlib.suppress(FileNotFoundError):
            self.marker.unlink()
        d, api = self.start(environment={flightjobd.FAULT_ENV: "%s:%s" % (step, self.marker)})
        answer = []

        def send():
            try:
                answer.append(api(method, path, body))
            except Lost:
                answer.append("lost")
        thread = threading.Thread(target=send)
        thread.start()
        text = wait_for(lambda: self.marker.exists() and self.marker.read_text().endswith("\n")
                        and self.marker.read_text(), 30, "the worker to reach %s" % step, 0.05)
        name, pid = text.split()
        pid = int(pid)
        assert name == step.partition("@")[0]
        assert pid in children(d.proc.pid), "the marker is not from the daemon's worker"
        wait_for(lambda: proc_state(pid) == "T", 30, "the worker to stop", 0.05)
        assert d.proc.poll() is None and not answer, "the request ended before the kill"
        if frozen:
            frozen()
        d.proc.send_signal(signal.SIGKILL)  # the daemon first: the client gets no answer at all
        d.proc.wait()
        os.kill(pid, signal.SIGKILL)  # the worker never runs past the step
        wait_gone([pid])
        thread.join(30)
        assert answer == ["lost"], answer

    def scripts(self, api):
        status, listing = api("GET", "/api/scripts")
        assert status == 200
        assert not [s for s in listing["scripts"] if s.get("broken")], listing
        return listing["scripts"]

    def jobs(self, api):
        status, listing = api("GET", "/api/jobs?per_page=500")
        assert status == 200 and not listing["broken"], listing
        ids = [j["id"] for j in listing["jobs"]]
        assert len(ids) == len(set(ids)) == listing["total"]
        return listing["jobs"]

    def hidden(self, kind, prefix):
        return [n for n in os.listdir(self.state / kind) if n.startswith(prefix)]


@pytest.fixture
def world(make_daemon, tmp_path):
    return World(make_daemon, tmp_path)


def temp_files(directory, name):
    return sorted(directory.glob(".%s.*.tmp" % name))


# atomic_write


@pytest.mark.parametrize("step", WRITE_STEPS)
def test_script_edit_killed_inside_atomic_write_leaves_old_or_new(world, step):
    d, api = world.start()
    old = text_of("old")
    s = world.script(api, content=old)
    d.stop()
    new = text_of("new")
    folder = world.state / "scripts" / s["id"]
    replaced = step == "write.after_replace"

    def frozen():
        # the new content goes to a new file that meta.json does not name yet
        meta = json.loads((folder / "meta.json").read_text())
        assert which((folder / meta["content_file"]).read_text(), old=old, new=new) == "old"
        assert len(list(folder.glob(".*.tmp"))) == (0 if replaced else 1)
    world.cut(step, "PATCH", "/api/scripts/" + s["id"], {"content": new}, frozen)

    d, api = world.start()
    assert [x["id"] for x in world.scripts(api)] == [s["id"]]
    status, now = api("GET", "/api/scripts/" + s["id"])
    assert status == 200
    assert which(now["content"], old=old, new=new) == "old"
    # meta.json, the one switch, is written last: the cut left the pair as it was
    assert (now["version"], now["name"], now["notes"]) == (s["version"], s["name"], s["notes"])
    status, again = api("PATCH", "/api/scripts/" + s["id"], {"content": "#!/bin/bash\necho after\n"},
                        headers={"If-Match": now["etag"]})
    assert status == 200 and again["version"] == s["version"] + 1


COMMIT = [s + "@3" for s in WRITE_STEPS] + ["write.after_replace@1", "write.after_replace@2"]


@pytest.mark.parametrize("step", COMMIT)
def test_script_commit_killed_at_each_step_leaves_the_old_script_or_the_new_one(world, step):
    """An edit of content, notes and name writes the new content file (the
    1st atomic write), the new notes file (2nd), then meta.json, the switch
    (3rd): killed at every step of the switch, and after each new file is in
    place, the daemon shows all of the old script or all of the new one."""
    d, api = world.start()
    old, new = text_of("old"), text_of("new")
    s = world.script(api, content=old)
    d.stop()
    folder = world.state / "scripts" / s["id"]
    switched = step == "write.after_replace@3"
    nth = int(step[-1])

    def frozen():
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["version"] == s["version"] + switched
        assert which((folder / meta["content_file"]).read_text(), old=old, new=new) == ("new" if switched else "old")
        made = [p for p in folder.iterdir() if p.name.startswith(("script-", "notes-")) and p.name not in
                (s_meta["content_file"], s_meta["notes_file"])]
        assert len(made) == min(nth, 2) if step.startswith("write.after_replace") else len(made) == nth - 1, made
        writing = temp_files(folder, "meta.json") if nth == 3 else list(folder.glob(".*.tmp"))
        assert len(writing) == (0 if step.startswith("write.after_replace") else 1), writing
    s_meta = json.loads((folder / "meta.json").read_text())
    world.cut(step, "PATCH", "/api/scripts/" + s["id"], {"content": new, "notes": "new notes", "name": "renamed"},
              frozen)

    d, api = world.start()
    assert [x["id"] for x in world.scripts(api)] == [s["id"]]
    status, now = api("GET", "/api/scripts/" + s["id"])
    assert status == 200
    got = (which(now["content"], old=old, new=new), now["notes"], now["name"], now["version"])
    if switched:
        assert got == ("new", "new notes", "renamed", s["version"] + 1), got
    else:
        assert got == ("old", s["notes"], s["name"], s["version"]), got
    status, again = api("PATCH", "/api/scripts/" + s["id"], {"notes": "after"}, headers={"If-Match": now["etag"]})
    assert status == 200 and again["version"] == now["version"] + 1 and again["content"] == now["content"]


@pytest.mark.parametrize("step", WRITE_STEPS)
def test_job_record_update_killed_inside_atomic_write_leaves_old_or_new(world, step):
    d, api = world.start()
    s = world.script(api)
    status, job = api("POST", "/api/jobs", {"script": s["id"], "answers": {}})
    assert status == 201 and job["scheduler_id"] == "1" and job["state"] == "PENDING", job
    d.stop()  # before any refresh: the record still says PENDING
    wait_for(lambda: world.local_finished("1"), 30, "the local job to finish", 0.05)
    meta = world.state / "jobs" / job["id"] / "meta.json"
    assert flightjobd.read_json(meta)["state"] == "PENDING"
    replaced = step == "write.after_replace"
    expected = "COMPLETED" if replaced else "PENDING"

    def frozen():  # the refresh is writing the job's final state
        assert flightjobd.read_json(meta)["state"] == expected
        assert len(temp_files(meta.parent, "meta.json")) == (0 if replaced else 1)
    world.cut(step, "GET", "/api/jobs/" + job["id"], frozen=frozen)
    assert flightjobd.read_json(meta)["state"] == expected  # whole JSON, old or new, after the kill

    d, api = world.start()
    assert [j["id"] for j in world.jobs(api)] == [job["id"]]
    status, now = api("GET", "/api/jobs/" + job["id"])
    assert status == 200 and now["state"] == "COMPLETED" and now["scheduler_id"] == "1", now
    assert world.runs() == 1


# directories made and removed by rename


@pytest.mark.parametrize("step", ["create.before_rename", "create.after_rename"])
def test_script_create_killed_at_the_rename_makes_all_or_nothing(world, step):
    notes = text_of("notes", 50)
    renamed = step == "create.after_rename"
    scripts = world.state / "scripts"

    def frozen():
        made = world.hidden("scripts", ".new-")
        visible = [n for n in os.listdir(scripts) if not n.startswith(".")]
        if renamed:
            assert made == [] and len(visible) == 1
        else:
            assert len(made) == 1 and visible == []
            names = sorted(os.listdir(scripts / made[0]))
            assert len(names) == 3 and names[0] == "meta.json", names
            assert names[1].startswith("notes-") and names[2].startswith("script-"), names
    world.cut(step, "POST", "/api/scripts", {"template": "serial", "name": "made at the cut", "notes": notes},
              frozen)

    d, api = world.start()
    listing = world.scripts(api)
    if not renamed:
        assert listing == []
        return
    assert [x["name"] for x in listing] == ["made at the cut"]
    status, s = api("GET", "/api/scripts/" + listing[0]["id"])
    assert status == 200 and which(s["notes"], sent=notes) == "sent" and s["content"].startswith("#!/bin/bash")


def test_job_submit_killed_before_its_record_is_renamed_submits_nothing(world):
    d, api = world.start()
    s = world.script(api)
    d.stop()

    def frozen():
        made = world.hidden("jobs", ".new-")
        assert len(made) == 1 and sorted(os.listdir(world.state / "jobs" / made[0])) == ["meta.json", "script.sh"]
    world.cut("create.before_rename", "POST", "/api/jobs", {"script": s["id"], "answers": {}}, frozen)

    d, api = world.start()
    assert world.jobs(api) == []
    assert world.local_ids() == [] and world.runs() == 0  # the scheduler was never asked


def test_script_delete_killed_after_the_rename_is_gone_whole(world):
    d, api = world.start()
    s = world.script(api)
    keep = world.script(api, name="kept")
    d.stop()

    def frozen():
        assert not (world.state / "scripts" / s["id"]).exists()
        assert len(world.hidden("scripts", ".gone-")) == 1
    world.cut("remove.after_rename", "DELETE", "/api/scripts/" + s["id"], frozen=frozen)

    d, api = world.start()
    assert [x["id"] for x in world.scripts(api)] == [keep["id"]]
    status, _ = api("GET", "/api/scripts/" + s["id"])
    assert status == 404
    status, kept = api("GET", "/api/scripts/" + keep["id"])
    assert status == 200 and which(kept["content"], before=keep["content"]) == "before"


def test_job_remove_killed_after_the_rename_is_gone_whole_results_kept(world):
    d, api = world.start()
    s = world.script(api)
    status, job = api("POST", "/api/jobs", {"script": s["id"], "answers": {}})
    assert status == 201
    wait_for(lambda: api("GET", "/api/jobs/" + job["id"])[1]["state"] == "COMPLETED", 30, "the job to finish", 0.05)
    d.stop()
    output = world.out / "job-1.out"
    assert output.read_text() == "done\n"

    def frozen():
        assert not (world.state / "jobs" / job["id"]).exists()
        assert len(world.hidden("jobs", ".gone-")) == 1
    world.cut("remove.after_rename", "DELETE", "/api/jobs/" + job["id"], frozen=frozen)

    d, api = world.start()
    assert world.jobs(api) == []
    status, _ = api("GET", "/api/jobs/" + job["id"])
    assert status == 404
    assert output.read_text() == "done\n" and world.runs() == 1


# the submit sequence


@pytest.mark.parametrize("step", ["submit.after_record", "submit.before_answer", "submit.after_answer"])
def test_submit_killed_at_each_step_is_never_lost_never_duplicated(world, step):
    d, api = world.start()
    s = world.script(api)
    d.stop()
    jobs = world.state / "jobs"
    asked = step != "submit.after_record"  # the scheduler has the job

    def frozen():
        ids = [n for n in os.listdir(jobs) if not n.startswith(".")]
        assert len(ids) == 1
        meta = flightjobd.read_json(jobs / ids[0] / "meta.json")
        if step == "submit.after_answer":
            assert (meta["scheduler_id"], meta["raw_state"]) == ("1", "PENDING"), meta
        else:
            assert (meta["scheduler_id"], meta["raw_state"]) == (None, "SUBMITTING"), meta
        assert world.local_ids() == (["1"] if asked else [])
        assert not asked or (world.state / "local" / "1" / "spec.json").exists()
    world.cut(step, "POST", "/api/jobs", {"script": s["id"], "answers": {}}, frozen)
    killed_at = time.time()

    # restarted with the default bound (request_timeout + scheduler.timeout):
    # the job is there, once, and not called UNKNOWN before the bound
    d, api = world.start(worker={"request_timeout": 600})
    listing = world.jobs(api)
    assert len(listing) == 1
    job = listing[0]
    assert job["script_id"] == s["id"]
    if step == "submit.after_answer":
        job = wait_for(lambda: [j for j in world.jobs(api) if j["state"] == "COMPLETED"], 30, "the job to complete", 0.05)[0]
        assert job["scheduler_id"] == "1"
    else:
        assert time.time() - killed_at < 600
        assert (job["state"], job["raw_state"], job["scheduler_id"]) == ("PENDING", "SUBMITTING", None), job
        d.stop()
        # past a short bound (1 s + 1 s): UNKNOWN, still once, removable
        d, api = world.start(worker={"request_timeout": 1}, timeout=1, unknown_grace=1)
        wait_for(lambda: time.time() - flightjobd.parse_iso(job["submitted_at"]) > 2.5, 30, "the bound", 0.05)
        status, job = api("GET", "/api/jobs/" + job["id"])
        assert status == 200
        assert (job["state"], job["raw_state"]) == ("UNKNOWN", "SUBMIT_INTERRUPTED"), job
        assert "may or may not" in job["reason_text"]
        assert [j["id"] for j in world.jobs(api)] == [job["id"]]
    # the scheduler ran it exactly once if it was asked, never if not
    if asked:
        wait_for(lambda: world.local_finished("1"), 30, "the local job to finish", 0.05)
    assert world.local_ids() == (["1"] if asked else [])
    assert world.runs() == (1 if asked else 0)
    if job["state"] == "UNKNOWN":
        status, _ = api("DELETE", "/api/jobs/" + job["id"])
        assert status == 204
        assert world.jobs(api) == []


def test_an_unknown_fault_point_stops_the_worker_instead_of_passing(world):
    """A misspelt step must not let a crash test pass without its crash."""
    d, api = world.start(environment={flightjobd.FAULT_ENV: "write.after_fsync"})
    status, _ = api("GET", "/api/scripts")  # a read reaches no fault point
    assert status == 200
    d.stop()
    # (a short request bound: a request sent while a dying worker is still
    # exiting waits out the bound before its 503)
    for misspelt in ("write.after_fsnyc", "write.after_fsync@0", "write.after_fsync@x", "write.after_fsync@"):
        d, api = world.start(worker={"request_timeout": 3}, environment={flightjobd.FAULT_ENV: misspelt})
        status, body = api("GET", "/api/scripts")
        assert status == 503, (misspelt, status, body)
        d.stop()
