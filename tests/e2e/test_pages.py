"""The pages as a person meets them, in a real Chromium, against the daemon
running for real: every flow of the user documentation, an axe-core check
of every page, and a screenshot of each key page in test-output/screenshots.
"""
import re
import zipfile

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def wait_finished(page, text, timeout=45000):
    """The badge changes live (the page polls with backoff, at most every
    30 s); then the page reloads itself once, after which the
    server-rendered Remove button is there."""
    expect(page.locator("h1 .badge")).to_have_text(text, timeout=timeout)
    expect(page.locator("a.button:has-text('Remove')")).to_be_visible()
    page.wait_for_load_state()


def test_login_form_home_and_logout(site):
    page = site.page
    site.go("/jobs")  # not logged in: sent to the login form, coming back after
    expect(page).to_have_url(re.compile(r"/login\?next=/jobs"))
    expect(page.locator("label[for=username]")).to_have_text("Username")
    site.check_a11y("login")
    site.shot("01-login")

    page.fill("#username", site.user.name)
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_be_visible()
    site.check_a11y("login with an error")
    site.shot("01-login-failed")

    page.fill("#username", site.user.name)
    page.fill("#password", site.user.password)
    page.click("button[type=submit]")
    expect(page).to_have_url(site.url + "/jobs")  # where the user was going
    expect(page.locator(".empty")).to_contain_text("You have not submitted any jobs yet")
    site.check_a11y("jobs, empty")
    site.shot("02-jobs-empty")

    page.click("header .brand")
    expect(page.locator("h1")).to_have_text("Job manager")
    expect(page.locator("header .who")).to_contain_text(site.user.name)
    for entry in ("Browse script templates", "Browse scripts", "Monitor jobs"):
        expect(page.get_by_role("link", name=re.compile(entry))).to_be_visible()
    site.check_a11y("home")
    site.shot("03-home")

    page.click("text=Log out")
    expect(page).to_have_url(site.url + "/login")
    site.go("/scripts")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_create_view_and_edit_a_script(logged_in):
    site, page = logged_in, logged_in.page
    site.go("/scripts")
    expect(page.locator(".empty")).to_contain_text("no job scripts yet")
    site.check_a11y("scripts, empty")
    site.shot("04-scripts-empty")

    page.click("text=Create a job script")
    expect(page).to_have_url(site.url + "/templates")
    expect(page.locator(".template h2").first).to_be_visible()
    site.check_a11y("templates")
    site.shot("05-templates")

    page.click("text=Create script from Serial job")
    expect(page.locator("h1")).to_contain_text("Serial job")
    expect(page.locator("button[value=update]")).to_be_hidden()  # the no-JavaScript fallback
    email = page.locator("#field-email")
    expect(email).to_be_hidden()
    page.fill("#name", "My analysis")
    page.click("button:text-is('Next')")  # asked in steps (tests/e2e/test_questions.py)
    page.uncheck("#q_merge_output")
    expect(page.locator("#field-error_file")).to_be_visible()
    page.check("#q_merge_output")
    expect(page.locator("#field-error_file")).to_be_hidden()
    page.click("button:text-is('Next')")
    page.check("#q_notify")  # the email questions appear as the box is ticked
    expect(email).to_be_visible()
    expect(page.locator("#field-mail_events")).to_be_visible()
    page.fill("#q_email", "me@example.org")
    site.check_a11y("create")
    site.shot("06-create")

    page.click("button[value=create]")
    expect(page).to_have_url(re.compile(r"/scripts/[\w-]+$"))
    expect(page.locator("h1")).to_have_text("My analysis")
    expect(page.locator("pre.numbered")).to_contain_text("--mail-user")
    site.check_a11y("script")
    site.shot("07-script")

    # notes
    page.click("text=Edit the notes")
    page.fill("#text", "Runs the weekly analysis.\nCheck the output file.")
    site.check_a11y("notes edit")
    page.click("text=Save notes")
    expect(page.locator(".notes-text")).to_contain_text("Runs the weekly analysis.")

    # the script: Tab types a tab; Esc then Tab leaves the editor
    page.click("text=Edit the script")
    editor = page.locator("textarea#text")
    expect(page.locator("#text-help")).to_be_visible()
    editor.press("End")
    editor.press("Control+End")
    editor.type("\n")
    editor.press("Tab")
    editor.type("echo tabbed")
    assert "\n\techo tabbed" in editor.input_value()
    editor.press("Escape")
    editor.press("Tab")
    expect(editor).not_to_be_focused()
    site.check_a11y("script edit")
    site.shot("08-script-edit")
    page.click("text=Save script")
    expect(page.locator("pre.numbered")).to_contain_text("echo tabbed")
    lines = page.locator("pre.numbered .line").count()
    assert lines > 10

    page.click("text=Rename")
    page.fill("#text", "Weekly analysis")
    page.click("text=Save name")
    expect(page.locator("h1")).to_have_text("Weekly analysis")

    page.click("nav[aria-label=Main] >> text=Scripts")
    expect(page.locator("table.list")).to_contain_text("Weekly analysis")
    site.check_a11y("scripts")
    site.shot("09-scripts")


def test_submit_with_questions_and_watch_it_complete(logged_in):
    site, page = logged_in, logged_in.page
    held, release = site.gate("sleepy")
    script = site.make_script("Sleepy", held + "\necho 'all done'")
    site.go("/scripts/%s" % script["id"])
    page.click("text=Submit")
    expect(page.locator("h1")).to_have_text("Submit Sleepy")
    page.fill("#q_time", "0-00:10:00")
    # will it start soon: the local scheduler's one partition, this machine
    expect(page.locator('[data-cluster] tr[data-partition="local"] [data-field=cores]')).to_contain_text(" of ")
    site.check_a11y("submit")
    site.shot("10-submit")

    page.click("button[value=review]")
    expect(page.locator("h1")).to_have_text("Summary")
    expect(page.locator(".facts").first).to_contain_text("--time=0-00:10:00")
    site.check_a11y("summary")
    site.shot("11-summary")

    page.click("button[value=submit]")
    expect(page).to_have_url(re.compile(r"/jobs/[\w-]+$"))
    badge = page.locator("h1 .badge")
    expect(badge).to_have_text(re.compile("Pending|Running"))
    site.check_a11y("job, unfinished")
    site.shot("12-job-running")

    # No reload by the test: the page's script polls, updates the badge and
    # then reloads once by itself so the results appear. The job runs until
    # the test has seen it running (the poll backs off up to 30 s).
    expect(page.locator("[data-live-job]")).to_have_attribute("data-state", "RUNNING", timeout=45000)
    expect(badge).to_have_text("Running")
    release()
    wait_finished(page, "Completed")
    job_id = page.url.rsplit("/", 1)[1]
    assert page.evaluate("sessionStorage.getItem('flightjob-reloaded-%s')" % job_id) == "COMPLETED"
    expect(page.locator("pre[data-follow=stdout]")).to_contain_text("all done")
    expect(page.locator("[data-field=exit_code]")).to_have_text("0")
    expect(page.locator(".facts").first).to_contain_text("Time to completion")
    # efficiency: the local scheduler records CPU time and its largest process's peak
    expect(page.locator("#efficiency-h")).to_have_text("Efficiency")
    expect(page.locator(".efficiency [data-field=cpu_percent]")).to_contain_text("%")
    site.check_a11y("job, completed")
    site.shot("13-job-completed")

    # the results as one .zip: the ticked file only (a form, no script needed)
    page.check("#results-h ~ form.archive input[name=path][value$='.out']")
    with page.expect_download() as got:
        page.click("text=Download the chosen files as .zip")
    assert re.match(r"^job-\d+-results\.zip$", got.value.suggested_filename), got.value.suggested_filename
    with zipfile.ZipFile(got.value.path()) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    assert len(entries) == 1 and entries[0][0].endswith(".out") and b"all done\n" in entries[0][1], entries
    page.click("#results-h ~ form .table-wrap a:has-text('.out') >> nth=0")
    expect(page.locator("pre.code")).to_contain_text("all done")
    expect(page.locator("nav.crumbs")).to_contain_text("Jobs")
    site.check_a11y("file view")
    site.shot("14-file")

    page.click("nav.crumbs >> text=Jobs")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(page.locator("tr[data-job] .badge")).to_have_text("Completed")
    expect(page.locator("tr[data-job] [data-field=time_percent]")).to_contain_text("%")
    site.check_a11y("jobs")
    site.shot("15-jobs")


def test_jobs_list_updates_without_reload(logged_in):
    site, page = logged_in, logged_in.page
    held, release = site.gate("short")
    script = site.make_script("Short", held)
    site.submit(script["id"])
    site.go("/jobs")
    row = page.locator("tr[data-job]")
    expect(row.locator(".badge")).to_have_text(re.compile("Pending|Running"))
    page.evaluate("window.notReloaded = true")
    release()
    expect(row.locator(".badge")).to_have_text("Completed", timeout=45000)
    expect(row.locator("[data-field=ended_at] time")).to_have_count(1)
    assert page.evaluate("window.notReloaded") is True
    expect(row.locator("time[data-ago]").first).to_have_text(re.compile(r"ago$"))


def test_cancel_a_job_and_remove_it(logged_in):
    site, page = logged_in, logged_in.page
    script = site.make_script("Long", "sleep 300")
    job = site.submit(script["id"])
    site.go("/jobs/%s" % job["id"])
    expect(page.locator("h1 .badge")).to_have_text(re.compile("Pending|Running"))

    # the confirmation page, for browsers without JavaScript
    site.confirmation_page("/jobs/%s/cancel" % job["id"], "Cancel job", "16-confirm-cancel")

    # dismissing the dialog sends nothing, and the job runs on
    cancel = "/jobs/%s/cancel" % job["id"]
    assert site.dismiss_confirm("text=Cancel job", cancel).startswith("Cancel job")
    assert site.api("GET", "/api/jobs/%s" % job["id"])["state"] in ("PENDING", "RUNNING")
    expect(page.locator("h1 .badge")).to_have_text(re.compile("Pending|Running"))

    assert site.accept_confirm("text=Cancel job", cancel).startswith("Cancel job")
    expect(page.locator("h1 .badge")).to_have_text("Cancelled")
    assert site.api("GET", "/api/jobs/%s" % job["id"])["state"] == "CANCELLED"
    expect(page.locator(".facts").first).to_contain_text("Time since cancellation")
    expect(page.locator("main")).to_contain_text("no results to show")
    site.check_a11y("job, cancelled")
    site.shot("17-job-cancelled")

    site.confirmation_page("/jobs/%s/remove" % job["id"], "Remove job", "18-confirm-remove")

    assert site.accept_confirm("a:has-text('Remove')", "/jobs/%s/remove" % job["id"]).startswith("Remove job")
    expect(page).to_have_url(site.url + "/jobs")
    expect(page.locator(".empty")).to_be_visible()


def test_a_failed_job_says_why(logged_in):
    site, page = logged_in, logged_in.page
    script = site.make_script("Broken", "exit 3")
    job = site.submit(script["id"])
    site.go("/jobs/%s" % job["id"])
    wait_finished(page, "Failed")
    expect(page.locator("p.error")).to_contain_text("3")
    expect(page.locator("[data-field=exit_code]")).to_have_text("3")
    site.check_a11y("job, failed")
    site.shot("19-job-failed")


def test_delete_a_script_with_confirmation(logged_in):
    site, page = logged_in, logged_in.page
    keep = site.make_script("Keeper")
    doomed = site.make_script("Doomed")

    site.go("/scripts/%s/delete" % doomed["id"])
    expect(page.locator(".confirm")).to_contain_text("Doomed")
    site.check_a11y("delete confirmation")
    site.shot("20-confirm-delete")

    site.go("/scripts/%s" % doomed["id"])
    delete = "/scripts/%s/delete" % doomed["id"]
    assert "Doomed" in site.dismiss_confirm("a:has-text('Delete')", delete)
    expect(page).to_have_url(site.url + "/scripts/%s" % doomed["id"])
    assert site.api("GET", "/api/scripts/%s" % doomed["id"])["name"] == "Doomed"  # still there

    assert "Doomed" in site.accept_confirm("a:has-text('Delete')", delete)
    expect(page).to_have_url(site.url + "/scripts")
    expect(page.locator("table.list")).not_to_contain_text("Doomed")
    expect(page.locator("table.list")).to_contain_text(keep["name"])


def test_error_pages_help(logged_in):
    site, page = logged_in, logged_in.page
    response = site.go("/jobs/20200101-000000000-abcdef")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("nav[aria-label=Main]")).to_be_visible()
    site.check_a11y("error page (404)")
    site.shot("21-error-404")

    response = site.go("/no/such/page")
    assert response.status == 404
    expect(page.locator("nav[aria-label=Main]")).to_be_visible()
    expect(page.get_by_role("link", name="Go to the home page")).to_be_visible()


def test_phone_sized_pages(logged_in):
    site, page = logged_in, logged_in.page
    page.set_viewport_size({"width": 390, "height": 844})
    script = site.make_script("On the go", "exit 0")
    job = site.submit(script["id"])
    site.go("/jobs/%s" % job["id"])
    wait_finished(page, "Completed")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, "the job page scrolls sideways on a phone (%dpx)" % width
    site.check_a11y("job on a phone")
    site.shot("22-phone-job")
    site.go("/")
    site.shot("22-phone-home")
    site.go("/scripts/%s" % script["id"])
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, "the script page scrolls sideways on a phone (%dpx)" % width
    site.shot("22-phone-script")


def test_everything_works_without_javascript(site, browser):
    """The same flows with JavaScript off: the fallback buttons and the
    confirmation pages do the work."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    site.page = page
    try:
        site.login()
        site.go("/templates/serial/create")
        update = page.locator("button[value=update]")
        expect(update).to_be_visible()
        expect(page.locator("#field-email")).to_be_hidden()
        page.fill("#name", "No script here")
        page.check("#q_notify")
        update.click()  # the server shows the questions that now apply
        expect(page.locator("#field-email")).to_be_visible()
        expect(page.locator("#name")).to_have_value("No script here")
        page.fill("#q_email", "me@example.org")
        page.click("button[value=create]")
        expect(page.locator("h1")).to_have_text("No script here")
        script_url = page.url

        page.click("a:has-text('Submit')")
        page.click("button[value=review]")
        page.click("button[value=submit]")
        expect(page.locator("h1 .badge")).to_be_visible()
        page.click("a:has-text('Cancel job')")  # a confirmation page, then the real thing
        expect(page.locator("h1")).to_have_text("Cancel job")
        page.click("button:has-text('Cancel')")
        expect(page.locator("h1 .badge")).to_have_text(re.compile("Cancelled|Completed"))
        page.click("a:has-text('Remove')")
        page.click("button:has-text('Remove')")
        expect(page).to_have_url(site.url + "/jobs")

        page.goto(script_url)
        page.click("a:has-text('Delete')")
        expect(page.locator("h1")).to_have_text("Delete script")
        page.click("button:has-text('Delete')")
        expect(page).to_have_url(site.url + "/scripts")
        expect(page.locator(".empty")).to_be_visible()
    finally:
        context.close()


def test_a_running_jobs_output_is_followed(logged_in):
    site, page = logged_in, logged_in.page
    held, _ = site.gate("chatty")  # never opened: the job runs until cancelled
    script = site.make_script("Chatty", held)
    job = site.submit(script["id"])
    site.go("/jobs/%s" % job["id"])
    page.evaluate("window.notReloaded = true")
    output = page.locator("pre[data-follow=stdout]")
    expect(page.locator("[data-following]")).to_be_visible()
    expect(output).to_contain_text("Step 3 of 3", timeout=45000)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("h1 .badge")).to_have_text("Running")
    site.shot("12-job-following")
    site.api("POST", "/api/jobs/%s/cancel" % job["id"])


def test_submit_again_copy_and_save_as_template(logged_in):
    site, page = logged_in, logged_in.page
    script = site.make_script("Again")
    job = site.api("POST", "/api/jobs", {"script": script["id"], "answers": {"time": "0-00:05:00"}})
    site.go("/jobs/%s" % job["id"])
    page.click("text=Submit the script again with these answers")
    expect(page.locator("#values-source")).to_contain_text("Values from the answers of job")
    expect(page.locator("#q_time")).to_have_value("0-00:05:00")
    site.check_a11y("submit with a job's answers")
    site.shot("13-submit-again")
    page.click("text=Reset to the defaults")
    expect(page.locator("#values-source")).to_have_text("Values: the defaults.")
    expect(page.locator("#q_time")).to_have_value("0-01:00:00")

    site.go("/scripts/%s" % script["id"])
    page.click("a.button:has-text('Copy')")
    page.fill("#copy-name", "Again, copied")
    site.check_a11y("copy a script")
    page.click("#copy-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("Again, copied")

    page.click("text=Save as template")
    page.fill("#copy-name", "My own serial")
    site.check_a11y("save as template")
    site.shot("14-save-as-template")
    page.click("#save-template-form button[type=submit]")
    expect(page).to_have_url(site.url + "/templates")
    expect(page.locator("#template-my-own-serial .yours")).to_have_text("Your own template")


def test_import_a_script_from_the_home_and_run_it_where_it_is(logged_in):
    import os
    site, page = logged_in, logged_in.page
    user = site.user
    data = os.path.join(user.home, "project")
    os.mkdir(data)
    for name, text in (("run.sh", "#!/bin/bash\n#SBATCH --job-name=analyse\n#SBATCH --time=0-00:20:00\n"
                                  "#SBATCH --output=analyse-%j.out\necho analysed $(cat input.dat)\n"),
                       ("input.dat", "42\n")):
        with open(os.path.join(data, name), "w") as f:
            f.write(text)
    for path in (data, os.path.join(data, "run.sh"), os.path.join(data, "input.dat")):
        os.chown(path, user.uid, user.gid)
    site.go("/scripts")
    page.click("text=Import a script you have")
    expect(page.locator("h1")).to_have_text("Import a script")
    page.click("#home-files a:has-text('project/')")
    page.click("#home-files a:has-text('run.sh')")
    page.check("#in_place")
    site.check_a11y("import")
    site.shot("23-import")
    page.click("#import-file button[type=submit]")
    expect(page.locator("h1")).to_have_text("run.sh")
    expect(page.locator("#in-place")).to_contain_text("Runs where it is")
    site.check_a11y("imported script")
    page.click("text=Submit")
    expect(page.locator("#from-script")).to_contain_text("Time limit")
    expect(page.locator("#q_time")).to_have_value("0-00:20:00")
    page.click("button[value=review]")
    expect(page.locator("#runs-in-place")).to_contain_text(data + "/run.sh")
    page.click("button[value=submit]")
    expect(page).to_have_url(re.compile(r"/jobs/[\w-]+$"))
    wait_finished(page, "Completed")
    expect(page.locator("#ran-in-place")).to_contain_text(data)
    expect(page.locator("pre[data-follow=stdout]")).to_contain_text("analysed 42")
    site.check_a11y("job run where it is")
    site.shot("24-job-run-in-place")


def test_jobs_list_search_sort_and_bulk_cancel(logged_in):
    """The list controls of issue 16: search, sort by a column's header,
    per page, and a bulk cancel with one confirmation page."""
    site, page = logged_in, logged_in.page
    jobs = {}
    for name, extra in (("Beta long", "sleep 300"), ("Alpha long", "sleep 300"), ("Gamma quick", "")):
        jobs[name] = site.submit(site.make_script(name, extra)["id"])["id"]
    site.go("/jobs")
    expect(page.locator("tr[data-job]")).to_have_count(3)
    page.fill("#q", "LONG")
    page.select_option("#per_page", "25")
    page.click("#job-search button[type=submit]")
    expect(page.locator("tr[data-job]")).to_have_count(2)
    assert "q=LONG" in page.url and "per_page=25" in page.url
    page.click("a[data-sort=script]")
    expect(page.locator("th[aria-sort=ascending] a[data-sort=script]")).to_have_count(1)
    expect(page.locator("tr[data-job]").first).to_have_attribute("data-job", jobs["Alpha long"])
    expect(page.locator("#q")).to_have_value("LONG")  # the search kept
    site.check_a11y("jobs list, searched and sorted")
    site.shot("25-jobs-search-sort")
    for name in ("Alpha long", "Beta long"):
        page.check("tr[data-job='%s'] input[type=checkbox]" % jobs[name])
    page.click("#bulk button[value=cancel]")
    expect(page.locator("h1")).to_have_text("Cancel jobs")
    expect(page.locator("#bulk-confirm li")).to_have_count(2)
    site.check_a11y("bulk cancel confirmation")
    site.shot("26-jobs-bulk-confirm")
    page.click("#bulk-confirm button[type=submit]")
    expect(page.locator("#bulk-done")).to_contain_text("2 of 2 jobs cancelled.")
    site.shot("27-jobs-bulk-done")
    for name in ("Alpha long", "Beta long"):  # the worker waits up to 2 s for the scheduler to say so
        for _ in range(60):
            if site.api("GET", "/api/jobs/%s" % jobs[name])["state"] == "CANCELLED":
                break
            page.wait_for_timeout(500)
        assert site.api("GET", "/api/jobs/%s" % jobs[name])["state"] == "CANCELLED"
