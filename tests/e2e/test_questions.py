"""Questions (issue 27, item 2) in a real Chromium against the real
multi-user daemon: a long template asked step by step (Next and Back keep
the answers, a step whose answer the server would refuse stays shown with
why; one refused at the final submit opens its step), the same form on one
page without JavaScript, the job name following the script's name, and a
script's answers changed later with the user's edits shown as a conflict."""
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def visible_steps(page):
    return [i + 1 for i in range(page.locator("section.step").count())
            if page.locator("section.step").nth(i).is_visible()]


def focused_id(page):
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_long_template_asked_step_by_step(logged_in):
    site, page = logged_in, logged_in.page
    site.go("/templates/mpi/create")
    expect(page.locator("ol.step-list li")).to_have_count(4)
    expect(page.locator("ol.step-list li[aria-current=step]")).to_have_text("Step 1")
    assert visible_steps(page) == [1]
    expect(page.locator("button", has_text="Create script")).to_be_hidden()
    page.fill("#name", "Big MPI run")  # the job name follows the name
    expect(page.locator("#q_job_name")).to_have_value("Big-MPI-run")
    page.fill("#q_program", "./solver")
    site.check_a11y("create, step 1")
    site.shot("questions-step-1")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    site.shot("questions-step-1-390")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.click("button:text-is('Next')")
    expect(page.locator("#step-2-h")).to_be_focused()
    assert visible_steps(page) == [2]
    # an answer the server would refuse (the template's pattern): the step stays, saying why
    page.fill("#q_program_args", 'say "hello"')
    page.click("button:text-is('Next')")
    error = page.locator("#field-program_args .field-error")
    expect(error).to_contain_text("quotes and backslashes are not supported")
    expect(page.locator("#q_program_args")).to_be_focused()
    assert visible_steps(page) == [2]
    site.check_a11y("create, a step refused")
    site.shot("questions-step-refused")
    page.fill("#q_program_args", "-n 4")
    page.click("button:text-is('Back')")  # Back keeps what was typed
    expect(page.locator("#step-1-h")).to_be_focused()
    expect(page.locator("#name")).to_have_value("Big MPI run")
    page.click("button:text-is('Next')")
    expect(page.locator("#q_program_args")).to_have_value("-n 4")
    expect(error).to_have_count(0)
    page.click("button:text-is('Next')")
    page.click("button:text-is('Next')")
    expect(page.locator("#step-4-h")).to_be_focused()
    expect(page.locator("button:text-is('Next')")).to_be_hidden()
    page.check("#q_notify")
    page.fill("#q_email", "me@example.org")
    site.shot("questions-step-last")
    page.press("#q_email", "Enter")  # Enter on the last step creates the script
    page.wait_for_url(re.compile(r".*/scripts/[^/]+$"))
    made = site.api("GET", "/api/scripts/" + site.path().split("/")[-1])
    assert made["name"] == "Big MPI run" and '--job-name="Big-MPI-run"' in made["content"]
    assert "PROGRAM=./solver" in made["content"] and "PROGRAM_ARGS=(-n 4)" in made["content"] and "me@example.org" in made["content"]


def test_an_answer_refused_at_the_final_submit_opens_its_step(logged_in):
    site, page = logged_in, logged_in.page
    site.go("/templates/mpi/create")
    # a value typed into step 2 that Next never checked (the form sent from step 1)
    page.evaluate("document.querySelector('#q_output_file').value = 'bad|name'")
    page.evaluate("document.querySelector('form.questions').submit()")
    expect(page.locator("#step-2-h")).to_be_focused()
    assert visible_steps(page) == [2]
    expect(page.locator("#field-output_file .field-error")).to_contain_text("use letters, digits")
    expect(page.locator("#q_output_file")).to_have_value("bad|name")
    site.shot("questions-final-refused")


def test_one_page_without_javascript(site, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site.url + "/login")
        page.fill("#username", site.user.name)
        page.fill("#password", site.user.password)
        page.click("button[type=submit]")
        page.wait_for_url(site.url + "/")
        page.goto(site.url + "/templates/mpi/create")
        assert visible_steps(page) == [1, 2, 3, 4]
        expect(page.locator("ol.step-list")).to_have_count(0)
        expect(page.locator("button:text-is('Create script')")).to_be_visible()
        page.screenshot(path=_shot("questions-no-javascript"), full_page=True)
        page.fill("#name", "plain page")
        page.fill("#q_job_name", "chosen-name")
        page.click("button:text-is('Create script')")
        page.wait_for_url(re.compile(r".*/scripts/[^/]+$"))
        assert '--job-name="chosen-name"' in page.locator("section.script pre").inner_text().replace("\n\n", "\n")
        page.click("text=Edit answers")  # the answers page too is one page
        assert visible_steps(page) == [1, 2, 3, 4]
        expect(page.locator("#q_job_name")).to_have_value("chosen-name")
    finally:
        context.close()


def _shot(name):
    import os
    from conftest import SHOTS
    os.makedirs(SHOTS, exist_ok=True)
    return os.path.join(SHOTS, name + ".png")


def test_edit_answers_and_the_conflict_with_edited_text(logged_in):
    site, page = logged_in, logged_in.page
    script = site.make_script("answers run")
    sid = script["id"]
    site.go("/scripts/" + sid)
    page.click("text=Edit answers")
    expect(page.locator("h1")).to_have_text("Edit answers: answers run")
    expect(page.locator("#q_job_name")).to_have_value("answers-run")
    page.fill("#q_job_name", "renamed-run")
    page.press("#q_job_name", "Enter")  # Enter before the last step: Next
    expect(page.locator("#step-2-h")).to_be_focused()
    page.click("button:text-is('Next')")
    site.check_a11y("edit answers")
    site.shot("questions-edit-answers")
    page.click("button:text-is('Save answers')")
    page.wait_for_url(site.url + "/scripts/" + sid)
    assert '--job-name="renamed-run"' in site.api("GET", "/api/scripts/" + sid)["content"]
    # the user edits the text, then changes an answer: both shown, they choose
    full = site.api("GET", "/api/scripts/" + sid)
    site.api("PATCH", "/api/scripts/" + sid, {"content": full["content"] + "echo my own line\n"})
    site.go("/scripts/%s/answers" % sid)
    page.fill("#q_job_name", "third-name")
    page.click("button:text-is('Next')")
    page.click("button:text-is('Next')")
    page.click("button:text-is('Save answers')")
    conflict = page.locator("section.diverged")
    expect(conflict).to_contain_text("You have edited this script's text")
    expect(conflict.locator("pre").first).to_contain_text("echo my own line")
    expect(conflict.locator("pre").nth(1)).to_contain_text('--job-name="third-name"')
    expect(page.locator("#diverged-h")).to_be_focused()
    expect(page.locator("details.diff pre")).to_contain_text("-echo my own line")
    site.check_a11y("edit answers conflict")
    site.shot("questions-conflict")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    site.check_a11y("edit answers conflict at 390 px")
    site.shot("questions-conflict-390")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.click("button:text-is('Keep my text (save the answers only)')")
    page.wait_for_url(site.url + "/scripts/" + sid)
    kept = site.api("GET", "/api/scripts/" + sid)
    assert "echo my own line" in kept["content"] and kept["answers"]["job_name"] == "third-name"
    site.go("/scripts/%s/answers" % sid)
    page.fill("#q_job_name", "fourth-name")
    page.evaluate("document.querySelector('form.questions').requestSubmit("
                  "document.querySelector('button[value=save]'))")
    page.click("button:text-is('Take the new text (my edits are replaced)')")
    page.wait_for_url(site.url + "/scripts/" + sid)
    taken = site.api("GET", "/api/scripts/" + sid)
    assert "echo my own line" not in taken["content"] and '--job-name="fourth-name"' in taken["content"]


@pytest.mark.slurm
def test_a_stepped_scripts_job_runs_on_slurm_named_after_the_script(slurm_site):
    """On the real cluster: a script made through the steps, its job name
    following the script's name, runs under that name as Slurm says; its
    answers changed later (the working folder's output name) reach the next
    job, as scontrol shows."""
    site, page = slurm_site, slurm_site.page
    site.go("/templates/serial/create")
    page.fill("#name", "Fold protein 3")
    expect(page.locator("#q_job_name")).to_have_value("Fold-protein-3")
    for step in range(2, page.locator("ol.step-list li").count() + 1):  # each step checked by the server first
        page.click("button:text-is('Next')")
        expect(page.locator("#step-%d-h" % step)).to_be_focused()
    page.click("button[name=action][value=create]")
    page.wait_for_url(re.compile(r".*/scripts/[^/]+$"))
    sid = site.path().split("/")[-1]
    job = site.submit(sid)
    shown = site.cluster.run("scontrol", "show", "job", job["scheduler_id"])
    assert re.search(r"JobName=Fold-protein-3\s", shown), shown
    site.api("PUT", "/api/scripts/%s/answers" % sid, {"answers": {"job_name": "refolded"}})
    again = site.submit(sid)
    shown = site.cluster.run("scontrol", "show", "job", again["scheduler_id"])
    assert re.search(r"JobName=refolded\s", shown), shown
    site.go("/scripts/%s/answers" % sid)
    expect(page.locator("#q_job_name")).to_have_value("refolded")
    site.check_a11y("edit answers, on Slurm")
    site.shot("questions-on-slurm")
