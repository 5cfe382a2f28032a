"""What a job page says is true (issue 25), in a real Chromium against the
real Slurm test cluster, each page checked against what sacct says: a
template's job runs in a folder of its own (listing and zip its own), a
time-out and a launch failure read as what they are (no "Exit code 0", no
"exit code 15"), a refused submission is titled by its script with the
way back to the form; screenshots in test-output/screenshots (60-69)."""
import io
import os
import re
import subprocess
import zipfile

import pytest
from playwright.sync_api import expect

from support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]



def sacct(site, sched, field):
    """What sacct says of the job's field, once slurmdbd has its record (it
    may lag the job's end on a loaded machine)."""
    return wait_for(lambda: site.cluster.run("sacct", "-n", "-X", "-P", "-j", sched, "-o", field).strip(), 60,
                    "sacct's %s of job %s" % (field, sched), interval=0.5)


def wait_final(site, job_id, timeout=240):
    """The job page once the job has ended and its final figures are in."""
    site.go("/jobs/" + job_id)
    expect(site.page.locator("[data-live-job]")).to_have_attribute(
        "data-state", re.compile("COMPLETED|FAILED|CANCELLED"), timeout=timeout * 1000)
    for _ in range(60):
        job = site.api("GET", "/api/jobs/" + job_id)
        if not job.get("detail_pending"):
            break
        site.page.wait_for_timeout(1000)
    site.go("/jobs/" + job_id)
    return job


def test_results_time_out_launch_failure_and_refusal_read_true(slurm_site):
    site, page = slurm_site, slurm_site.page
    # a template's script, submitted twice: two folders, each job's page lists and zips its own output only
    script = site.api("POST", "/api/scripts", {"template": "serial", "name": "per job", "answers": {}})
    jobs = [site.submit(script["id"]) for _ in (1, 2)]
    # a time-out: --time=1 sleeping past it
    slow = site.make_script("slow", "sleep 300")
    timeout = site.api("POST", "/api/jobs", {"script": slow["id"], "answers": {"time": "1"}})
    for n, job in enumerate(jobs, 1):
        job = wait_final(site, job["id"])
        folder = os.path.join(site.user.home, "per-job-%d" % n)
        assert job["results_dir"] == folder == sacct(site, job["scheduler_id"], "WorkDir")
        expect(page.locator("main")).to_contain_text("Results directory")
        listed = page.locator("#results-h ~ form .table-wrap a").all_inner_texts()
        assert {t.split()[-1] for t in listed} == {"job-%s.out" % job["scheduler_id"]}, listed  # view, download
        with page.expect_download() as got:
            page.click("text=Download all as .zip")
        with open(got.value.path(), "rb") as f:
            assert zipfile.ZipFile(io.BytesIO(f.read())).namelist() == ["job-%s.out" % job["scheduler_id"]]
    site.shot("60-job-in-its-own-folder")

    # a launch failure: the output folder is gone when Slurm starts the job
    gone = os.path.join(site.user.home, "gone")
    subprocess.run(["runuser", "-u", site.user.name, "--", "mkdir", gone], check=True)
    failing = site.make_script("failing", "echo never")
    content = site.api("GET", "/api/scripts/%s" % failing["id"])["content"].replace(
        "#SBATCH --output=\"job-%j.out\"", "#SBATCH --hold\n#SBATCH --output=%s/job-%%j.out" % gone)
    assert "--hold" in content
    site.api("PATCH", "/api/scripts/%s" % failing["id"], {"content": content})
    launch = site.submit(failing["id"])
    os.rmdir(gone)
    site.cluster.run("scontrol", "release", launch["scheduler_id"])
    wait_final(site, launch["id"])
    assert sacct(site, launch["scheduler_id"], "ExitCode") == "0:53"
    expect(page.locator("[data-field=state-text]")).to_contain_text(
        "could not write its output to %s/job-%s.out: the folder %s does not exist"
        % (gone, launch["scheduler_id"], gone))
    expect(page.locator("[data-row=exit_code]")).to_be_hidden()
    assert "exit code 15" not in page.locator("main").inner_text().lower()
    site.check_a11y("launch failure")
    site.shot("61-launch-failure")

    # a refused submission: titled by its script, the way back puts sbatch's words beside Memory
    refused = site.api("POST", "/api/jobs", {"script": slow["id"], "answers": {"mem": "100000000M"}})
    site.go("/jobs/" + refused["id"])
    expect(page.locator("h1")).to_contain_text("slow (not submitted)")
    page.click("text=Edit the answers and submit again")
    expect(page.locator("#field-mem .field-error")).to_contain_text("Memory specification can not be satisfied")
    expect(page.locator("#q_mem")).to_have_value("100000000M")
    site.check_a11y("refused, the way back")
    site.shot("62-refused-way-back")

    # the time-out: TIMEOUT beside the words, no exit code, advice on time, found by "timeout" in the list
    job = wait_final(site, timeout["id"], timeout=300)
    assert sacct(site, timeout["scheduler_id"], "State") == "TIMEOUT"
    expect(page.locator("[data-field=state-text]")).to_have_text("Failed — ran out of time")
    expect(page.locator("[data-field=raw_state]")).to_have_text("TIMEOUT")
    expect(page.locator("[data-row=exit_code]")).to_be_hidden()
    expect(page.locator(".advice")).to_contain_text("It ran out of time: it ran 0:01:")
    assert "asked for" not in page.locator(".efficiency").inner_text(), job["efficiency"]
    site.check_a11y("time-out")
    site.shot("63-time-out")
    site.go("/jobs?q=timeout")
    row = page.locator("tr[data-job='%s']" % timeout["id"])
    expect(row.locator("[data-field=state]")).to_have_text("Failed · timeout")
    expect(page.locator("tr[data-job]")).to_have_count(1)


def test_a_running_jobs_page_moves_on_its_own(slurm_site):
    """Opened while the job waits, never reloaded: the page shows it start
    (as squeue says), its run time counting on, and files the job writes as
    they come into its results listing; boxes ticked stay ticked."""
    site, page = slurm_site, slurm_site.page
    script = site.make_script("live", "sleep 5\necho one > first.txt\nsleep 6\necho two > second.txt\nsleep 120")
    job = site.api("POST", "/api/jobs", {"script": script["id"], "answers": {"time": "10"}})
    site.go("/jobs/" + job["id"])
    page.evaluate("window.stayed = true")  # gone if the page reloads
    run = page.locator('[data-row="run_time"]')
    expect(run).to_be_visible(timeout=120000)
    assert site.cluster.run("squeue", "-h", "-j", job["scheduler_id"], "-o", "%T").strip() in ("RUNNING", "COMPLETING")
    expect(run).to_contain_text("of %s allowed" % site.api("GET", "/api/jobs/" + job["id"])["time_limit"])
    listed = page.locator("#results tbody a")
    expect(page.locator("#results")).to_contain_text("first.txt", timeout=60000)
    page.check("#results input[value='first.txt']")
    first = run.locator('[data-field="run_time"]').inner_text()
    expect(page.locator("#results")).to_contain_text("second.txt", timeout=60000)
    expect(run.locator('[data-field="run_time"]')).not_to_have_text(first)
    assert page.is_checked("#results input[value='first.txt']")
    assert page.evaluate("window.stayed === true"), "the page reloaded"
    names = {t.split()[0] for t in listed.all_inner_texts() if t.strip() and t != "Download"}
    assert {"first.txt", "second.txt", "job-%s.out" % job["scheduler_id"]} <= names, names
    site.check_a11y("a running job, live")
    site.shot("64-running-job-live")
    site.cluster.run("scancel", job["scheduler_id"])
