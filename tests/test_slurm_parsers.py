"""Unit tests of the Slurm adapter's parsers on real Slurm 22.05 output.

The files in tests/data/slurm/ were captured from the single-node test
cluster (tests/slurm/cluster) by submitting, as an ordinary user, the jobs
named in jobs.json; see tests/data/slurm/README.md for what each holds.
"""

import json
import os
import time

import pytest

import flightjobd as sa

DATA = os.path.join(os.path.dirname(__file__), "data", "slurm")
JOBS = json.load(open(os.path.join(DATA, "jobs.json")))


# The sacct captures predate the last fields of SACCT_FIELDS (AllocCPUS,
# NNodes, NTasks, AveRSS, for efficiency): they are read with those fields
# empty, as sacct prints a field it has no value for.
SACCT_CAPTURED = 15


def data(name):
    with open(os.path.join(DATA, name)) as f:
        text = f.read()
    if name.startswith("sacct_"):
        pad = "|" * (len(sa.SACCT_FIELDS) - SACCT_CAPTURED)
        text = "".join(line + pad + "\n" for line in text.splitlines())
    return text


@pytest.fixture(autouse=True)
def utc_and_capture_time(monkeypatch):
    """Slurm printed these times in UTC; "now" is just after the capture."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(sa, "_now", lambda: sa.parse_iso("2026-11-25T15:39:10Z"))
    yield
    monkeypatch.undo()
    time.tzset()


class FakeRun:
    """Stands in for flightjobd's run(): answers from captured files."""

    def __init__(self, answers):
        self.answers = answers  # command name -> text, or exception
        self.calls = []

    def __call__(self, argv, timeout, cwd=None, env=None):
        self.calls.append(argv)
        answer = self.answers[argv[0]]
        if isinstance(answer, Exception):
            raise answer
        return answer


def error(stderr, returncode=1):
    return sa.SchedulerError("command failed: " + stderr.strip(), stderr=stderr, returncode=returncode)


def scheduler(squeue, sacct="", accounting=True, **more):
    config = data("scontrol_show_config.txt")
    if not accounting:
        config = config.replace("accounting_storage/slurmdbd", "accounting_storage/none")
    answers = {"squeue": squeue, "sacct": sacct, "scontrol": config}
    answers.update(more)
    fake = FakeRun(answers)
    return sa.SlurmScheduler(run=fake), fake


# ---------------------------------------------------------------- basics ----


def test_parse_slurm_time_converts_local_time_to_utc(monkeypatch):
    assert sa.parse_slurm_time("2026-11-25T15:33:04") == "2026-11-25T15:33:04Z"
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    assert sa.parse_slurm_time("2026-11-25T15:33:04") == "2026-11-25T20:33:04Z"
    assert sa.parse_slurm_time("2026-07-01T12:00:00") == "2026-07-01T16:00:00Z"  # DST
    for empty in ("N/A", "Unknown", "None", "", None):
        assert sa.parse_slurm_time(empty) is None


@pytest.mark.parametrize("text, seconds", [
    ("0:00", 0), ("1:01", 61), ("1:00", 60), ("5:00", 300), ("1:00:00", 3600),
    ("01:00:00", 3600), ("00:01:00", 60), ("2-00:00:00", 172800),
    ("3-00:00:00", 259200), ("00:00.004", 0), ("01:02.600", 63),
    ("1-02:03:04", 93784), ("2-3", 2 * 86400 + 3 * 3600), ("5", 300),
    ("UNLIMITED", None), ("Partition_Limit", None), ("INVALID", None),
    ("", None), (None, None),
])
def test_parse_duration(text, seconds):
    assert sa.parse_duration(text) == seconds


def test_format_duration():
    assert sa.format_duration(60) == "0:01:00"
    assert sa.format_duration(3600) == "1:00:00"
    assert sa.format_duration(172800) == "2-00:00:00"
    assert sa.format_duration(None) is None


@pytest.mark.parametrize("text, mb", [
    ("256M", 256.0), ("10000000M", 10000000.0), ("4648K", 4648 / 1024),
    ("397072K", 397072 / 1024), ("4.50M", 4.5), ("1.50G", 1536.0),
    ("2T", 2 * 1024 * 1024.0), ("256Mc", 256.0), ("0", 0.0),
    ("16?", None), ("", None), (None, None),
])
def test_parse_mem(text, mb):
    assert sa.parse_mem(text) == pytest.approx(mb) if mb is not None else sa.parse_mem(text) is None


def test_parse_mem_default_unit_for_maxrss():
    assert sa.parse_mem("2048", default_unit="K") == 2.0


def test_parse_tres_mem():
    assert sa.parse_tres_mem("cpu=2,mem=600M,node=1,billing=2") == 600.0
    assert sa.parse_tres_mem("cpu=1,node=1") is None


def test_parse_sbatch():
    assert sa.parse_sbatch(data("sbatch_ok.txt")) == JOBS["timeout"]
    assert sa.parse_sbatch("123;flightjob\n") == "123@flightjob"
    with pytest.raises(ValueError):
        sa.parse_sbatch("")


def test_sbatch_error_message_on_real_refusals():
    assert sa.sbatch_error_message(data("sbatch_refused_mem.stderr.txt")) == (
        "Memory specification can not be satisfied; "
        "Batch job submission failed: Requested node configuration is not available")
    assert sa.sbatch_error_message(data("sbatch_refused_partition.stderr.txt")) == (
        "invalid partition specified: nosuch; "
        "Batch job submission failed: Invalid partition name specified")
    assert sa.sbatch_error_message(data("sbatch_refused_time.stderr.txt")) == (
        "Invalid --time specification")


def test_every_slurm_state_is_mapped():
    pending_or_running = [
        "PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "COMPLETING", "STOPPED",
        "RESIZING", "REQUEUED", "REQUEUE_HOLD", "SPECIAL_EXIT", "SIGNALING", "STAGE_OUT"]
    for s in pending_or_running:
        assert sa.STATE_MAP[s] in ("PENDING", "RUNNING"), s
    assert sa.STATE_MAP["COMPLETED"] == "COMPLETED"
    assert sa.STATE_MAP["CANCELLED"] == "CANCELLED"
    for s in ["FAILED", "OUT_OF_MEMORY", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL",
              "PREEMPTED", "DEADLINE", "REVOKED"]:
        assert sa.STATE_MAP[s] == "FAILED", s
    for reason in ["Resources", "Priority", "Dependency", "DependencyNeverSatisfied",
                   "JobHeldUser", "JobHeldAdmin", "BeginTime", "ReqNodeNotAvail",
                   "PartitionTimeLimit", "PartitionNodeLimit", "QOSMaxJobsPerUserLimit",
                   "AssocGrpCpuLimit", "launch failed requeued held"]:
        assert sa.REASON_TEXT[reason], reason
    assert sa.REASON_TEXT["None"] is None


def test_parse_scontrol_config():
    conf = sa.parse_scontrol(data("scontrol_show_config.txt"))
    assert conf["AccountingStorageType"] == "accounting_storage/slurmdbd"
    assert conf["MinJobAge"] == "300 sec"


def test_parse_sinfo():
    assert sa.parse_sinfo(data("sinfo.txt")) == [
        {"name": "debug", "default": True, "max_time": "1:00:00", "nodes": 1,
         "cpus": 2, "memory_mb": 21694, "state": "up"},
        {"name": "long", "default": False, "max_time": "2-00:00:00", "nodes": 1,
         "cpus": 2, "memory_mb": 21694, "state": "up"},
    ]


# ---------------------------------------------------------------- squeue ----


def test_parse_squeue_pending_jobs_and_array_tasks():
    rows = {r["id"]: r for r in sa.parse_squeue(data("squeue_1_submitted.txt"))}
    # --array lists each pending task; JobID is still the parent's id then
    assert [i for i in rows if i.startswith(JOBS["array"] + "_")] == [
        "4_1", "4_2", "4_3", "4_4"]
    assert rows["4_2"]["parent"] == "4" and rows["4_2"]["task"] == "2"
    assert rows[JOBS["held"]]["reason"] == "JobHeldUser"
    assert rows[JOBS["dependency"]]["reason"] == "Dependency"
    assert rows[JOBS["begintime"]]["start"] == "2026-11-25T16:39:07Z"
    assert rows[JOBS["bigcpu"]]["requested_mem_mb"] == 600.0  # 2 CPUs x 300M
    assert rows[JOBS["timeout"]]["time_limit_s"] == 60
    assert rows[JOBS["completed"]]["uid"] == 1001


def test_where_and_on_what_a_job_runs_is_squeue_s_partition_nodes_and_cpus():
    """What the list's Partition and Nodes / CPUs columns show (issue 27):
    squeue's own, from its Partition and tres-alloc (%D and %C), asked for
    while the job waits; sacct's NNodes and AllocCPUS once squeue forgot it."""
    rows = {r["id"]: r for r in sa.parse_squeue(data("squeue_1_submitted.txt"))}
    assert (rows[JOBS["bigcpu"]]["partition"], rows[JOBS["bigcpu"]]["nodes"], rows[JOBS["bigcpu"]]["cpus"]) == (
        "debug", 1, 2)
    s, _ = scheduler(data("squeue_1_submitted.txt"), data("sacct_1_submitted.txt"))
    st = s.status([JOBS["bigcpu"], JOBS["held"], JOBS["array"]])
    assert {k: st[JOBS["bigcpu"]][k] for k in ("partition", "nodes", "cpus")} == {
        "partition": "debug", "nodes": 1, "cpus": 2}
    assert st[JOBS["array"]]["partition"] == "debug" and st[JOBS["array"]]["cpus"] == 1
    row = dict(sa.parse_sacct(data("sacct_6_final.txt").replace("|debug|||", "|long|4|2|", 1))[0])
    assert (row["partition"], row["nodes"], sa._status(row)["cpus"]) == ("long", 2, 4)
    assert sa.parse_squeue("1|1|N/A|PENDING|None|0|N/A|N/A|N/A|0:00|1:00|billing=1|1001|debug|\n")[0]["cpus"] is None


def test_elapsed_of_limit_reads_as_squeue_prints_its_times():
    assert [sa.slurm_time(t) for t in (0, 5, 723, 3599, 3600, 86400 + 61, None)] == [
        "0:00", "0:05", "12:03", "59:59", "1:00:00", "1-00:01:01", None]
    job = {"state": "RUNNING", "scheduler_id": "5", "started_at": "2026-11-25T15:39:08Z", "elapsed_s": 723,
           "time_limit": "1:00:00"}
    assert sa.elapsed_of_limit(job) == "12:03 / 1:00:00"
    assert sa.elapsed_of_limit(dict(job, state="PENDING", started_at=None, elapsed_s=None)) == "0:00 / 1:00:00"
    assert sa.elapsed_of_limit(dict(job, time_limit=None)) == "12:03"  # UNLIMITED, or not told
    assert sa.elapsed_of_limit(dict(job, state="CANCELLED", started_at=None)) is None  # never ran
    assert sa.elapsed_of_limit(dict(job, state="PENDING", scheduler_id=None, started_at=None)) is None  # submitting


def test_parse_squeue_exit_code_is_a_wait_status():
    rows = {r["id"]: r for r in sa.parse_squeue(data("squeue_6_final.txt"))}
    assert (rows[JOBS["exit3"]]["exit_code"], rows[JOBS["exit3"]]["signal"]) == (3, 0)
    assert (rows["4_3"]["exit_code"], rows["4_3"]["raw_id"]) == (2, "17")
    assert (rows[JOBS["oom"]]["exit_code"], rows[JOBS["oom"]]["signal"]) == (0, 9)
    assert rows[JOBS["timeout"]]["raw_state"] == "TIMEOUT"
    assert rows[JOBS["timeout"]]["reason"] == "TimeLimit"


# Captured on the test cluster (Slurm 22.05, OverMemoryKill, KillWait=5):
# 1 --output into a folder that is not there (slurmd: ESLURMD_IO_ERROR, 4021);
# 2 --time=1 sleeping past it; 3 --mem=100M using 700 MB; 4 scancel'd running.
ENDS_SQUEUE = """\
4|4|N/A|CANCELLED|None|15|2026-12-07T05:20:19|2026-12-07T05:23:20|2026-12-07T05:20:16|3:01|1:00:00|cpu=1,mem=256M,node=1,billing=1|0|debug|
1|1|N/A|FAILED|JobLaunchFailure|4021|2026-12-07T05:20:19|2026-12-07T05:20:19|2026-12-07T05:20:16|0:00|1:00:00|cpu=1,mem=256M,node=1,billing=1|0|debug|
3|3|N/A|FAILED|JobLaunchFailure|9|2026-12-07T05:20:19|2026-12-07T05:20:20|2026-12-07T05:20:16|0:01|1:00:00|cpu=1,mem=100M,node=1,billing=1|0|debug|
2|2|N/A|TIMEOUT|TimeLimit|15|2026-12-07T05:20:19|2026-12-07T05:21:46|2026-12-07T05:20:16|1:27|1:00|cpu=1,mem=256M,node=1,billing=1|0|debug|
"""
ENDS_SACCT = """\
1|1|FAILED|0:53|None|2026-12-07T05:20:19|2026-12-07T05:20:19|2026-12-07T05:20:16|0|00:00:00||256M|01:00:00|0|debug|1|1||
1.batch|1.batch|CANCELLED|0:53||2026-12-07T05:20:19|2026-12-07T05:20:19|2026-12-07T05:20:19|0|00:00:00||||||1|1|1|
2|2|TIMEOUT|0:0|None|2026-12-07T05:20:19|2026-12-07T05:21:46|2026-12-07T05:20:16|87|00:00.002||256M|00:01:00|0|debug|1|1||
2.batch|2.batch|CANCELLED|0:15||2026-12-07T05:20:19|2026-12-07T05:21:46|2026-12-07T05:20:19|87|00:00.002|4784K|||||1|1|1|4784K
3|3|FAILED|0:9|None|2026-12-07T05:20:19|2026-12-07T05:20:20|2026-12-07T05:20:16|1|00:00.003||100M|01:00:00|0|debug|1|1||
3.batch|3.batch|CANCELLED by 0|0:9||2026-12-07T05:20:19|2026-12-07T05:20:20|2026-12-07T05:20:19|1|00:00.003|733068K|||||1|1|1|733068K
4|4|CANCELLED by 0|0:0|None|2026-12-07T05:20:19|2026-12-07T05:23:20|2026-12-07T05:20:16|181|00:00.004||256M|01:00:00|0|debug|1|1||
4.batch|4.batch|CANCELLED|0:15||2026-12-07T05:20:19|2026-12-07T05:23:21|2026-12-07T05:20:19|182|00:00.004|4864K|||||1|1|1|4864K
"""


def test_every_way_a_job_ends_reads_as_what_it_is_from_squeue_and_sacct():
    """squeue's raw exit code is read as sacct reads it (4021 is 0:53, not
    "exit code 15"); a launch failure, a time-out, an out-of-memory and a
    cancel each say what they are, from either source, and none of them
    shows an exit code of the program's (the page's program_exit)."""
    for rows, oom_words in ((sa.parse_squeue(ENDS_SQUEUE), "killed by signal 9 (SIGKILL)"),
                            (sa.parse_sacct(ENDS_SACCT), "ran out of memory")):
        st = {r["id"]: sa._status(r) for r in rows}
        seen = {i: (s["state"], s["raw_state"], s["reason_text"], s["exit_code"], s["signal"]) for i, s in st.items()}
        assert seen["1"] == ("FAILED", "FAILED", sa.LAUNCH_FAILURE, 0, 53), seen
        assert seen["2"][:3] == ("FAILED", "TIMEOUT", "ran out of time"), seen
        assert seen["3"][:3] == ("FAILED", "FAILED", oom_words), seen
        assert seen["4"][:2] == ("CANCELLED", "CANCELLED"), seen
        for s in st.values():
            assert sa.program_exit(s) is None, s


def test_parse_sacct_folds_steps_and_reads_cancelled_by():
    jobs = {j["id"]: j for j in sa.parse_sacct(data("sacct_6_final.txt"))}
    oom = jobs[JOBS["oom"]]
    assert oom["raw_state"] == "FAILED" and (oom["exit_code"], oom["signal"]) == (0, 9)
    assert oom["max_rss_mb"] == pytest.approx(397072 / 1024)  # from 5.batch
    assert oom["requested_mem_mb"] == 100.0
    assert jobs[JOBS["usercancel"]]["cancelled_by"] == 1001
    assert jobs[JOBS["admincancel"]]["cancelled_by"] == 0
    assert jobs[JOBS["admincancel"]]["start"] is None
    assert jobs[JOBS["held"]]["time_limit_s"] is None  # "Partition_Limit"
    assert jobs["4_3"]["exit_code"] == 2 and jobs["4_3"]["raw_id"] == "17"
    assert jobs[JOBS["timeout"]]["elapsed_s"] == 74
    assert jobs[JOBS["killed"]]["max_rss_mb"] == 4.5  # "4.50M"


def test_parse_sacct_expands_a_pending_array_range():
    jobs = [j["id"] for j in sa.parse_sacct(data("sacct_2_array_running.txt"))]
    assert [j for j in jobs if j.startswith("4_")] == ["4_1", "4_2", "4_3", "4_4"]


def test_parse_sacct_empty():
    # just after submission sacct does not know the jobs yet
    assert sa.parse_sacct(data("sacct_1_submitted.txt")) == []
    assert sa.parse_sacct(data("sacct_unknown_ids.txt")) == []


# ---------------------------------------------------------------- status ----


def test_status_pending_reasons_and_estimated_start():
    s, fake = scheduler(data("squeue_1_submitted.txt"), data("sacct_1_submitted.txt"))
    st = s.status(list(JOBS.values()))
    assert st[JOBS["held"]]["reason_text"] == "held by the user"
    assert st[JOBS["dependency"]]["reason_text"] == "waiting for the jobs it depends on"
    assert st[JOBS["completed"]]["reason_text"] == "waiting for higher-priority jobs"
    begin = st[JOBS["begintime"]]
    assert begin["state"] == "PENDING" and begin["reason"] == "BeginTime"
    assert begin["estimated_start_at"] == "2026-11-25T16:39:07Z"
    assert begin["started_at"] is None and begin["elapsed_s"] is None
    array = st[JOBS["array"]]
    assert array["state"] == "PENDING" and len(array["tasks"]) == 4
    # the two jobs submitted later in the capture are simply missing
    assert JOBS["suspended"] not in st
    assert [a[0] for a in fake.calls] == ["squeue", "scontrol", "sacct"]


def test_status_running_array_rolls_up():
    s, fake = scheduler(data("squeue_2_array_running.txt"), data("sacct_2_array_running.txt"))
    st = s.status([JOBS["array"], JOBS["timeout"], JOBS["completed"]])
    array = st[JOBS["array"]]
    assert array["state"] == "RUNNING"
    assert [(t["id"], t["state"]) for t in array["tasks"]] == [
        ("4_1", "RUNNING"), ("4_2", "PENDING"), ("4_3", "PENDING"), ("4_4", "PENDING")]
    assert array["started_at"] is not None and array["ended_at"] is None
    assert st[JOBS["timeout"]]["state"] == "RUNNING"
    assert st[JOBS["timeout"]]["started_at"] == "2026-11-25T15:39:08Z"
    assert st[JOBS["completed"]]["state"] == "COMPLETED"
    assert st[JOBS["completed"]]["exit_code"] == 0


def test_status_suspended_and_admin_held():
    s, _ = scheduler(data("squeue_4_suspended.txt"), data("sacct_4_suspended.txt"))
    st = s.status([JOBS["suspended"], JOBS["adminheld"]])
    assert st[JOBS["suspended"]]["state"] == "RUNNING"
    assert st[JOBS["suspended"]]["raw_state"] == "SUSPENDED"
    assert st[JOBS["adminheld"]]["reason_text"] == "held by an administrator"


def final_status(accounting):
    s, fake = scheduler(data("squeue_6_final.txt"), data("sacct_6_final.txt"),
                        accounting=accounting)
    st = s.status(list(JOBS.values()))
    return st, s, fake


@pytest.mark.parametrize("accounting", [True, False])
def test_status_final_states(accounting):
    st, s, fake = final_status(accounting)
    assert set(st) == set(JOBS.values())

    ok = st[JOBS["completed"]]
    assert (ok["state"], ok["exit_code"], ok["reason_text"]) == ("COMPLETED", 0, None)
    assert ok["started_at"] == "2026-11-25T15:39:08Z"
    assert ok["ended_at"] == "2026-11-25T15:39:10Z"
    assert ok["elapsed_s"] == 2 and ok["time_limit"] == "1:00:00"

    exit3 = st[JOBS["exit3"]]
    assert (exit3["state"], exit3["reason"], exit3["reason_text"], exit3["exit_code"]) == (
        "FAILED", "NonZeroExitCode", "exit code 3", 3)

    tmo = st[JOBS["timeout"]]
    assert (tmo["state"], tmo["raw_state"], tmo["reason"], tmo["reason_text"]) == (
        "FAILED", "TIMEOUT", "TimeLimit", "ran out of time")
    assert tmo["time_limit"] == "0:01:00"

    array = st[JOBS["array"]]
    assert array["state"] == "FAILED"
    assert array["reason_text"] == "task 4_3: exit code 2"
    assert array["exit_code"] == 2
    assert [(t["id"], t["state"], t["exit_code"]) for t in array["tasks"]] == [
        ("4_1", "COMPLETED", 0), ("4_2", "COMPLETED", 0), ("4_3", "FAILED", 2),
        ("4_4", "COMPLETED", 0)]
    assert array["started_at"] == "2026-11-25T15:39:14Z"
    assert array["ended_at"] == "2026-11-25T15:39:33Z"

    killed = st[JOBS["killed"]]
    assert (killed["state"], killed["signal"]) == ("FAILED", 9)
    assert killed["reason_text"] == "killed by signal 9 (SIGKILL)"

    oom = st[JOBS["oom"]]
    assert (oom["state"], oom["raw_state"], oom["signal"]) == ("FAILED", "FAILED", 9)
    assert oom["requested_mem_mb"] == 100.0

    never_started = st[JOBS["admincancel"]]
    assert never_started["state"] == "CANCELLED"
    assert never_started["started_at"] is None
    assert never_started["ended_at"] == "2026-11-25T15:39:14Z"

    squeue_calls = [c for c in fake.calls if c[0] == "squeue"]
    sacct_calls = [c for c in fake.calls if c[0] == "sacct"]
    assert len(squeue_calls) == 1 and len(sacct_calls) <= 1
    assert s.counters["squeue"] == 1

    if accounting:
        # only sacct's MaxRSS shows the SIGKILL was the memory limit
        assert (oom["reason"], oom["reason_text"]) == ("OutOfMemory", "ran out of memory")
        assert oom["max_rss_mb"] > 100
        assert st[JOBS["usercancel"]]["reason_text"] == "cancelled by the user"
        assert never_started["reason_text"] == "cancelled by an administrator"
        assert len(sacct_calls) == 1
    else:
        assert oom["reason_text"] == "killed by signal 9 (SIGKILL)"
        assert st[JOBS["usercancel"]]["reason_text"] == "cancelled"
        assert oom["max_rss_mb"] is None
        assert sacct_calls == []


def test_status_owner_of_a_job_cancelled_while_pending_is_squeue_s_word():
    # sacct says UID 0 until slurmdbd completes the record; judged by that,
    # the owner's own cancel would read as an administrator's
    s, _ = scheduler(data("squeue_7_cancelled_while_pending.txt"),
                     data("sacct_7_cancelled_while_pending.txt"))
    st = s.status(["3"])["3"]
    assert (st["state"], st["reason_text"]) == ("CANCELLED", "cancelled by the user")
    assert st["requested_mem_mb"] == 256.0 and st["time_limit"] == "1:00:00"  # sacct's gaps, from squeue


def test_status_sacct_for_ids_squeue_no_longer_lists():
    # squeue has forgotten every job (MinJobAge passed): sacct answers alone
    s, fake = scheduler("", data("sacct_6_final.txt"))
    st = s.status([JOBS["exit3"], JOBS["array"], "99999"])
    assert st[JOBS["exit3"]]["reason_text"] == "exit code 3"
    assert st[JOBS["array"]]["state"] == "FAILED"
    assert "99999" not in st
    sacct = [c for c in fake.calls if c[0] == "sacct"]
    assert sacct and sacct[0][3] == "--jobs=3,4,99999"


def test_status_asks_once_for_distinct_well_formed_ids():
    s, fake = scheduler(data("squeue_6_final.txt"), data("sacct_6_final.txt"))
    st = s.status([JOBS["exit3"], int(JOBS["exit3"]), "4_3", "3,4", "--all", "", "../1"])
    assert set(st) == {JOBS["exit3"], "4_3"}
    squeue = [c for c in fake.calls if c[0] == "squeue"]
    assert len(squeue) == 1 and "--jobs=3,4_3" in squeue[0]
    s, fake = scheduler(data("squeue_6_final.txt"))
    assert s.status(["--all"]) == {} and fake.calls == []


def test_status_all_unknown_ids_is_not_an_error():
    s, fake = scheduler(error(data("squeue_one_unknown_id.stderr.txt")),
                        data("sacct_unknown_ids.txt"))
    assert s.status(["99999"]) == {}
    s, fake = scheduler(data("squeue_two_unknown_ids.txt"), data("sacct_unknown_ids.txt"),
                        accounting=False)
    assert s.status(["99998", "99999"]) == {}


def test_status_when_squeue_fails_raises():
    s, _ = scheduler(error("squeue: error: Unable to contact slurm controller (connect failure)"))
    with pytest.raises(sa.SchedulerError):
        s.status(["1"])


def test_status_when_sacct_fails_and_was_needed_raises():
    s, _ = scheduler("", error("sacct: error: Problem talking to the database"))
    with pytest.raises(sa.SchedulerError):
        s.status([JOBS["exit3"]])


def test_status_when_sacct_fails_but_was_only_detail():
    s, _ = scheduler(data("squeue_6_final.txt"), error("sacct: error: slurmdbd down"))
    st = s.status([JOBS["exit3"]])
    assert st[JOBS["exit3"]]["reason_text"] == "exit code 3"


GARBAGE = "<html>502 Bad Gateway</html>\n\x01\ufffd|7|RUNNING|\n"


def test_status_when_squeue_answers_garbage_raises():
    # not "no jobs": sacct (or the grace) would decide from nothing
    s, fake = scheduler(GARBAGE, data("sacct_6_final.txt"))
    with pytest.raises(sa.SchedulerNoAnswer) as e:
        s.status([JOBS["exit3"]])
    assert "squeue answered with output flightjobd cannot read" in e.value.message
    assert [c[0] for c in fake.calls] == ["squeue"]


def test_status_when_sacct_answers_garbage():
    s, _ = scheduler("", GARBAGE)  # squeue has forgotten the job: sacct was needed
    with pytest.raises(sa.SchedulerNoAnswer):
        s.status([JOBS["exit3"]])
    s, _ = scheduler(data("squeue_6_final.txt"), GARBAGE)  # only detail: squeue's word stands
    assert s.status([JOBS["exit3"]])[JOBS["exit3"]]["reason_text"] == "exit code 3"


def test_accounting_detected_once():
    s, fake = scheduler(data("squeue_6_final.txt"), data("sacct_6_final.txt"))
    s.status([JOBS["exit3"]])
    s.status([JOBS["exit3"]])
    assert [c[0] for c in fake.calls].count("scontrol") == 1
    assert s.counters == {"squeue": 2, "scontrol": 1, "sacct": 2}


# ------------------------------------------------------ submit and others ---


def test_command():
    s = sa.SlurmScheduler(run=FakeRun({}))
    assert s.command("/home/u/job.sh", ["--time=5", "--mem=1G"]) == [
        "sbatch", "--parsable", "--time=5", "--mem=1G", "/home/u/job.sh"]


def test_submit_returns_job_id_and_uses_cwd():
    fake = FakeRun({"sbatch": data("sbatch_ok.txt")})
    calls = []

    def run(argv, timeout, cwd=None, env=None):
        calls.append(cwd)
        return fake(argv, timeout)

    s = sa.SlurmScheduler(run=run)
    assert s.submit("/home/u/job.sh", [], cwd="/home/u/results") == JOBS["timeout"]
    assert calls == ["/home/u/results"]
    assert s.counters == {"sbatch": 1}


def test_submit_refused_with_sbatch_own_words():
    stderr = data("sbatch_refused_mem.stderr.txt")
    s = sa.SlurmScheduler(run=FakeRun({"sbatch": error(stderr)}))
    with pytest.raises(sa.SchedulerRefused) as e:
        s.submit("/home/u/job.sh", ["--mem=10000000"], cwd="/home/u")
    assert str(e.value) == (
        "Memory specification can not be satisfied; "
        "Batch job submission failed: Requested node configuration is not available")
    assert e.value.stderr == stderr


def test_submit_controller_down_is_not_a_refusal():
    stderr = data("sbatch_controller_down.stderr.txt")
    s = sa.SlurmScheduler(run=FakeRun({"sbatch": error(stderr)}))
    with pytest.raises(sa.SchedulerError) as e:
        s.submit("/home/u/job.sh", [], cwd="/home/u")
    assert not isinstance(e.value, sa.SchedulerRefused)
    assert "did not answer" in str(e.value)


def test_submit_timeout_is_not_a_refusal():
    timeout = sa.SchedulerError("sbatch did not answer within 20s")
    s = sa.SlurmScheduler(run=FakeRun({"sbatch": timeout}))
    with pytest.raises(sa.SchedulerError) as e:
        s.submit("/home/u/job.sh", [], cwd="/home/u")
    assert not isinstance(e.value, sa.SchedulerRefused)


def test_submit_whose_outcome_is_not_known():
    lost = data("sbatch_controller_down.stderr.txt").replace(
        "Unable to contact slurm controller (connect failure)", "Socket timed out on send/recv operation")
    for answer in (sa.SchedulerNoAnswer("The scheduler did not answer: sbatch timed out after 2 seconds."),
                   error(lost), "Submitted batch job\n", GARBAGE):
        s = sa.SlurmScheduler(run=FakeRun({"sbatch": answer}))
        with pytest.raises(sa.SchedulerNoAnswer):  # slurmctld may have the job
            s.submit("/home/u/job.sh", [], cwd="/home/u")
    hung = sa.SchedulerNoAnswer("The scheduler did not answer: sbatch timed out after 2 seconds.",
                                stdout=data("sbatch_ok.txt"))
    s = sa.SlurmScheduler(run=FakeRun({"sbatch": hung}))
    assert s.submit("/home/u/job.sh", [], cwd="/home/u") == JOBS["timeout"]  # it said which before it hung


def test_a_timed_out_command_keeps_what_it_printed():
    with pytest.raises(sa.SchedulerNoAnswer) as e:
        sa.run(["bash", "-c", "echo 5; exec sleep 60"], 1)
    assert e.value.stdout == "5\n" and "timed out after 1 seconds" in e.value.message


def test_find_submitted_by_script_path():
    text = data("squeue_commands.txt")
    assert sa.parse_squeue_commands(text)[0] == (
        "1", "/home/fjprobe/.local/share/flight-job/jobs/20261126-080000000-aaaaaa/script.sh")
    s, fake = scheduler(text)
    wanted = ["/home/fjprobe/.local/share/flight-job/jobs/20261126-080001000-bbbbbb/script.sh",
              "/home/fjprobe/.local/share/flight-job/jobs/20261126-080002000-cccccc/script.sh"]
    assert s.find_submitted(wanted) == {wanted[0]: "2"}  # an array is its parent's id; none for the other
    assert fake.calls[0][:3] == ["squeue", "--noheader", "--states=all"]
    s, _ = scheduler("")
    assert s.find_submitted(wanted) == {}  # the user has no jobs
    s, _ = scheduler(GARBAGE)
    with pytest.raises(sa.SchedulerNoAnswer):
        s.find_submitted(wanted)


def test_scheduler_errors_cross_the_worker_pipe_as_themselves():
    for cls in (sa.SchedulerError, sa.SchedulerRefused):
        sent = cls("sbatch failed", stdout="5", stderr="sbatch: error: x", returncode=1)
        got = sa.error_from_dict(sent.as_dict())
        assert type(got) is cls and (got.message, got.fields) == ("sbatch failed", {})
        # the command's output stays in the worker
        assert (got.stdout, got.stderr, got.returncode) == ("", "", None)


def test_cancel_finished_job_is_not_an_error():
    done = error("scancel: error: Kill job error on job id 2: "
                 "Job/step already completing or completed")
    s = sa.SlurmScheduler(run=FakeRun({"scancel": done}))
    s.cancel("2")
    s = sa.SlurmScheduler(run=FakeRun({"scancel": error("scancel: error: Unable to contact slurm controller")}))
    with pytest.raises(sa.SchedulerError):
        s.cancel("2")
    s.cancel("--user=fjtest_x")  # a record's scheduler id is the user's to edit: it never reaches scancel
    assert s.counters == {"scancel": 1}
    s = sa.SlurmScheduler(run=FakeRun({"scancel": GARBAGE}))  # it prints nothing when it has cancelled
    with pytest.raises(sa.SchedulerNoAnswer):
        s.cancel("2")


def test_info_and_available():
    s, fake = scheduler("", sinfo=data("sinfo.txt"))
    info = s.info()
    assert [p["name"] for p in info["partitions"]] == ["debug", "long"]
    assert "accounts" not in info and not [c for c in fake.calls if c[0] == "sacctmgr"]  # the user's own: associations()
    assert s.available()
    s = sa.SlurmScheduler(run=FakeRun({"sinfo": sa.SchedulerError("sinfo did not answer")}))
    assert not s.available()


def sacct_lagging(job_id, batch_state):
    """sacct_6_final.txt as slurmdbd has it a moment after the job ended:
    the job's row final, its batch step's row still batch_state (None: no
    step row yet) with no MaxRSS or CPU time."""
    lines = []
    for line in data("sacct_6_final.txt").splitlines():
        f = line.split("|")
        if f[0] == job_id + ".batch":
            if batch_state is None:
                continue
            f[2], f[10], f[11] = batch_state, "00:00:00", ""
        lines.append("|".join(f))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("batch_state", ["RUNNING", None, "missing job"])
def test_a_final_state_waits_for_the_accounting_record(monkeypatch, batch_state):
    """squeue says FAILED the moment slurmctld does; slurmdbd records the
    batch step (MaxRSS: it was memory) a moment later. The job is final at
    once, marked detail_pending so that it is asked again until sacct has
    the whole record (then the reason is the record's); past
    SlurmScheduler.ACCOUNTING_LAG it is no longer marked."""
    oom = JOBS["oom"]
    if batch_state == "missing job":
        lagging = "".join(line + "\n" for line in data("sacct_6_final.txt").splitlines()
                          if line.split("|")[0].split(".")[0] != oom)
    else:
        lagging = sacct_lagging(oom, batch_state)
    ended = sa.parse_iso("2026-11-25T15:39:35Z")
    monkeypatch.setattr(sa, "_now", lambda: ended + 5)
    s, _ = scheduler(data("squeue_6_final.txt"), lagging)
    st = s.status([oom, JOBS["exit3"]])
    assert (st[oom]["state"], st[oom]["ended_at"], st[oom]["signal"], st[oom]["detail_pending"]) == (
        "FAILED", "2026-11-25T15:39:35Z", 9, True)
    assert st[oom]["reason_text"] == "killed by signal 9 (SIGKILL)"  # squeue's word, for now
    assert st[JOBS["exit3"]]["reason_text"] == "exit code 3"  # its record is whole
    assert st[JOBS["exit3"]]["detail_pending"] is False

    s, _ = scheduler(data("squeue_6_final.txt"), data("sacct_6_final.txt"))  # slurmdbd caught up
    st = s.status([oom])[oom]
    assert (st["reason_text"], st["detail_pending"]) == ("ran out of memory", False)

    monkeypatch.setattr(sa, "_now", lambda: ended + sa.SlurmScheduler.ACCOUNTING_LAG + 1)
    s, _ = scheduler(data("squeue_6_final.txt"), lagging)
    st = s.status([oom])[oom]
    assert (st["state"], st["reason_text"], st["detail_pending"]) == (
        "FAILED", "killed by signal 9 (SIGKILL)", False)


def test_poll_lists_by_uid_and_gives_each_owner_their_other_jobs():
    """The shared poll's round: squeue by uid; a job one user's ids name
    but another user owns is still that owner's outside job (a forged
    record hides nothing), statuses carry Slurm's owner; when sacct fails,
    only the ids that needed it are undecided."""
    line = ("{id}|{id}|N/A|RUNNING|None|0|2026-11-25T15:39:08|2026-11-25T16:39:08|2026-11-25T15:39:07|0:02|"
            "1:00:00|cpu=1,mem=256M,node=1,billing=1|{uid}|debug|\n")
    squeue = line.format(id=5, uid=1001) + line.format(id=6, uid=1001) + line.format(id=7, uid=1002)
    s, fake = scheduler(squeue, error("sacct: error: Problem talking to the database"), sacctmgr="flightjob\n")
    statuses, owners, outside, undecided = s.poll({"1001": ["5"], "1002": ["6@flightjob", "99"]})
    argv = [c for c in fake.calls if c[0] == "squeue"][0]
    assert "--users=1001,1002" in argv and not any(a.startswith("--jobs") for a in argv)
    # 6 is named by 1002's records (as 6@flightjob) but owned by 1001: the poll follows it not (not found for 1002)
    assert owners == {"5": 1001} and set(statuses) == {"5"}
    assert set(outside[1001]) == {"6"} and set(outside[1002]) == {"7"}  # 6 is 1001's, whoever names it
    assert set(undecided) == {"99"} and "Problem talking to the database" in undecided["99"]


def test_poll_asks_each_cluster_on_its_own():
    """Two clusters under one slurmdbd: the same job number on each is two
    jobs, each cluster is asked with its own squeue (--clusters= for the
    other), and one that does not answer leaves its ids undecided, never
    finished, while the other's are told."""
    line = "5|5|N/A|{state}|None|0|N/A|N/A|2026-11-25T15:39:07|0:00|1:00:00|cpu=1|1001|debug|\n"
    calls = []

    def run(argv, timeout, cwd=None, env=None):
        calls.append(argv)
        if argv[0] == "sacctmgr":
            return "flightjob\nother\n"
        if argv[0] == "scontrol":
            return data("scontrol_show_config.txt")
        if argv[0] == "squeue":
            if "--clusters=other" in argv:
                raise error("squeue: error: Unable to contact slurm controller")
            return line.format(state="RUNNING")
        return ""
    s = sa.SlurmScheduler(run=run)
    statuses, _, outside, undecided = s.poll({"1001": ["5@flightjob", "5@other"]})
    assert statuses["5@flightjob"]["state"] == "RUNNING" and "5@other" not in statuses
    assert "Unable to contact" in undecided["5@other"] and outside == {}
    assert sorted(c[1] for c in calls if c[0] == "squeue") == ["--clusters=other", "--noheader"]
    assert s.on("other").command("/x.sh", ["-J", "a"])[:2] == ["sbatch", "--clusters=other"]
    with pytest.raises(sa.NotFound):
        s.on("elsewhere")


def test_out_of_memory_from_sacct_s_maxrss_and_squeue_s_request():
    """Seen on the test cluster: sacct's record whole (the batch step's
    MaxRSS in) but its ReqMem not yet: the request squeue gave still tells
    the SIGKILL was the memory limit."""
    oom = JOBS["oom"]
    lines = []
    for line in data("sacct_6_final.txt").splitlines():
        f = line.split("|")
        if f[0] == oom:
            f[11] = ""  # ReqMem
        lines.append("|".join(f))
    s, _ = scheduler(data("squeue_6_final.txt"), "\n".join(lines) + "\n")
    st = s.status([oom])[oom]
    assert (st["state"], st["reason_text"], st["requested_mem_mb"], st["detail_pending"]) == (
        "FAILED", "ran out of memory", 100.0, False)


# ------------------------------------------------------------ efficiency ----

# sacct --noheader --parsable2 --format=SACCT_FORMAT as Slurm 22.05 prints it
# for `sbatch -n 4 --mem-per-cpu=1G` whose script runs `srun -n 4 python3 -c
# ...` (each task allocating 100 MB, sleeping 3 s): the job row, then its
# batch, extern and srun steps (the steps' ReqMem, Timelimit, UID and
# Partition are empty, as in the captures above).
MULTI_TASK = """\
21|21|COMPLETED|0:0|None|2026-11-26T13:40:02|2026-11-26T13:40:07|2026-11-26T13:40:01|5|00:01.532||4G|01:00:00|1001|debug|4|1||
21.batch|21.batch|COMPLETED|0:0||2026-11-26T13:40:02|2026-11-26T13:40:07|2026-11-26T13:40:02|5|00:00.120|5120K|||||4|1|1|5120K
21.extern|21.extern|COMPLETED|0:0||2026-11-26T13:40:02|2026-11-26T13:40:07|2026-11-26T13:40:02|5|00:00:00|0|||||4|1|1|0
21.0|21.0|COMPLETED|0:0||2026-11-26T13:40:03|2026-11-26T13:40:07|2026-11-26T13:40:03|4|00:01.410|104204K|||||4|1|4|103876K
"""


def test_parse_sacct_memory_of_a_multi_task_job_is_all_its_tasks():
    """MaxRSS is one task's peak (reportseff #41: 8 tasks using 16 GB shown
    as 1.8 GB); the job's memory is its largest step's AveRSS x NTasks."""
    job, = sa.parse_sacct(MULTI_TASK)
    assert job["max_rss_mb"] == pytest.approx(104204 / 1024)
    assert job["mem_used_mb"] == pytest.approx(4 * 103876 / 1024)  # ~406 MiB, not ~102
    assert job["mem_tasks"] == 4 and job["alloc_cpus"] == 4
    assert job["requested_mem_mb"] == 4096.0 and job["cpu_time_s"] == 2


@pytest.mark.parametrize("req, cpus, nodes, mb", [
    ("600M", 2, 1, 600.0),     # 22.05: the whole request (the capture's -c 2 --mem-per-cpu=300)
    ("300Mc", 2, 1, 600.0),    # before 21.08: per CPU
    ("4000Mn", 8, 2, 8000.0),  # before 21.08: per node
    ("1Gc", None, 1, None),    # per CPU with no CPU count: not a guess
    ("16?", 1, 1, None), ("", 1, 1, None),
])
def test_parse_req_mem_per_cpu_and_per_node(req, cpus, nodes, mb):
    assert sa.parse_req_mem(req, cpus, nodes) == mb


def test_parse_sacct_older_slurm_per_cpu_request():
    text = MULTI_TASK.replace("||4G|01:00:00", "||1024Mc|01:00:00")
    job, = sa.parse_sacct(text)
    assert job["requested_mem_mb"] == 4096.0


def test_step_memory_without_averss_or_ntasks_is_its_maxrss():
    assert sa.step_mem_mb("", 1, "5120K") == 5.0
    assert sa.step_mem_mb("", None, "5120K") == 5.0
    assert sa.step_mem_mb("2048K", 3, "4096K") == 6.0
    assert sa.step_mem_mb("", None, "") is None  # JobAcctGatherType=none


def multi_task_status(text=MULTI_TASK):
    monkey_now = sa.parse_iso("2026-11-26T13:45:00Z")
    squeue = ""  # long gone from squeue: sacct alone tells
    s, _ = scheduler(squeue, text)
    sa_now, sa._now = sa._now, lambda: monkey_now
    try:
        return s.status(["21"])["21"]
    finally:
        sa._now = sa_now


def test_status_carries_the_efficiency_figures_and_the_poll_accepts_them():
    st = multi_task_status()
    assert (st["alloc_cpus"], st["mem_tasks"], st["cpu_alloc_s"], st["detail_pending"]) == (4, 4, 20, False)
    assert st["mem_used_mb"] == pytest.approx(405.8, abs=0.1)
    statuses, *_ = sa.checked_statuses({"statuses": {"21": st}, "owners": {"21": 1001}}, ["21"])
    assert statuses["21"]["mem_used_mb"] == st["mem_used_mb"]
    # still checked field by field: that job is left out, said why
    got = sa.checked_statuses({"statuses": {"21": dict(st, alloc_cpus="4")}}, ["21"])
    assert got[0] == {} and "'alloc_cpus'" in got[3]["21"]


def test_efficiency_of_a_multi_task_job_says_what_its_memory_figure_is():
    job = dict(multi_task_status(), id="x")
    eff = sa.job_efficiency(job)
    assert eff["cpu_percent"] == 10.0  # 2 s of CPU in 5 s x 4 CPUs
    assert eff["cores_used"] == 0.4
    assert eff["mem_percent"] == pytest.approx(9.9, abs=0.1) and eff["mem_requested_mb"] == 4096.0
    assert eff["time_used_s"] == 5 and eff["time_limit_s"] == 3600 and eff["time_percent"] == 0.1
    assert "4 tasks" in eff["mem_what"] and "AveRSS x NTasks" in eff["mem_what"]
    assert "largest single task peaked at 102 MiB" in eff["mem_what"]
    # 4 GiB asked, ~406 MiB used: 512 MiB would do, but 3.5 GiB spare is worth a line
    assert eff["advice"] == [
        "Used 10 % of the 4 GiB asked for: next time ~512 MiB would do.",
        "Used less than 1 of 4 cores: ask for 1 next time, or make the program use them all."]


def finished(**fields):
    job = {"id": "x", "state": "COMPLETED", "started_at": "2026-11-26T10:00:00Z", "detail_pending": False,
           "elapsed_s": 3600, "cpu_time_s": 3600 * 16 * 0.98, "cpu_alloc_s": 3600 * 16, "alloc_cpus": 16,
           "mem_used_mb": 15 * 1024.0, "mem_tasks": 1, "max_rss_mb": 15 * 1024.0,
           "requested_mem_mb": 100 * 1024.0, "time_limit": "2:00:00"}
    job.update(fields)
    return job


def test_efficiency_advice_only_where_it_matters():
    eff = sa.job_efficiency(finished())
    assert eff["cpu_percent"] == 98.0 and eff["mem_percent"] == 15.0 and eff["time_percent"] == 50.0
    assert eff["advice"] == ["Used 15 % of the 100 GiB asked for: next time ~18 GiB would do."]
    eff = sa.job_efficiency(finished(cpu_time_s=3600 * 1.0))
    assert eff["advice"][1] == "Used 1 of 16 cores: ask for 1 next time, or make the program use them all."
    # well used, small, or short: nothing to say
    assert sa.job_efficiency(finished(mem_used_mb=90 * 1024.0))["advice"] == []
    assert sa.job_efficiency(finished(mem_used_mb=5.0, requested_mem_mb=256.0))["advice"] == []
    eff = sa.job_efficiency(finished(elapsed_s=600, cpu_time_s=600 * 16, cpu_alloc_s=600 * 16,
                                     mem_used_mb=90 * 1024.0, time_limit="1-00:00:00"))
    assert eff["advice"] == ["Ran 0:10:00 of its 1-00:00:00 limit: a limit of 1:00:00 would do, "
                             "and a shorter limit can start sooner."]
    eff = sa.job_efficiency(finished(state="FAILED", reason="OutOfMemory", mem_used_mb=100 * 1024.0))
    assert eff["advice"] == ["It ran out of the 100 GiB asked for: ask for more next time (Memory: ~150 GiB)."]


def test_advice_fits_the_cause_and_never_a_request_not_made():
    """A time-out's advice is its time against its limit and a longer one;
    memory nobody asked for is the node's default: no "asked for", no
    advice to ask for less (the issue's 5 MiB of a 2 GiB default)."""
    timeout = finished(state="FAILED", raw_state="TIMEOUT", reason="TimeLimit", elapsed_s=87, time_limit="0:01:00",
                       mem_used_mb=5.0, requested_mem_mb=2048.0, mem_asked=False, cpu_time_s=0.0, cpu_alloc_s=87,
                       alloc_cpus=1)
    eff = sa.job_efficiency(timeout)
    assert eff["advice"] == ["It ran out of time: it ran 0:01:27 of its 0:01:00 limit. Submit it again with a "
                             "longer time limit (~0:02:00), or make it save its work as it goes."]
    assert eff["mem_asked"] is False
    assert sa.job_efficiency(dict(timeout, raw_state="COMPLETED", state="COMPLETED", reason=None))["advice"] == []
    assert sa.job_efficiency(dict(timeout, mem_asked=True, raw_state="FAILED"))["advice"] == [
        "Used 0 % of the 2 GiB asked for: next time ~64 MiB would do."]
    eff = sa.job_efficiency(finished(state="FAILED", reason="OutOfMemory", mem_used_mb=300.0, requested_mem_mb=256.0,
                                     mem_asked=False))
    assert eff["advice"] == ["It ran out of the node's default of 256 MiB: ask for more next time (Memory: ~384 MiB)."]


def test_no_efficiency_without_figures_or_before_the_record_is_whole():
    assert sa.job_efficiency(finished(state="RUNNING")) is None
    assert sa.job_efficiency(finished(detail_pending=True)) is None
    assert sa.job_efficiency(finished(started_at=None)) is None
    bare = {"id": "x", "state": "COMPLETED", "started_at": "2026-11-26T10:00:00Z"}
    assert sa.job_efficiency(bare) is None  # no accounting: nothing to show
    # a record edited by hand holds anything: not a number is no figure
    eff = sa.job_efficiency(finished(cpu_time_s="lots", mem_used_mb=True))
    assert eff["cpu_percent"] is None and eff["mem_used_mb"] is None and eff["time_percent"] == 50.0
    assert sa.job_efficiency(finished(cpu_time_s="lots", mem_used_mb=True, time_limit=7)) is None


def test_efficiency_of_an_array_adds_up_its_tasks():
    s, _ = scheduler(data("squeue_6_final.txt"), data("sacct_6_final.txt").replace(
        "|01:00:00|1001|debug||||\n", "|01:00:00|1001|debug|1|1||\n"))
    array = s.status([JOBS["array"]])[JOBS["array"]]
    # 4 tasks of 1 CPU: their run times add up (the parent's elapsed is a span)
    assert array["alloc_cpus"] == 1 and array["cpu_alloc_s"] is not None
    eff = sa.job_efficiency(dict(array, id="x"))
    assert eff["time_percent"] is None and eff["cpu_percent"] is not None


# --------------------------------------------------- will it start soon ----

# sinfo --noheader --Node --Format=SINFO_FREE_FORMAT (Slurm 22.05's layout:
# each field followed by "|"): a GPU partition of two nodes, one partly
# used, one drained; a CPU partition sharing a node; a partition that is down.
SINFO_FREE = """\
gpu01|gpu|up|mix|8/24/0/32|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|
gpu02|gpu|up|drain|0/0/32/32|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)|
cpu01|batch*|up|idle|0/64/0/64|(null)|gpu:0|
cpu02|batch*|up|alloc|64/0/0/64|(null)|gpu:0|
gpu01|batch*|up|mix|8/24/0/32|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|
cpu03|old|down|idle|0/64/0/64|(null)|gpu:0|
cpu03|staff|up|idle|0/64/0/64|(null)|gpu:0|
"""
# squeue --noheader --states=PENDING --Format=Partition:|
SQUEUE_PENDING = "batch|\nbatch|\ngpu|\nbatch,gpu|\n"
# scontrol show partition --oneliner (long lines cut to the fields that matter)
SCONTROL_PARTITIONS = "".join(line + "\n" for line in [
    "PartitionName=batch AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=NONE Hidden=NO MaxTime=1-00:00:00 Nodes=cpu0[1-2],gpu01 RootOnly=NO State=UP TotalCPUs=160 TotalNodes=3",
    "PartitionName=gpu AllowGroups=ALL AllowAccounts=gpuusers,admin AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
    "Hidden=NO MaxTime=2-00:00:00 Nodes=gpu0[1-2] RootOnly=NO State=UP TotalCPUs=64 TotalNodes=2",
    "PartitionName=old AllowGroups=ALL DenyAccounts=guests AllowQos=ALL AllocNodes=ALL "
    "Default=NO Hidden=NO Nodes=cpu03 RootOnly=NO State=DOWN",
    "PartitionName=staff AllowGroups=staff,wheel AllowAccounts=ALL AllowQos=high AllocNodes=ALL "
    "Default=NO Hidden=NO Nodes=cpu03 RootOnly=NO State=UP",
])


def test_partition_summary_free_and_total_cores_nodes_gpus_and_waiting():
    summary = {p["name"]: p for p in sa.parse_partition_summary(SINFO_FREE, SQUEUE_PENDING, SCONTROL_PARTITIONS)}
    assert list(summary) == ["gpu", "batch", "old", "staff"]
    gpu = summary["gpu"]
    assert (gpu["cpus_free"], gpu["cpus_total"], gpu["nodes_free"], gpu["nodes_total"]) == (24, 64, 0, 2)
    assert (gpu["gpus_free"], gpu["gpus_total"], gpu["waiting"]) == (3, 8, 2)  # the drained node's 4 are not free
    batch = summary["batch"]
    assert batch["default"] and (batch["cpus_free"], batch["cpus_total"], batch["nodes_free"]) == (88, 160, 1)
    assert (batch["gpus_free"], batch["gpus_total"], batch["waiting"]) == (3, 4, 3)
    old = summary["old"]
    assert old["state"] == "down" and (old["cpus_free"], old["nodes_free"], old["cpus_total"]) == (0, 0, 64)
    assert gpu["allow_accounts"] == ["gpuusers", "admin"] and gpu["allow_groups"] is None
    assert summary["staff"]["allow_groups"] == ["staff", "wheel"] and summary["staff"]["allow_qos"] == ["high"]
    assert old["deny_accounts"] == ["guests"] and summary["batch"]["waiting"] == 3
    for p in summary.values():  # what the poll's answer is checked against
        assert set(p) == set(sa.PARTITION_FIELDS)
    assert sa.checked_partitions({"partitions": list(summary.values())}) == list(summary.values())


def test_partition_summary_reads_defensively():
    assert sa.parse_sinfo_free("garbage\n|||\nn1|p;rm|up|idle|0/1/0/1|||\nn1|p|up|idle|x/1/0/1|||\n") == []
    assert sa.parse_pending_partitions("batch|\n$(x)|\n\n") == {"batch": 1}
    assert sa.parse_scontrol_partitions("No partitions in the system\n") == {}
    assert sa._gpus("gpu:tesla:2(S:0-1),shard:8,gpu:1") == 3 and sa._gpus("(null)") == 0
    many = "".join("n|p%d|up|idle|0/1/0/1|(null)|(null)|\n" % i for i in range(sa.MAX_PARTITIONS + 5))
    assert len(sa.parse_sinfo_free(many)) == sa.MAX_PARTITIONS


@pytest.mark.parametrize("bad", [
    None, {"partitions": "all"}, {"partitions": [{"name": "x"}]},
    {"partitions": [dict(name="a;b")]},
])
def test_a_partition_summary_from_the_poll_is_checked(bad):
    with pytest.raises(ValueError):
        sa.checked_partitions(bad)
    good = sa.parse_partition_summary(SINFO_FREE, SQUEUE_PENDING, SCONTROL_PARTITIONS)[0]
    for field, value in (("cpus_free", -1), ("cpus_free", "3"), ("allow_groups", "ALL"), ("name", "a b"),
                         ("waiting", True), ("allow_groups", ["x" * 300])):
        with pytest.raises(ValueError):
            sa.checked_partitions({"partitions": [dict(good, **{field: value})]})
    with pytest.raises(ValueError):
        sa.checked_partitions({"partitions": [dict(good, extra=1)]})


def test_partitions_a_user_may_not_use_are_not_usable():
    """Open OnDemand #3932 offered them and the submit failed."""
    summary = {p["name"]: p for p in sa.parse_partition_summary(SINFO_FREE, SQUEUE_PENDING, SCONTROL_PARTITIONS)}
    usable = lambda p, groups, assoc, uid=1001: sa.partition_usable(summary[p], uid, groups, assoc)  # noqa: E731
    mine = {"accounts": ["physics"], "qos": ["normal"]}
    assert usable("batch", ["users"], mine)
    assert not usable("staff", ["users"], mine)  # AllowGroups
    assert not usable("staff", ["users", "wheel"], mine)  # in the group, but AllowQos=high
    assert usable("staff", ["wheel"], {"accounts": ["physics"], "qos": ["normal", "high"]})
    assert not usable("gpu", ["users"], mine)  # AllowAccounts
    assert usable("gpu", ["users"], {"accounts": ["physics", "gpuusers"], "qos": []})
    assert not usable("old", ["users"], {"accounts": ["guests"], "qos": []})  # DenyAccounts
    assert usable("old", ["users"], {"accounts": ["guests", "physics"], "qos": []})
    assert usable("gpu", ["users"], None)  # no accounting: accounts and QOS are Slurm's to judge
    root_only = dict(summary["batch"], root_only=True)
    assert not sa.partition_usable(root_only, 1001, [], None) and sa.partition_usable(root_only, 0, [], None)


def test_parse_assoc():
    assert sa.parse_assoc("fjtest|normal\nfjother|normal,high\n\n") == {
        "accounts": ["fjtest", "fjother"], "qos": ["normal", "high"]}


def test_associations_are_the_user_s_own_and_need_accounting():
    s, fake = scheduler("", sacctmgr="fjtest|normal\n")
    assert s.associations() == {"accounts": ["fjtest"], "qos": ["normal"]}
    argv = [c for c in fake.calls if c[0] == "sacctmgr"][0]
    assert argv[-2:] == ["user=" + sa.pwd.getpwuid(os.getuid()).pw_name, "format=account,qos"]
    s, fake = scheduler("", accounting=False)
    assert s.associations() is None and not [c for c in fake.calls if c[0] == "sacctmgr"]


def test_partition_summary_is_three_read_only_calls():
    s, fake = scheduler("", sinfo=SINFO_FREE, scontrol=SCONTROL_PARTITIONS)
    fake.answers["squeue"] = SQUEUE_PENDING
    summary = s.partition_summary()
    assert [p["name"] for p in summary] == ["gpu", "batch", "old", "staff"]
    assert [c[0] for c in fake.calls] == ["sinfo", "squeue", "scontrol"]
    assert fake.calls[0][-1] == "--Format=" + sa.SINFO_FREE_FORMAT
    assert "--states=PENDING" in fake.calls[1] and fake.calls[2][1:] == ["show", "partition", "--oneliner"]
    s, _ = scheduler("", sinfo="what\n", scontrol="")  # garbage is not "no partitions"
    with pytest.raises(sa.SchedulerNoAnswer):
        s.partition_summary()


# ------------------------------------------------- the shared poll's bounds ----

SACCT_LINE = ("{id}|{raw}|{state}|{code}|None|{start}|2026-11-25T15:39:00|2026-11-25T15:30:00|{elapsed}|00:00:00||256M|"
              "01:00:00|{uid}|debug|1|1||\n")


def sacct_line(id, state="CANCELLED by 1001", code="0:0", uid=1001, started=False, raw=None):
    return SACCT_LINE.format(id=id, raw=raw or id.partition("_")[0], state=state, code=code, uid=uid,
                             start="2026-11-25T15:38:00" if started else "None", elapsed=60 if started else 0)


def test_one_job_s_row_never_fails_the_round_and_ranges_are_expanded_within_a_bound():
    """A cancelled pending array is one sacct row with its range: past
    100,000 tasks array_tasks raised ValueError inside parse_sacct and the
    whole poll failed; now the range is expanded to MAX_TASKS and one entry
    counts the rest, an unreadable row leaves out its own job only, and the
    other user's job is decided."""
    sacct = (sacct_line("145_[0-150000]") + sacct_line("147_[9-2]") + sacct_line("148_[1-99999999999999]")
             + sacct_line("146", state="COMPLETED", uid=1002, started=True))
    s, _ = scheduler("", sacct, sacctmgr="flightjob\n")
    statuses, owners, outside, undecided = s.poll({"1001": ["145", "147", "148"], "1002": ["146"]})
    assert statuses["146"]["state"] == "COMPLETED" and owners["146"] == 1002
    big = statuses["145"]
    assert big["state"] == "CANCELLED" and len(big["tasks"]) == sa.MAX_TASKS + 1
    assert big["tasks"][-1]["id"] == "145_[+%d]" % (150001 - sa.MAX_TASKS), big["tasks"][-1]
    assert "147" not in statuses and "148" not in statuses and not undecided
    assert len(json.dumps(big)) < 200 * sa.MAX_TASKS
    got = sa.checked_statuses({"statuses": statuses, "owners": owners}, ["145", "146", "147"])
    assert got[0]["145"] == big and got[0]["146"]["state"] == "COMPLETED" and got[0]["147"] is None


def test_a_failed_array_s_reason_is_cut_to_its_bound_and_accepted():
    """42 failed tasks made a reason of ~1,100 characters, and root refused
    the whole poll answer for it: every user's jobs stopped updating."""
    sacct = "".join(sacct_line("93_%d" % t, state="FAILED", code="1:0", started=True, raw=str(100 + t))
                    for t in range(1, 43)) + sacct_line("94", state="COMPLETED", uid=1002, started=True)
    s, _ = scheduler("", sacct, sacctmgr="flightjob\n")
    statuses, owners, _, _ = s.poll({"1001": ["93"], "1002": ["94"]})
    failed = statuses["93"]
    assert failed["state"] == "FAILED" and len(failed["tasks"]) == 42
    assert len(failed["reason_text"]) == sa.STATUS_TEXT and failed["reason_text"].startswith("task 93_1: exit code 1; ")
    got = sa.checked_statuses({"statuses": statuses, "owners": owners}, ["93", "94"])
    assert got[0]["93"] == failed and got[0]["94"]["state"] == "COMPLETED" and not got[3]


def test_one_user_cannot_blow_the_poll_s_answer_past_its_bound():
    """18 cancelled 1,001-task arrays (~123 KB each) failed the poll for
    everyone at a 2 MiB worker.max_message: each user's statuses now share
    half of it fairly; the ordinary user keeps theirs whole, the other's
    fill their share, tasks cut with a count of the rest, or are left out
    this round saying why."""
    sacct = "".join(sacct_line("%d_[0-1000]" % i) for i in range(200, 218))
    sacct += sacct_line("300", state="COMPLETED", uid=1002, started=True)
    config = {"worker": {"max_message": 2 << 20}}
    source = sa.StatusSource.__new__(sa.StatusSource)
    source.config, source.checked = config, (None, 1e18)
    source.scheduler, _ = scheduler("", sacct, sacctmgr="flightjob\n")
    followed = {"1001": [str(i) for i in range(217, 199, -1)], "1002": ["300"]}
    answer, _ = source.perform("status.poll", {"followed": followed})
    assert len(json.dumps([answer["statuses"], answer["outside"]])) <= config["worker"]["max_message"] // 2
    assert len(json.dumps(answer)) < config["worker"]["max_message"] * 0.6
    statuses, _, _, undecided, refused = sa.checked_statuses(answer, [i for ids in followed.values() for i in ids])
    assert statuses["300"]["state"] == "COMPLETED" and not refused and not undecided
    assert {st["state"] for st in statuses.values()} == {"CANCELLED", "COMPLETED"}
    cut = [st for i, st in statuses.items() if i != "300"]
    assert len(cut) == 18 and all(10 < len(st["tasks"]) < 1001 for st in cut)
    assert all(st["tasks"][-1]["reason_text"] == "%d more tasks, not listed here" % (1001 - len(st["tasks"]) + 1)
               and st["tasks"][-1]["id"].endswith("]") for st in cut)
    # a status that cannot fit even with no task listed is left out this round, saying why
    statuses = {"1": dict(st, reason_text="x" * 900) for st in cut[:1]}
    assert sa._fair_room({"1001": ["1"]}, statuses, {}, 500) == {"1": (
        "job 1: its status is larger than its share of the shared poll's answer (500 bytes) this round")}
    assert statuses == {}


def test_another_worker_naming_a_users_job_never_hides_or_cuts_its_status():
    """Red team: a hostile worker's ids named another user's job as
    "5@flightjob" (the home cluster spelt out, which the poll reads as "5"):
    the poll answered only one spelling, the later user's, so the owner's
    "5" was left out and root told the owner "not found" (their running
    job lost after the grace), by order of user names alone. And the same
    ref named by both was sized in both users' shares: a hostile user's
    many large statuses cut or dropped the owner's. Now every spelling
    asked is answered, and a status is kept and sized for its owner only."""
    line = "5|5|N/A|RUNNING|None|0|N/A|N/A|2026-11-25T15:39:07|0:00|1:00:00|cpu=1|1001|debug|\n"
    for followed in ({"1001": ["5"], "1002": ["5@flightjob"]}, {"1002": ["5@flightjob"], "1001": ["5"]}):
        s, _ = scheduler(line, sacctmgr="flightjob\n")
        statuses, owners, _, _ = s.poll(followed)
        assert statuses["5"]["state"] == "RUNNING" and owners["5"] == 1001, followed
        answer, _ = sa.StatusSource.perform(_source(line), "status.poll", {"followed": followed})
        assert set(answer["statuses"]) == {"5"} and answer["owners"] == {"5": 1001}
    sacct = "".join(sacct_line("%d_[0-1000]" % i, uid=1002 if i > 200 else 1001) for i in range(200, 218))
    victim = {"1001": ["200"]}
    alone, _ = sa.StatusSource.perform(_source("", sacct, 1 << 20), "status.poll", {"followed": victim})
    hostile = dict(victim, **{"1002": [str(i) for i in range(217, 199, -1)] + ["200@flightjob"]})
    answer, _ = sa.StatusSource.perform(_source("", sacct, 1 << 20), "status.poll", {"followed": hostile})
    assert answer["statuses"]["200"] == alone["statuses"]["200"] and len(alone["statuses"]["200"]["tasks"]) == 1001
    assert "200@flightjob" not in answer["statuses"] and "200" not in answer["undecided"]


def _source(squeue, sacct="", max_message=2 << 20):
    source = sa.StatusSource.__new__(sa.StatusSource)
    source.config, source.checked = {"worker": {"max_message": max_message}}, (None, 1e18)
    source.scheduler, _ = scheduler(squeue, sacct, sacctmgr="flightjob\n")
    return source


def test_an_array_s_status_lists_its_own_tasks_only():
    """An array's status was seen once (a loaded CI run) listing another
    array's tasks, its last entry counting the rest with the other's id:
    whatever groups rows together, a status is built from its own array's
    rows only."""
    rows = sa.parse_sacct(sacct_line("158_[0-3]") + sacct_line("163_[0-2]"))
    got = sa.SlurmScheduler._combine("158", rows)
    assert [t["id"] for t in got["tasks"]] == ["158_0", "158_1", "158_2", "158_3"]
    rows = sa.parse_sacct(sacct_line("163_[0-2]") + sacct_line("158_[0-3]"))
    assert [t["id"] for t in sa.SlurmScheduler._combine("158", rows)["tasks"]] == ["158_0", "158_1", "158_2", "158_3"]


# ------------------------------------------------------------- site fit ----
# Real output of the test cluster with its partitions whole (DefMemPerCPU=0)
# and excl (OverSubscribe=EXCLUSIVE), and of a second cluster whose node
# declares a GPU (tests/slurm/cluster, FLIGHTJOB_SLURM_GPU=1): see
# tests/data/slurm/README.md.


def test_sinfo_counts_the_gpus_a_template_needs():
    gpu = {"id": "gpu", "needs": ["gpu"]}
    plain = sa.parse_partition_summary(data("sinfo_free.txt"), "", data("scontrol_partitions.txt"))
    assert [p["name"] for p in plain] == ["debug", "long", "whole", "excl"]
    assert {p["gpus_total"] for p in plain} == {0}
    assert sa.missing_needs(gpu, plain) == "needs GPUs: this cluster has none"
    with_gpu = sa.parse_partition_summary(data("sinfo_free_gpu.txt"), "", data("scontrol_partitions.txt"))
    assert [(p["gpus_total"], p["gpus_free"]) for p in with_gpu] == [(1, 1)] * 4
    assert sa.missing_needs(gpu, with_gpu) is None
    assert sa.missing_needs(gpu, None) is None  # not known: not greyed
    assert sa.missing_needs({"id": "serial", "needs": []}, plain) is None


def test_scontrol_partitions_say_their_memory_default_and_exclusive():
    parts = sa.parse_scontrol_partitions(data("scontrol_partitions.txt"))
    got = {n: (p["def_mem_per_cpu"], p["def_mem_per_node"], p["exclusive"]) for n, p in parts.items()}
    # DefMemPerNode=UNLIMITED: none of its own (the cluster's applies); DefMemPerCPU=UNLIMITED: 0, none at all
    assert got == {"debug": (None, None, False), "long": (None, None, False), "whole": (0, None, False),
                   "excl": (None, None, True)}
    line = data("scontrol_partitions.txt").splitlines()[0].replace("DefMemPerNode=UNLIMITED", "DefMemPerNode=4000")
    assert sa.parse_scontrol_partitions(line)["debug"]["def_mem_per_node"] == 4000


def test_job_default_words_on_the_real_partitions_and_config():
    config = sa.parse_scontrol(data("scontrol_show_config.txt"))  # DefMemPerCPU = 256, CR_CORE_MEMORY
    summary = {p["name"]: dict(p, memory_mb=21694) for p in sa.parse_partition_summary(
        data("sinfo_free.txt"), "", data("scontrol_partitions.txt"))}
    words = {n: sa.job_default_words(p, config) for n, p in summary.items()}
    assert words["debug"] == words["long"] == {"exclusive": None, "memory": None}  # 256 MB a CPU
    assert words["whole"] == {"exclusive": None, "memory": "No memory asked: this cluster gives the job all of "
                                                           "the node's memory (21.2 GiB)"}
    assert words["excl"]["memory"] is None and words["excl"]["exclusive"].startswith(
        "Partition excl gives each job whole nodes (OverSubscribe=EXCLUSIVE)")
    # a cluster without a default: every partition that sets none gives all the memory
    bare = sa.parse_scontrol(data("scontrol_show_config.txt").replace(
        "DefMemPerCPU            = 256", "DefMemPerNode           = UNLIMITED"))
    assert sa.job_default_words(summary["debug"], bare)["memory"].endswith("(21.2 GiB)")
    # memory not a consumable resource: nobody is given all of it
    cores = dict(bare, SelectTypeParameters="CR_CORE")
    assert sa.job_default_words(summary["whole"], cores)["memory"] is None


def test_parse_assoc_on_the_real_sacctmgr():
    assert sa.parse_assoc(data("sacctmgr_assoc.txt")) == {"accounts": ["fjother", "fjtest"],
                                                          "qos": ["fjhigh", "normal"]}
    assert sa.parse_assoc("") == {"accounts": [], "qos": []}  # a user with no association: sacctmgr prints nothing
