"""Site fit (issue 27 item 6): templates offered only where the cluster has
what they need, hidden or reordered by the site; accounts and QOS chosen
from the user's own Slurm associations (asked as the user, in the worker);
the submit page and the preview say when the cluster's defaults give a job
all of a node's memory or a whole node. The local scheduler first, then the
real Slurm test cluster (its partitions whole: DefMemPerCPU=0, and excl:
OverSubscribe=EXCLUSIVE; a second cluster whose node declares a GPU)."""
import os
import subprocess

import pytest

import flightjobd
from support import UnixUsers, wait_for
from test_slurm import Site

GPU_WHY = "needs GPUs: this cluster has none"


# ------------------------------------------------------- local scheduler ----


def test_the_gpu_template_is_greyed_with_why_where_no_partition_has_gpus(make_app):
    c = make_app()
    listed = c.api("GET", "/api/templates").json["templates"]
    by_id = {t["id"]: t for t in listed}
    assert by_id["gpu"]["needs"] == ["gpu"] and by_id["gpu"]["unavailable"] == GPU_WHY
    assert by_id["serial"]["unavailable"] is None
    assert listed[-1]["id"] == "gpu"  # those that cannot run here come last
    page = c.web.get("/templates")
    card = page.html.select_one("#template-gpu")
    assert "unavailable" in card["class"] and "Not offered here: %s." % GPU_WHY in card.text
    assert not card.select('a[href="/templates/gpu/create"]')
    assert page.html.select_one('#template-serial a[href="/templates/serial/create"]')
    create = c.web.get("/templates/gpu/create")
    assert "This template is not offered here: %s" % GPU_WHY in create.text


def test_a_site_hides_and_reorders_templates_but_never_a_users_own(make_app, tmp_path):
    c = make_app(templates={"site_dirs": [], "hide": ["mpi", "array"], "order": ["smp", "exclusive"]})
    ids = [t["id"] for t in c.api("GET", "/api/templates").json["templates"]]
    assert ids[:2] == ["smp", "exclusive"] and "mpi" not in ids and "array" not in ids
    assert ids == ["smp", "exclusive", "serial", "gpu"]  # then by priority; gpu (unavailable) last
    c.api("GET", "/api/templates/mpi", status=404)
    c.web.get("/templates/mpi/create", status=404)
    r = c.api("POST", "/api/scripts", {"template": "mpi", "name": "x", "answers": {}}, status=404)
    assert r.json["error"]["code"] == "not_found"
    # a user's own template named like a hidden one is theirs: offered
    own = tmp_path / "user-templates" / "mpi"
    own.mkdir(parents=True)
    (own / "template.toml").write_text('name = "My MPI"\nsynopsis = "mine"\ndescription = "mine"\n')
    (own / "script.sh").write_text("#!/bin/bash\necho mine\n")
    assert "mpi" in [t["id"] for t in c.api("GET", "/api/templates").json["templates"]]


def test_a_template_needing_what_flightjobd_does_not_know_is_reported(make_app, tmp_path):
    c = make_app()
    bad = tmp_path / "site-templates" / "quantum"
    bad.mkdir(parents=True)
    (bad / "template.toml").write_text('name = "Q"\nsynopsis = "q"\ndescription = "q"\nneeds = ["qpu"]\n')
    (bad / "script.sh").write_text("#!/bin/bash\n")
    problems = c.api("GET", "/api/templates").json["problems"]
    assert [p["error"] for p in problems if p["id"] == "quantum"] == ["template.toml: needs must be a list of 'gpu'"]


def test_config_checks_the_template_keys(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[templates]\nhide = "gpu"\norder = ["serial"]\n')
    with pytest.raises(flightjobd.ConfigError, match="templates.hide"):
        flightjobd.load_config(str(path), required=True)
    path.write_text('[templates]\nhide = ["gpu"]\norder = ["serial"]\n')
    config = flightjobd.load_config(str(path), required=True)
    assert config["templates"]["hide"] == ["gpu"] and config["templates"]["order"] == ["serial"]


# ------------------------------------------------------------ real Slurm ----

def sacctmgr(cluster, *words):
    r = subprocess.run(["sacctmgr", "-i"] + list(words), capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, SLURM_CONF=cluster.conf))
    assert r.returncode == 0 or "Nothing new added" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.fixture(scope="module")
def site(slurm_cluster, runtime, pam_service):
    """A user with two accounts of their own (fjtest, fjother) and a second
    QOS (fjhigh) on fjother, added by root as a site's administrator would."""
    slurm_cluster.ensure(accounting=True)
    users = UnixUsers()
    user = users.create()
    subprocess.run([slurm_cluster.script, "add-user", user.name], check=True, capture_output=True, timeout=60)
    sacctmgr(slurm_cluster, "add", "user", user.name, "account=fjother")
    sacctmgr(slurm_cluster, "add", "qos", "fjhigh")
    sacctmgr(slurm_cluster, "modify", "user", "where", "name=" + user.name, "account=fjother", "set", "qos+=fjhigh")
    s = Site(runtime, slurm_cluster, user)
    yield s
    s.close()
    slurm_cluster.run("scancel", "--user", user.name)
    sacctmgr(slurm_cluster, "delete", "user", user.name)
    users.remove_all()


def question(sub, qid):
    return [q for q in sub["questions"] if q["id"] == qid][0]


def shared_submission(site, sid):
    """The submission once the shared poll's partition summary is in."""
    return wait_for(lambda: (lambda sub: sub if (sub["cluster"] or {}).get("shared") else None)(
        site.api("GET", "/api/scripts/%s/submission" % sid)), 60, "the shared poll's partition summary")


@pytest.mark.slurm
def test_slurm_gpu_template_greyed_on_a_cluster_without_gpus(site):
    sid = site.script("true")
    shared_submission(site, sid)  # the poll has a summary now
    listed = {t["id"]: t for t in site.api("GET", "/api/templates")["templates"]}
    assert listed["gpu"]["unavailable"] == GPU_WHY and listed["serial"]["unavailable"] is None
    gres = site.app.pool.poll.cluster["partitions"]
    assert {p["gpus_total"] for p in gres} == {0}  # sinfo's Gres: (null)


@pytest.mark.slurm
def test_slurm_gpu_template_offered_on_a_cluster_with_a_gpu(slurm_cluster, runtime, pam_service, monkeypatch):
    """A second cluster whose node declares Gres=gpu:1 (FLIGHTJOB_SLURM_GPU):
    its users are offered the GPU template (sinfo's Gres, through the shared
    poll)."""
    slurm_cluster.ensure(accounting=True)
    monkeypatch.setenv("FLIGHTJOB_SLURM_GPU", "1")
    conf = slurm_cluster.start_second("fjgpu", first_job_id=5000)
    monkeypatch.delenv("FLIGHTJOB_SLURM_GPU")
    users, s = UnixUsers(), None
    try:
        s = Site(runtime, slurm_cluster, users.create(),
                 scheduler=dict(slurm_cluster.scheduler(), environment={"SLURM_CONF": conf}))
        sub = shared_submission(s, s.script("true"))
        assert {p["gpus_total"] for p in sub["cluster"]["partitions"]} == {1}
        listed = {t["id"]: t for t in s.api("GET", "/api/templates")["templates"]}
        assert listed["gpu"]["unavailable"] is None
        assert s.pages.get("/templates").html.select_one('#template-gpu a[href="/templates/gpu/create"]')
    finally:
        if s:
            s.close()
        slurm_cluster.stop_second("fjgpu")
        users.remove_all()


@pytest.mark.slurm
def test_slurm_account_is_chosen_from_the_users_own_associations(site, slurm_cluster):
    sid = site.script("echo charged to $SLURM_JOB_ACCOUNT")
    sub = site.api("GET", "/api/scripts/%s/submission" % sid)
    account, qos = question(sub, "account"), question(sub, "qos")
    assert account["type"] == "select" and [o["value"] for o in account["options"]] == ["", "fjother", "fjtest"]
    assert [o["value"] for o in qos["options"]] == ["", "fjhigh", "normal"]
    page = site.pages.get("/scripts/%s/submit" % sid)
    assert [o["value"] for o in page.html.select("select#q_account option")] == ["", "fjother", "fjtest"]
    # one not theirs: refused before sbatch, naming the allowed ones
    before = len(site.api("GET", "/api/jobs")["jobs"])
    r = site.api("POST", "/api/jobs", {"script": sid, "answers": {"account": "root"}}, status=422)
    assert r["error"]["fields"]["account"] == "Account: 'root' is not one of the choices (fjother, fjtest)"
    r = site.api("POST", "/api/jobs", {"script": sid, "answers": {"qos": "fjnone"}}, status=422)
    assert "fjhigh, normal" in r["error"]["fields"]["qos"]
    # the script's own #SBATCH line too
    other = site.script("true", "#SBATCH --account=root")
    r = site.api("POST", "/api/jobs", {"script": other, "answers": {}}, status=422)
    assert r["error"]["fields"]["account"] == "Account: 'root' is not one of yours in Slurm's accounting (fjother, fjtest)"
    assert len(site.api("GET", "/api/jobs")["jobs"]) == before  # no job, no sbatch
    # one of theirs: the job is charged to it, as sacct says
    job = site.wait(site.api("POST", "/api/jobs", {"script": sid, "answers": {"account": "fjother", "qos": "fjhigh"}},
                             status=201), detail=True)
    assert job["state"] == "COMPLETED"
    told = slurm_cluster.run("sacct", "-n", "-X", "-P", "-j", job["scheduler_id"], "-o", "Account,QOS").split()
    assert told == ["fjother|fjhigh"]


@pytest.mark.slurm
def test_slurm_whole_node_memory_and_exclusive_said_before_submit(site, slurm_cluster):
    sid = site.script("sleep 1")
    sub = shared_submission(site, sid)
    mem_mb = int(slurm_cluster.run("sinfo", "--noheader", "--Node", "--partition=whole", "--format=%m").split()[0])
    words = "No memory asked: this cluster gives the job all of the node's memory (%s)" % flightjobd.mem_words(mem_mb)
    assert sub["job_defaults"]["whole"]["memory"] == words and "debug" not in sub["job_defaults"]
    assert "OverSubscribe=EXCLUSIVE" in sub["job_defaults"]["excl"]["exclusive"]
    preview = site.api("POST", "/api/scripts/%s/preview" % sid, {"answers": {"partition": "whole"}})
    assert preview["job_defaults"] == [words]
    assert site.api("POST", "/api/scripts/%s/preview" % sid, {"answers": {"partition": "whole", "mem": "200M"}}
                    )["job_defaults"] == []
    assert site.api("POST", "/api/scripts/%s/preview" % sid, {"answers": {}})["job_defaults"] == []  # debug
    excl = site.api("POST", "/api/scripts/%s/preview" % sid, {"answers": {"partition": "excl"}})["job_defaults"]
    assert len(excl) == 1 and "whole nodes" in excl[0]
    summary = site.pages.post("/scripts/%s/submit" % sid, {"csrf": site.pages.get("/api/session").json["csrf_token"],
                                                           "action": "review", "q_partition": "whole"})
    assert words in summary.html.select_one("#job-defaults").text
    page = site.pages.get("/scripts/%s/submit" % sid)
    assert page.html.select_one("#job-defaults").has_attr("hidden")  # debug, the default: nothing to say
    # true: Slurm gives such a job all of the node's memory
    job = site.wait(site.api("POST", "/api/jobs", {"script": sid, "answers": {"partition": "whole"}}, status=201),
                    detail=True)
    def req_mem():  # slurmdbd's record may be partial at first (a loaded run read "16?")
        text = slurm_cluster.run("sacct", "-n", "-X", "-P", "-j", job["scheduler_id"], "-o", "ReqMem").strip()
        return text if text[-1:] in ("K", "M", "G", "T") else None
    assert wait_for(req_mem, 60, "sacct's ReqMem of job %s" % job["scheduler_id"]) == "%dM" % mem_mb


@pytest.mark.slurm
@pytest.mark.no_accounting
def test_slurm_without_accounting_the_account_is_free_text_saying_why(slurm_cluster, runtime, pam_service):
    slurm_cluster.ensure(accounting=False)
    users = UnixUsers()
    s = Site(runtime, slurm_cluster, users.create())
    try:
        sub = s.api("GET", "/api/scripts/%s/submission" % s.script("true"))
        account = question(sub, "account")
        assert account["type"] == "text" and "qos" not in [q["id"] for q in sub["questions"]]
        assert "this cluster keeps no accounting (no slurmdbd): your accounts cannot be listed" in account["description"]
    finally:
        s.close()
        users.remove_all()


def test_a_worker_answering_site_fit_in_the_wrong_shape_is_refused():
    """What the pages print of a worker's site-fit answers is checked by root
    first: the wrong shape is a clear 503 (Unavailable), never a 500."""
    script = {"id": "1", "etag": "1", "name": "x", "template_id": "serial", "template_name": None, "answers": {},
              "created_at": "2026-12-07T12:00:00Z", "updated_at": "2026-12-07T12:00:00Z", "version": 1,
              "origin": None}
    good = {"script": script, "questions": [], "scheduler": {},
            "job_defaults": {"whole": {"memory": "all of it", "exclusive": None, "default": False}}}
    assert flightjobd.checked_answer("scripts.submission", good) is good
    with pytest.raises(flightjobd.Unavailable):
        flightjobd.checked_answer("scripts.submission", dict(good, job_defaults={"whole": {"memory": 5}}))
    with pytest.raises(flightjobd.Unavailable):
        flightjobd.checked_answer("templates.list", {"templates": [
            {"id": "gpu", "name": "G", "synopsis": "s", "description": "d", "tags": [], "unavailable": ["x"]}],
            "problems": []})
    assert flightjobd.checked_answer("templates.list", {"templates": [
        {"id": "gpu", "name": "G", "synopsis": "s", "description": "d", "tags": [], "unavailable": "why"}],
        "problems": []})
