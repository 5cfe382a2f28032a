"""No edit is lost to an ended session (issue 12), in a real Chromium
against the real multi-user daemon: a script edited, the session ended (a
logout in another tab, or a restart of the daemon that lost its session
store), Save pressed or the page opened again, a login, and the edit is
saved; checked through the API."""
import os
import re
import shutil

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

TYPED = "#!/bin/bash\n# kept through the login <b>&amp;</b> 'quoted' \"double\"\n\techo kept\n"


def edit_script(site):
    """A script, its editor open and TYPED typed into it (not saved)."""
    script = site.make_script("kept edit")
    site.go("/scripts/%s?edit=content" % script["id"])
    site.page.fill("textarea#text", TYPED)
    return script


def log_in_again(site, page):
    page.fill("#username", site.user.name)
    page.fill("#password", site.user.password)
    page.click("button[type=submit]")


def restart_losing_sessions(site):
    """The daemon restarted without its session store (as before sessions
    were kept, or the store wiped): every session has ended."""
    daemon = site.daemon
    daemon.stop()
    shutil.rmtree(os.path.join(os.path.dirname(daemon.config_path), "sessions-%d" % daemon.port))
    daemon.start()


def saved_content(site, script_id):
    return site.api("GET", "/api/scripts/%s" % script_id)["content"]


def drafts(page):
    """The drafts app.js keeps in localStorage: key -> its JSON."""
    return page.evaluate("Object.fromEntries(Object.entries(localStorage)"
                         ".filter(([k]) => k.startsWith('flightjob-draft:')))")


def wait_draft(page, text):
    """Until app.js has kept a draft holding text (it writes 0.3 s after
    the last keystroke). Not wait_for_function: the pages' CSP forbids eval."""
    for _ in range(50):
        if any(text in v for v in drafts(page).values()):
            return
        page.wait_for_timeout(100)
    raise AssertionError("no draft holding %r: %s" % (text, drafts(page)))


def test_an_edit_survives_a_logout_in_another_tab(logged_in):
    """Save after a logout in another tab: the login page keeps the text,
    and after logging in the user confirms, and it is saved."""
    site, page = logged_in, logged_in.page
    script = edit_script(site)
    before = saved_content(site, script["id"])
    other = page.context.new_page()
    other.goto(site.url + "/")
    other.click("text=Log out")
    expect(other).to_have_url(site.url + "/login")
    other.close()

    page.click("text=Save script")
    expect(page.locator("#kept-note")).to_contain_text("Your session had ended")
    site.check_a11y("login keeping a form")
    site.shot("kept-01-login")
    log_in_again(site, page)
    expect(page.locator("h1")).to_have_text("Send what you typed?")
    expect(page.locator(".kept")).to_contain_text("kept through the login <b>&amp;</b>")
    assert saved_content(site, script["id"]) == before  # not until the user says so
    site.check_a11y("send what you typed")
    site.shot("kept-02-send-again")
    page.click("button:has-text('Send it now')")
    expect(page).to_have_url(site.url + "/scripts/%s" % script["id"])
    expect(page.locator("pre.numbered")).to_contain_text("echo kept")
    assert saved_content(site, script["id"]) == TYPED
    assert drafts(page) == {}  # saved: the browser's copy is gone


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_an_edit_survives_a_restart_that_ended_every_session(site, browser, javascript):
    """Save after the daemon restarted without its sessions: the same,
    with JavaScript on and off."""
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1280, "height": 860})
    site.page = page = context.new_page()
    try:
        site.login()
        script = edit_script(site)
        restart_losing_sessions(site)
        page.click("text=Save script")
        expect(page.locator("#kept-note")).to_be_visible()
        log_in_again(site, page)
        page.click("button:has-text('Send it now')")
        expect(page).to_have_url(site.url + "/scripts/%s" % script["id"])
        expect(page.locator("pre.numbered")).to_contain_text("echo kept")
        assert saved_content(site, script["id"]) == TYPED
        if javascript:
            assert drafts(page) == {}
    finally:
        context.close()


def test_an_unsaved_draft_is_restored_when_the_page_is_opened_again(logged_in):
    """The edit page keeps a draft in the browser: the tab closed unsaved
    and the session ended, the editor opened again restores it, says so,
    and it saves; with its base version, so over a newer one it is the
    conflict page, not a silent overwrite."""
    site, page = logged_in, logged_in.page
    script = edit_script(site)
    wait_draft(page, "echo kept")
    page.once("dialog", lambda d: d.accept())  # "leave the page? changes may be lost"
    page.goto("about:blank")
    restart_losing_sessions(site)

    site.go("/scripts/%s?edit=content" % script["id"])
    expect(page).to_have_url(re.compile(r"/login\?next="))
    log_in_again(site, page)
    expect(page.locator(".draft-note")).to_contain_text("Restored your unsaved draft")
    expect(page.locator("textarea#text")).to_have_value(TYPED)
    site.check_a11y("restored draft")
    site.shot("kept-03-restored-draft")
    # the view of the script says a draft is kept
    page.once("dialog", lambda d: d.accept())
    site.go("/scripts/%s" % script["id"])
    expect(page.locator(".draft-note")).to_contain_text("An unsaved draft of the script is kept")
    page.click("text=Edit the script to go on with it")
    expect(page.locator("textarea#text")).to_have_value(TYPED)
    page.click("text=Save script")
    expect(page).to_have_url(site.url + "/scripts/%s" % script["id"])
    assert saved_content(site, script["id"]) == TYPED
    assert drafts(page) == {}
    expect(page.locator(".draft-note")).to_have_count(0)

    # a draft based on a version changed since: saving it is the conflict page
    site.go("/scripts/%s?edit=content" % script["id"])
    page.fill("textarea#text", TYPED + "echo mine\n")
    wait_draft(page, "echo mine")
    site.api("PATCH", "/api/scripts/%s" % script["id"], {"content": TYPED + "echo theirs\n"})
    page.once("dialog", lambda d: d.accept())
    page.reload()
    expect(page.locator(".draft-note")).to_contain_text("Restored your unsaved draft")
    page.click("text=Save script")
    expect(page.locator("[role=alert]")).to_contain_text("changed elsewhere")
    assert saved_content(site, script["id"]) == TYPED + "echo theirs\n"
    page.click("text=Save script")  # seen both: now it replaces theirs
    expect(page).to_have_url(site.url + "/scripts/%s" % script["id"])
    assert saved_content(site, script["id"]) == TYPED + "echo mine\n"
    assert drafts(page) == {}

    # Discard gives the saved text back and forgets the draft
    site.go("/scripts/%s?edit=notes" % script["id"])
    page.fill("textarea#text", "notes never saved")
    wait_draft(page, "notes never saved")
    page.once("dialog", lambda d: d.accept())
    page.reload()
    page.click("text=Discard the draft")
    expect(page.locator("textarea#text")).not_to_have_value("notes never saved")
    assert drafts(page) == {}
