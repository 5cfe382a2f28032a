"""The shared status poll's two trust boundaries, without a cluster: what
root accepts from the poll's process (checked_statuses), and what a worker
records when handed statuses (JobStatus.take_statuses).
The poll against real Slurm: tests/test_shared_poll.py."""
import copy
import time

import pytest

import flightjobd

RUNNING = {"state": "RUNNING", "raw_state": "RUNNING", "reason": None, "reason_text": None,
           "exit_code": None, "signal": None, "started_at": "2026-11-26T09:00:00Z",
           "estimated_start_at": None, "ended_at": None, "elapsed_s": 60, "cpu_time_s": None,
           "max_rss_mb": None, "requested_mem_mb": 256.0, "time_limit": "1:00:00"}
DONE = dict(RUNNING, state="COMPLETED", raw_state="COMPLETED", exit_code=0,
            ended_at="2026-11-26T09:01:00Z")


def test_a_poll_answer_is_checked_field_by_field():
    ids = ["7", "8", "9_2"]
    got = flightjobd.checked_statuses({"statuses": {"7": RUNNING, "9_2": DONE}, "owners": {"7": 1001, "9_2": 1002},
                                       "outside": {"1001": {"12": RUNNING}}, "calls": {}}, ids)
    assert got == ({"7": RUNNING, "8": None, "9_2": DONE},  # 8: polled, not found
                   {"7": 1001, "9_2": 1002}, {1001: {"12": RUNNING}}, {}, {})
    # sacct failed for 8, the only source of its state: left out, with why
    got = flightjobd.checked_statuses({"statuses": {"7": RUNNING}, "undecided": {"8": "sacct timed out"}}, ids)
    assert got[0] == {"7": RUNNING, "9_2": None} and got[3] == {"8": "sacct timed out"}
    for bad in (None, [], {"statuses": []}, {"outside": {}}, {"statuses": {}, "owners": []}):
        with pytest.raises(ValueError):  # no poll's answer at all
            flightjobd.checked_statuses(bad, ids)
    # one job's status that is not one is left out of the round (undecided,
    # saying why), never the others'; an entry that is not one is ignored
    for bad, left_out in (
        ({"statuses": {"7": RUNNING, "9_2": DONE}, "owners": {"8": 1001, "7": "1001", "9_2": 1002}}, None),
        ({"statuses": {"9_2": DONE}, "outside": {"alice": {"12": RUNNING}, "1001": {"12; rm": RUNNING,
                                                                                    "13": dict(RUNNING, state="GONE")}}}, None),
        ({"statuses": {"7": RUNNING, "9_2": DONE}, "undecided": {"7": "decided after all", "10": "not asked",
                                                                 "8": ["not", "text"]}}, None),
        ({"statuses": {"9_2": DONE, "10": RUNNING}}, None),  # an id nobody asked for (another user's job, say)
        ({"statuses": {"9_2": DONE, "7": "RUNNING"}}, "no state"),
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, state="DONE")}}, "no state"),
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, reason_text="x" * 5000)}}, "'reason_text'"),
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, exit_code="0")}}, "'exit_code'"),
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, started_at="yesterday")}}, "'started_at'"),
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, elapsed_s=True)}}, "'elapsed_s'"),
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, results_dir="/etc")}}, "'results_dir'"),  # no status has it
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, tasks=[{"id": 1}])}}, "'tasks'"),
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, tasks=[{"id": "7_1", "state": "RUNNING"}] * 1003)}}, "'tasks'"),
        ({"statuses": {"9_2": DONE, "7": dict(RUNNING, tasks=[{"id": "7_1", "state": "RUNNING",
                                                                "reason_text": "x" * 1001}])}}, "'tasks'"),
    ):
        statuses, owners, outside, undecided, refused = flightjobd.checked_statuses(bad, ids)
        assert statuses["9_2"] == DONE and "10" not in statuses and set(owners) <= {"9_2"}, bad
        assert not outside and set(undecided) == ({"7"} if left_out else set()), bad
        if left_out:
            assert left_out in undecided["7"] and undecided["7"].startswith("job 7: ") and "7" not in statuses
            assert refused == {"7": (None, undecided["7"])}


def submitted(store, tmp_path, n):
    jobs = []
    for _ in range(n):
        s = store.script_create("serial", answers={"working_dir": str(tmp_path)})
        store.script_update(s["id"], content="#!/bin/bash\nsleep 30\n")
        jobs.append(store.job_submit(s["id"], {}))
    return jobs


def test_a_worker_records_only_what_was_polled(make_config, tmp_path, monkeypatch):
    """A worker handed statuses records them for its own jobs that were
    polled (None: polled, not listed: the UNKNOWN grace starts), leaves its
    other jobs alone, and ignores ids that are not its jobs; a notice sets
    the scheduler's state and changes no job. The scheduler is never asked."""
    monkeypatch.setenv("HOME", str(tmp_path))
    # pages' own refreshes wait an hour: only the handed statuses change jobs
    store = flightjobd.Store(make_config(scheduler={"refresh_interval": 3600}), "me")
    first, second, third = submitted(store, tmp_path, 3)
    asked = []
    real = store.scheduler.status
    store.scheduler.status = lambda ids: asked.append(ids) or {}
    try:
        sid = {j["id"]: j["scheduler_id"] for j in (first, second, third)}
        result = store.take_statuses(statuses={sid[first["id"]]: copy.deepcopy(DONE), sid[second["id"]]: None,
                                         "424242": copy.deepcopy(DONE)})
        assert asked == [] and result["ok"] is True
        states = {j["id"]: store.job_get(j["id"]) for j in (first, second, third)}
        assert (states[first["id"]]["state"], states[first["id"]]["exit_code"]) == ("COMPLETED", 0)
        assert states[second["id"]]["state"] in flightjobd.UNFINISHED
        assert states[second["id"]]["missing_since"] is not None  # the grace runs
        assert states[third["id"]]["state"] in flightjobd.UNFINISHED
        assert states[third["id"]]["missing_since"] is None  # not polled: untouched
        assert set(result["ids"]) == {sid[second["id"]], sid[third["id"]]}

        result = store.take_statuses(notice="The scheduler did not answer: squeue timed out after 20 seconds.")
        assert result["ok"] is False and "did not answer" in result["message"]
        assert store.jobs_list()["scheduler"]["ok"] is False
        assert {j["id"]: j["state"] for j in store.jobs_list()["jobs"]} == {
            j: s["state"] for j, s in states.items()}
        assert asked == []
    finally:
        store.scheduler.status = real
        for j in (first, second, third):
            store.scheduler.cancel(j["scheduler_id"])


def test_a_finished_job_waiting_for_its_detail_is_never_unfinished_again(make_config, tmp_path, monkeypatch):
    """A job Slurm has ended whose accounting is not whole yet is final at
    once (detail_pending) and stays followed; sacct's record then brings its
    reason; a status that is not final, or none, never makes it unfinished
    or UNKNOWN: it only ends the wait."""
    monkeypatch.setenv("HOME", str(tmp_path))
    store = flightjobd.Store(make_config(scheduler={"refresh_interval": 3600, "unknown_grace": 0}), "me")
    store.scheduler.ACCOUNTING_LAG = 60  # as Slurm's: the local scheduler has no accounting to wait for
    first, second = submitted(store, tmp_path, 2)
    store.scheduler.cancel(first["scheduler_id"])
    store.scheduler.cancel(second["scheduler_id"])
    now = flightjobd.now_iso()
    killed = dict(DONE, state="FAILED", raw_state="FAILED", exit_code=0, signal=9, ended_at=now,
                  reason="Signal", reason_text="killed by signal 9 (SIGKILL)", detail_pending=True)
    sid = {first["scheduler_id"]: first["id"], second["scheduler_id"]: second["id"]}
    result = store.take_statuses(statuses={s: copy.deepcopy(killed) for s in sid})
    assert set(result["ids"]) == set(sid) and result["unfinished"] == 2  # still followed
    for job_id in sid.values():
        job = store.job_get(job_id)
        assert (job["state"], job["finished"], job["detail_pending"]) == ("FAILED", True, True)
    oom = dict(killed, reason="OutOfMemory", reason_text="ran out of memory", max_rss_mb=700.0,
               detail_pending=False)
    a, b = sorted(sid)
    result = store.take_statuses(statuses={a: oom, b: dict(RUNNING)})
    assert result["ids"] == [] and result["unfinished"] == 0
    assert store.job_get(sid[a])["reason_text"] == "ran out of memory"
    late = store.job_get(sid[b])
    assert (late["state"], late["detail_pending"], late["reason_text"]) == (
        "FAILED", False, "killed by signal 9 (SIGKILL)")


def test_a_poll_takes_every_user_in_turn_within_its_bound():
    """No user's crowd of ids (a forged record list, say) crowds out the
    others, and one poll never asks about more than MAX_POLL_IDS ids; a
    Slurm id is at most 10 digits (a task id 7), so --jobs stays short."""
    bound = flightjobd.MAX_POLL_IDS
    wanted = {"aaron": [str(i) for i in range(10 ** 6, 10 ** 6 + 3 * bound)], "zoe": ["7", "8"],
              "mia": [str(i) for i in range(100, 110)]}
    asked = flightjobd.StatusPoll._fair_share(wanted)
    assert asked["zoe"] == ["7", "8"] and asked["mia"] == wanted["mia"]
    assert sum(map(len, asked.values())) == bound and asked["aaron"] == wanted["aaron"][:bound - 12]
    assert flightjobd.SCHEDULER_ID_RE.match("4294967294_9999999")
    for bad in ("7" * 11, "7_" + "1" * 8, "7" * 200000, "-1", "7,8", ""):
        assert not flightjobd.SCHEDULER_ID_RE.match(bad)
    source = flightjobd.StatusSource.__new__(flightjobd.StatusSource)  # its checks alone
    with pytest.raises(flightjobd.Invalid):
        source.perform("status.poll", {"followed": {"1001": [str(i) for i in range(bound + 1)]}})
    with pytest.raises(flightjobd.Invalid):
        source.perform("status.poll", {"followed": {"alice": ["7"]}})


@pytest.mark.root
def test_local_jobs_follow_the_same_schedule_and_pages_never_wait(multi_app, unix_users):
    """Multi-user on the local scheduler: pages ask the scheduler nothing;
    the poll's schedule has each worker make its pass (root reads no home),
    so a job that ends shows it on its page; another user is served."""
    a, web = multi_app(scheduler={"refresh_interval": 1})
    users = [unix_users.create() for _ in range(2)]
    basic = [u.basic() for u in users]
    jobs = []
    for u, auth in zip(users, basic):
        s = web.post_json("/api/scripts", {"template": "serial", "answers": {"working_dir": u.home}},
                          headers=auth).json
        web.patch_json("/api/scripts/" + s["id"], {"content": "#!/bin/bash\nsleep 2\nexit 4\n"}, headers=auth)
        jobs.append(web.post_json("/api/jobs", {"script": s["id"], "answers": {}}, headers=auth).json)
    end = time.time() + 60
    while True:
        seen = [web.get("/api/jobs/" + j["id"], headers=auth).json for j, auth in zip(jobs, basic)]
        if all(j["finished"] for j in seen) or time.time() > end:
            break
        time.sleep(0.3)
    assert [(j["state"], j["exit_code"]) for j in seen] == [("FAILED", 4)] * 2, seen
    assert a.pool.poll.round >= 2 and a.pool.poll.serving()
    # the poll stopped, a page's refresh asks the local scheduler nothing
    a.pool.poll.close()
    before = a.pool.call(users[0].name, "jobs.take_statuses", {})["calls"].get("status", 0)
    for _ in range(3):
        web.get("/api/jobs", headers=basic[0])
        web.get("/api/jobs/" + jobs[0]["id"], headers=basic[0])
    assert a.pool.call(users[0].name, "jobs.take_statuses", {})["calls"].get("status", 0) == before


SUMMARY = [dict({key: None for key in flightjobd.ACCESS_RULES}, name=name, default=name == "batch", state="up",
                cpus_free=10, cpus_total=16, nodes_free=0, nodes_total=1, gpus_free=0, gpus_total=0, waiting=2,
                root_only=False, exclusive=False, def_mem_per_cpu=None, def_mem_per_node=None, **rules)
           for name, rules in (("batch", {}), ("staff", {"allow_groups": ["no-such-group-fj"]}),
                               ("gpu", {"allow_accounts": ["gpuusers"]}))]


def test_a_worker_offers_only_the_partitions_its_user_may_use(make_config, tmp_path, monkeypatch):
    """The worker filters the partition summary by its own groups (it runs
    with the user's) and the user's Slurm associations, and a submit to a
    partition it does not offer is refused naming the field. Handed the
    shared poll's summary, it asks no scheduler for one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    store = flightjobd.Store(make_config(), "me")
    store.scheduler.read_info = lambda: {"partitions": [{"name": n, "default": n == "batch", "max_time": None}
                                                        for n in ("batch", "staff", "gpu")],
                                         "accounts": ["physics"]}
    store.scheduler.associations = lambda: {"accounts": ["physics"], "qos": []}
    asked = []
    store.scheduler.partition_summary = lambda: asked.append(1) or copy.deepcopy(SUMMARY)
    s = store.script_create("serial", answers={"working_dir": str(tmp_path)})
    sub = store.submission(s["id"])
    part = [q for q in sub["questions"] if q["id"] == "partition"][0]
    assert [o["value"] for o in part["options"]] == ["", "batch"]
    assert part["options"][1]["label"] == "batch (default), 10 of 16 cores free"
    assert [p["name"] for p in sub["cluster"]["partitions"]] == ["batch"] and sub["cluster"]["shared"] is False
    with pytest.raises(flightjobd.Invalid) as e:
        store.preview(s["id"], {"partition": "staff"})
    assert "partition" in e.value.fields
    store.submission(s["id"])
    assert asked == [1]  # cached a while
    # multi-user Slurm: the daemon hands the shared poll's summary; the worker asks for none
    monkeypatch.setattr(store, "shared_poll", lambda: True)
    monkeypatch.setattr(store.scheduler, "SHARED_POLL", True)  # as Slurm declares
    handed = {"partitions": [dict(p, cpus_free=3) for p in SUMMARY], "at": "2026-11-26T13:00:00Z"}
    sub = store.submission(s["id"], cluster=handed)
    assert [(p["name"], p["cpus_free"]) for p in sub["cluster"]["partitions"]] == [("batch", 3)]
    assert sub["cluster"]["shared"] is True and asked == [1]


def test_the_poll_makes_one_partition_summary_for_everyone_while_wanted(make_config):
    """The summary is made by the poll's process (checked field by field),
    at most every refresh_interval and only while a submit page wanted one
    in the last WATCHING seconds; one that fails keeps the last."""
    poll = flightjobd.StatusPoll.__new__(flightjobd.StatusPoll)
    poll.config = make_config(scheduler={"type": "slurm", "refresh_interval": 5})
    poll.cluster, poll.cluster_made, poll.cluster_wanted, poll.counters = None, -1e9, -1e9, {}
    answers = []

    class Source:
        def call(self, op, args, touch=True):
            assert (op, args) == ("status.partitions", {})
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer, None
    poll.source = Source()
    poll.thread = "its thread"  # (running)
    assert poll.cluster_summary(want=False) is None  # an API submit: the summary as it is, no demand
    now = time.monotonic()
    poll._cluster_tick(now)
    assert poll.cluster is None  # nobody wanted one: no call
    assert poll.cluster_summary() is None  # a page wants one
    now = poll.cluster_wanted
    answers.append({"partitions": copy.deepcopy(SUMMARY)})
    poll._cluster_tick(now)
    assert [p["name"] for p in poll.cluster["partitions"]] == ["batch", "staff", "gpu"]
    poll._cluster_tick(now + 1)  # not due: no call (answers is empty, a call would fail)
    answers.append({"partitions": [dict(SUMMARY[0], name="x;y")]})  # refused: the last one stays
    poll._cluster_tick(now + 6)
    assert [p["name"] for p in poll.cluster["partitions"]] == ["batch", "staff", "gpu"]
    answers.append(flightjobd.SchedulerError("sinfo timed out"))
    poll._cluster_tick(now + 12)
    assert poll.cluster is not None and poll.counters == {"partitions": 1}
    poll._cluster_tick(now + flightjobd.WATCHING + 1)  # nobody looked since: no call
    assert answers == []
