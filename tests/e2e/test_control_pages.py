"""Job control in a real Chromium: start after one of my jobs, hold and
release, a pending job's time limit, one array task cancelled and each
task's output linked; screenshots in test-output/screenshots (40-49)."""
import re

import pytest
from playwright.sync_api import expect

from test_pages import wait_finished

pytestmark = pytest.mark.e2e


def test_start_after_hold_time_limit(logged_in):
    site, page = logged_in, logged_in.page
    held, release = site.gate("first")
    first = site.submit(site.make_script("First", held)["id"])
    second = site.make_script("Second", "echo second ran")

    site.go("/scripts/%s/submit" % second["id"])
    expect(page.locator("#field-after legend")).to_have_text("Start after one of my jobs")
    page.select_option("#after_job", first["id"])
    page.select_option("#after_type", "afterok")
    site.check_a11y("submit, start after")
    site.shot("40-submit-start-after")
    page.click("button[value=review]")
    expect(page.locator("main")).to_contain_text("Starts after")
    expect(page.locator("main")).to_contain_text("--dependency=afterok:%s" % first["scheduler_id"])
    site.shot("41-summary-start-after")
    page.click("button[value=submit]")
    expect(page.locator("#dependency")).to_contain_text("job %s after it succeeds" % first["scheduler_id"])
    expect(page.locator("[data-field=state-text]")).to_contain_text(
        "waiting for job %s to succeed" % first["scheduler_id"], timeout=30000)
    site.check_a11y("job waiting for another")
    site.shot("42-job-waiting-for-another")

    page.click("#hold")
    expect(page.locator("[data-field=state-text]")).to_contain_text("held by the user")
    expect(page.locator("#release")).to_be_visible()

    page.fill("#time_limit", "5")
    page.click("#time-limit button[type=submit]")
    expect(page.locator("#time-limit dd")).to_contain_text("0:05:00")
    page.fill("#time_limit", "2:00:00")  # raised while it waits, as Slurm lets a user (within MaxTime)
    page.click("#time-limit button[type=submit]")
    expect(page.locator("#job-done")).to_have_text("Done: the time limit is now 2:00:00.")
    page.fill("#time_limit", "soon")
    page.click("#time-limit button[type=submit]")
    expect(page.locator("#time-limit .field-error")).to_contain_text("Time limit:")
    expect(page.locator("#time_limit")).to_have_value("soon")
    site.check_a11y("job held, time limit refused")
    site.shot("43-job-held-time-limit-refused")

    release()  # the first job ends; the second stays held until released
    page.click("#release")
    expect(page.locator("#hold")).to_be_visible()
    wait_finished(page, "Completed")
    expect(page.locator("main")).to_contain_text("second ran")


def test_never_satisfied_dependency_and_array_tasks(logged_in):
    site, page = logged_in, logged_in.page
    first = site.submit(site.make_script("Fine", "true")["id"])
    site.go("/jobs/%s" % first["id"])
    wait_finished(page, "Completed")
    second = site.api("POST", "/api/jobs", {"script": site.make_script("Only if it fails", "true")["id"],
                                            "answers": {}, "after": {"job": first["id"], "type": "afternotok"}})
    site.go("/jobs/%s" % second["id"])
    for _ in range(20):  # the page is rendered with the state of its request
        if page.locator("#never-runs").count():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(page.locator("#never-runs")).to_contain_text("will never run")
    site.check_a11y("job that will never run")
    site.shot("44-job-never-runs")
    page.click("#never-runs button")
    expect(page.locator("h1 .badge")).to_have_text("Cancelled")

    held, release = site.gate("task1")
    array = site.make_script("Array")
    site.api("PATCH", "/api/scripts/%s" % array["id"], {"content": (
        '#!/bin/bash\n#SBATCH --array=1-3\n#SBATCH --output=arr-%%A_%%a.out\n'
        'echo "task $SLURM_ARRAY_TASK_ID"\n[ "$SLURM_ARRAY_TASK_ID" != 1 ] || { %s; }\n') % held})
    job = site.submit(array["id"])
    site.go("/jobs/%s" % job["id"])
    for _ in range(20):
        if page.locator("tr[data-task='%s_2'] a.danger" % job["scheduler_id"]).count():
            break
        page.wait_for_timeout(500)
        page.reload()
    cancel = "/jobs/%s/tasks/2/cancel" % job["id"]
    question = site.accept_confirm("tr[data-task='%s_2'] a.danger" % job["scheduler_id"], cancel)
    assert question.startswith("Cancel array task %s_2?" % job["scheduler_id"])
    release()
    wait_finished(page, "Cancelled")
    row = page.locator("tr[data-task='%s_3']" % job["scheduler_id"])
    expect(row).to_contain_text("Completed")
    expect(page.locator("tr[data-task='%s_2']" % job["scheduler_id"])).to_contain_text("Cancelled")
    site.check_a11y("array job, one task cancelled")
    site.shot("45-array-task-cancelled")
    row.locator("a", has_text=re.compile(r"arr-.*_3\.out")).click()
    expect(page.locator("main")).to_contain_text("task 3")
