/* flightjobd pages: small additions on top of pages that work without it.
 *
 * - live job states on the jobs list and a job's page, by polling the JSON API;
 * - relative times ("3 minutes ago") that tick;
 * - confirm dialogs for delete / cancel / remove;
 * - ask_when questions shown and hidden as answers change;
 * - a running job's output followed live;
 * - Tab in the script editor types a tab;
 * - an edit of a script kept in this browser until it is saved;
 * - on every page, the tab's title and icon show how many of the user's
 *   jobs run and mark one that just ended; browser notifications when a
 *   job starts or ends, once the user asked for them with a click.
 *
 * Why polling and not server-sent events: the daemon is served by waitress,
 * which has a small fixed pool of threads, and an SSE stream holds one
 * thread for as long as a tab stays open. A handful of open tabs would
 * starve everyone else. Polling with backoff (2 s, doubling to 30 s while
 * nothing changes) costs one short request now and then, and stops as soon
 * as every job shown has finished.
 *
 * The page's Content-Security-Policy is default-src 'self': no inline
 * scripts or handlers, so everything is wired up here.
 */
(function () {
  "use strict";

  var MIN_DELAY = 2000, MAX_DELAY = 30000;
  // The state words, from flightjobd.py (STATE_LABELS, SHOWN_RAW_STATES,
  // FINISHED, ENDING) through base.tpl's data-vocabulary; read in start().
  var VOCABULARY = { labels: {}, shown_raw: [], finished: [], ending: [] };

  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function finished(state) { return VOCABULARY.finished.indexOf(state) >= 0; }

  function labelOf(state) {
    return VOCABULARY.labels[state] || state.charAt(0) + state.slice(1).toLowerCase();
  }

  // The same words as the server's state_label() and state_text().
  function ending(job) { return VOCABULARY.ending.indexOf(job.raw_state) >= 0 ? "Ending" : labelOf(job.state); }

  function stateLabel(job) {
    var raw = job.raw_state;
    return ending(job) + (raw && VOCABULARY.shown_raw.indexOf(raw) >= 0 ?
      " \u00b7 " + raw.replace(/_/g, " ").toLowerCase() : "");
  }

  function stateText(job) {
    return ending(job) + (job.reason_text && job.state !== "COMPLETED" ? " \u2014 " + job.reason_text : "") +
      (job.detail_pending ? " (its final figures are still coming)" : "");
  }

  /* ---- relative times ------------------------------------------------- */

  // Same words as the server's ago(): "3 minutes ago", "in 5 minutes".
  function ago(iso, now) {
    var t = Date.parse(iso);
    if (isNaN(t)) { return ""; }
    var delta = ((now || Date.now()) - t) / 1000;
    var future = delta < 0;
    delta = Math.abs(delta);
    var units = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
    for (var i = 0; i < units.length; i++) {
      if (delta >= units[i][0] || units[i][0] === 1) {
        var n = Math.floor(delta / units[i][0]);
        var words = n + " " + units[i][1] + (n === 1 ? "" : "s");
        return future ? "in " + words : words + " ago";
      }
    }
    return "";
  }

  function tickTimes() {
    var now = Date.now();
    $all("time[data-ago]").forEach(function (el) {
      var text = ago(el.getAttribute("datetime"), now);
      if (text && el.textContent !== text) { el.textContent = text; }
    });
  }

  function timeElement(iso) {
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.setAttribute("title", iso);
    el.setAttribute("data-ago", "");
    el.textContent = ago(iso);
    return el;
  }

  // Put a <time> for iso (or nothing) into a cell; true if it changed.
  function setTime(cell, iso) {
    if (!cell) { return false; }
    var old = cell.querySelector("time");
    var oldIso = old ? old.getAttribute("datetime") : null;
    if ((oldIso || null) === (iso || null)) { return false; }
    cell.textContent = "";
    if (iso) { cell.appendChild(timeElement(iso)); }
    return true;
  }

  /* ---- live job states ------------------------------------------------ */

  function setBadge(badge, job) {
    if (!badge) { return; }
    var text = stateLabel(job);
    badge.className = "badge state-" + job.state.toLowerCase();
    if (badge.textContent !== text) { badge.textContent = text; }
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      });
  }

  // Calls step() (which returns a promise of "changed?") with backoff; stops
  // when step resolves to null. Waits while the tab is hidden, unless
  // evenHidden (what a hidden tab shows in its title must stay true).
  function poll(step, evenHidden) {
    var delay = MIN_DELAY, timer = null;
    function schedule() { timer = setTimeout(run, delay); }
    function run() {
      timer = null;
      if (document.hidden && !evenHidden) { schedule(); return; }
      step().then(function (changed) {
        tickTimes();  // keep every relative time on the page in step
        if (changed === null) { return; }
        delay = changed ? MIN_DELAY : Math.min(delay * 2, MAX_DELAY);
        schedule();
      }, function () {
        delay = Math.min(delay * 2, MAX_DELAY);  // the daemon may be restarting
        schedule();
      });
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer !== null) {  // back to the tab: look now
        clearTimeout(timer);
        delay = MIN_DELAY;
        run();
      }
    });
    schedule();
  }

  function liveJobsList(table) {
    function unfinishedRows() {
      return $all("tr[data-job]", table).filter(function (tr) { return !finished(tr.getAttribute("data-state")); });
    }
    if (!unfinishedRows().length) { return; }
    var url = "/api/jobs" + location.search;  // the same search, sort and page as the page's
    poll(function () {
      return getJSON(url).then(function (data) {
        var byId = {}, changed = false;
        (data.jobs || []).forEach(function (j) { byId[j.id] = j; });
        $all("tr[data-job]", table).forEach(function (tr) {
          var job = byId[tr.getAttribute("data-job")];
          if (!job) { return; }
          if (tr.getAttribute("data-state") !== job.state) {
            tr.setAttribute("data-state", job.state);
            changed = true;
          }
          setBadge(tr.querySelector('[data-field="state"]'), job);
          ["submitted_at", "started_at", "ended_at"].forEach(function (key) {
            changed = setTime(tr.querySelector('[data-field="' + key + '"]'), job[key]) || changed;
          });
          var eff = job.efficiency || {};
          ["cpu_percent", "mem_percent", "time_percent"].forEach(function (key) {
            var cell = tr.querySelector('[data-field="' + key + '"]');
            if (cell) { cell.textContent = eff[key] == null ? "" : Math.round(eff[key]) + " %"; }
          });
          var mem = tr.querySelector('[data-field="mem_percent"]');
          if (mem && eff.mem_percent == null && eff.mem_used_mb != null) {  // nothing asked for: what it used
            mem.textContent = eff.mem_used_mb < 1024 ? Math.round(eff.mem_used_mb) + " MiB"
              : (eff.mem_used_mb / 1024).toFixed(1).replace(/\.0$/, "") + " GiB";
          }
          // the scheduler's columns, the same words as jobs.tpl's
          var known = job.nodes != null || job.cpus != null;
          var texts = {
            reason_text: job.state !== "COMPLETED" ? job.reason_text || "" : "", raw_state: job.raw_state || "",
            partition: job.partition || "", elapsed_of_limit: job.elapsed_of_limit || "",
            nodes: known ? [job.nodes, job.cpus].map(function (n) { return n == null ? "?" : String(n); }).join(" / ") : ""
          };
          Object.keys(texts).forEach(function (key) {
            var cell = tr.querySelector('[data-field="' + key + '"]');
            if (cell && cell.textContent !== texts[key]) {
              cell.textContent = texts[key];
              changed = changed || key !== "elapsed_of_limit";  // a run time ticks: no reason to look sooner
            }
          });
        });
        return unfinishedRows().length ? changed : null;
      });
    });
  }

  /* ---- the jobs list: select all, the columns shown --------------------- */

  // The header's checkbox (name=all, which without JavaScript makes the bulk
  // page take every job of the page) ticks and unticks the rows' too, and
  // shows whether all, some or none of them are ticked.
  function selectAll(box) {
    var table = box.closest("table");
    function rows() { return $all('tbody input[type=checkbox][name=id]', table); }
    function show() {
      var ticked = rows().filter(function (r) { return r.checked; }).length;
      box.checked = ticked > 0 && ticked === rows().length;
      box.indeterminate = ticked > 0 && ticked < rows().length;
    }
    box.addEventListener("change", function () {
      rows().forEach(function (r) { r.checked = box.checked; });
      box.indeterminate = false;
    });
    table.addEventListener("change", function (event) { if (event.target !== box) { show(); } });
    show();
  }

  // The column choice: a box ticked or not shows or hides its column at once
  // and is kept for the user (POST /api/jobs/columns); without JavaScript
  // the form's button does the same.
  function chooseColumns(form) {
    var status = form.querySelector("[data-columns-status]");
    function say(text) { if (status) { status.textContent = text; status.hidden = !text; } }
    form.addEventListener("change", function () {
      var chosen = $all('input[name=column]', form).filter(function (c) { return c.checked; })
        .map(function (c) { return c.value; });
      $all('input[name=column]', form).forEach(function (c) {
        $all('table[data-live-jobs] [data-col="' + CSS.escape(c.value) + '"]').forEach(function (cell) {
          cell.hidden = !c.checked;
        });
      });
      say("Saving\u2026");
      fetch("/api/jobs/columns", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ columns: chosen }) }).then(function (r) {
        say(r.ok ? "Saved." : "Not saved (HTTP " + r.status + "): try again.");
      }, function () { say("Not saved: the service did not answer."); });
    });
  }

  function liveJob(box) {
    var id = box.getAttribute("data-live-job");
    if (finished(box.getAttribute("data-state"))) { return; }
    var reloadKey = "flightjob-reloaded-" + id;
    poll(function () {
      return getJSON("/api/jobs/" + encodeURIComponent(id)).then(function (job) {
        var changed = box.getAttribute("data-state") !== job.state;
        box.setAttribute("data-state", job.state);
        setBadge(box.querySelector('h1 [data-field="state"]'), job);
        var textCell = box.querySelector('[data-field="state-text"]');
        if (textCell) {
          var text = stateText(job);
          if (textCell.textContent !== text) { textCell.textContent = text; changed = true; }
        }
        ["started_at", "ended_at", "estimated_start_at"].forEach(function (key) {
          var row = box.querySelector('[data-row="' + key + '"]');
          var iso = key === "estimated_start_at" && job.state !== "PENDING" ? null : job[key];
          if (setTime(box.querySelector('dd[data-field="' + key + '"]'), iso)) { changed = true; }
          if (row) { row.hidden = !iso; }
        });
        var raw = box.querySelector('[data-field="raw_state"]');
        if (raw) { raw.textContent = job.raw_state || ""; raw.hidden = !job.raw_state || job.raw_state === job.state; }
        var exitRow = box.querySelector('[data-row="exit_code"]');
        if (exitRow && job.program_exit !== null && job.program_exit !== undefined) {
          exitRow.hidden = false;
          exitRow.querySelector("dd").textContent = String(job.program_exit);
        }
        if (job.state !== "PENDING") {  // started: no Hold, Release or new time limit any more
          $all('#time-limit, form[action$="/hold"], form[action$="/release"]', box).forEach(function (el) {
            el.parentNode.removeChild(el);
          });
        }
        if (finished(job.state)) {
          // Reload once so the results, run time and Remove button appear.
          // The mark in sessionStorage stops a reload loop should the page
          // ever come back still saying the job runs.
          var done = null;
          try { done = sessionStorage.getItem(reloadKey); } catch (e) { /* private mode */ }
          if (done !== job.state) {
            try { sessionStorage.setItem(reloadKey, job.state); } catch (e) { /* ignore */ }
            setTimeout(function () { location.reload(); }, 600);
          }
          return null;
        }
        return changed;
      });
    });
  }

  /* ---- the tab: running jobs in its title and icon; notifications ------- */

  // Every page of a logged-in user polls /api/activity (with the same
  // backoff: 2 s, doubling to 30 s while nothing changes, hidden tabs too,
  // as their title is what shows). The title reads "(2 running) Jobs ·
  // Flight Job" and the icon carries the count; a job that ended since the
  // last look puts a mark (a tick, or a cross when it did not complete)
  // before the title and a dot on the icon for MARK_MS of the tab being
  // seen. The unfinished jobs last seen are kept in sessionStorage (per
  // user), so a change between two pages of the tab is not missed: the
  // next page asks after those jobs (?watch=). Notifications (the
  // Notification API) only once the user pressed the header's button,
  // which is when permission is asked; their choice is kept in
  // localStorage. The icon is drawn on a canvas into a data: URL, which
  // the CSP's img-src allows.
  var ACTIVITY = "flightjob-activity:", NOTIFY = "flightjob-notify:", MARK_MS = 30000;

  function readStored(kind, key) {
    var store = storage(kind);
    try { return store ? JSON.parse(store.getItem(key) || "null") : null; } catch (e) { return null; }
  }

  function writeStored(kind, key, value) {
    try { window[kind].setItem(key, JSON.stringify(value)); } catch (e) { /* full or blocked */ }
  }

  function jobWords(job) {
    return "Job " + (job.scheduler_id || job.id) + (job.name ? " (" + job.name + ")" : "");
  }

  function drawIcon(link, count, mark, plain) {
    if (!count && !mark) { link.href = plain; return; }
    var canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    var c = canvas.getContext("2d");
    if (!c) { return; }
    c.fillStyle = "#17344f";  // favicon.svg, drawn again
    c.beginPath();
    if (c.roundRect) { c.roundRect(0, 0, 32, 32, 7); } else { c.rect(0, 0, 32, 32); }
    c.fill();
    c.fillStyle = "#fff";
    c.beginPath(); c.moveTo(7, 25); c.lineTo(25, 7); c.lineTo(25, 25); c.closePath(); c.fill();
    c.fillStyle = "#6fb3ff";
    c.beginPath(); c.moveTo(7, 7); c.lineTo(25, 7); c.lineTo(7, 25); c.closePath(); c.fill();
    if (mark) {
      c.fillStyle = mark.state === "COMPLETED" ? "#1e8e3e" : "#c5221f";
      c.beginPath(); c.arc(26, 6, 6, 0, 2 * Math.PI); c.fill();
    }
    if (count) {
      var text = count > 99 ? "99+" : String(count);
      c.fillStyle = "#d93025";
      c.beginPath(); c.arc(21, 21, 11, 0, 2 * Math.PI); c.fill();
      c.fillStyle = "#fff";
      c.font = "bold " + (text.length > 2 ? 10 : text.length > 1 ? 13 : 16) + "px sans-serif";
      c.textAlign = "center";
      c.textBaseline = "middle";
      c.fillText(text, 21, 22);
    }
    link.href = canvas.toDataURL("image/png");
  }

  function notifyButton(button, key) {
    function on() { return readStored("localStorage", key) === true && Notification.permission === "granted"; }
    function show() {
      var blocked = Notification.permission === "denied";
      button.setAttribute("aria-pressed", on() ? "true" : "false");
      button.disabled = blocked;
      button.textContent = blocked ? "Notifications blocked by the browser" :
        on() ? "Notifications on" : "Notify me when jobs start or end";
    }
    button.addEventListener("click", function () {
      if (on()) { writeStored("localStorage", key, false); show(); return; }
      // asked only here, on the user's click, never on its own
      var asked = Notification.requestPermission(function (answer) { done(answer); });
      function done(answer) {
        writeStored("localStorage", key, answer === "granted");
        show();
      }
      if (asked && asked.then) { asked.then(done); }
    });
    button.hidden = false;
    show();
    return on;
  }

  function tabActivity(user) {
    var title = document.title, link = document.querySelector('link[rel="icon"]');
    var plain = link ? link.getAttribute("href") : null;
    var key = ACTIVITY + user, notifyOn = function () { return false; };
    var button = document.querySelector("[data-notify]");
    if (button && "Notification" in window) { notifyOn = notifyButton(button, NOTIFY + user); }

    function show(count, mark) {
      var prefix = (mark ? (mark.state === "COMPLETED" ? "\u2713 " : "\u2717 ") : "") +
        (count ? "(" + count + " running) " : "");
      if (document.title !== prefix + title) { document.title = prefix + title; }
      if (link) { drawIcon(link, count, mark, plain); }
    }

    function tell(job, started) {
      if (!notifyOn()) { return; }
      var what = started ? "started" : labelOf(job.state).toLowerCase();
      try {
        var n = new Notification(jobWords(job) + " " + what, {
          body: started ? "" : (job.reason_text || ""), tag: "flightjob-" + job.id + "-" + job.state });
        n.onclick = function () { window.focus(); location.href = "/jobs/" + encodeURIComponent(job.id); };
      } catch (e) { /* a browser that only notifies from a service worker */ }
    }

    var stored = readStored("sessionStorage", key) || {};
    show(stored.running || 0, stored.mark || null);  // as the last page left it, until the first answer
    poll(function () {
      var last = readStored("sessionStorage", key) || {};
      var seen = last.jobs || null, mark = last.mark || null;
      var url = "/api/activity" + (seen ? "?" + Object.keys(seen).slice(0, 100).map(function (id) {
        return "watch=" + encodeURIComponent(id);
      }).join("&") : "");
      return getJSON(url).then(function (data) {
        var now = {}, changed = false;
        (data.unfinished || []).forEach(function (job) {
          now[job.id] = job.state;
          if (seen && seen[job.id] !== job.state && job.state === "RUNNING") { tell(job, true); changed = true; }
        });
        (data.watched || []).forEach(function (job) {
          if (!seen || !seen[job.id] || !finished(job.state)) { return; }
          tell(job, false);
          mark = { id: job.id, state: job.state, until: null };
          changed = true;
        });
        if (seen && Object.keys(seen).length !== Object.keys(now).length) { changed = true; }
        if (mark && !document.hidden) {  // the mark lasts MARK_MS of the tab being seen
          if (mark.until === null) { mark.until = Date.now() + MARK_MS; }
          if (Date.now() > mark.until) { mark = null; changed = true; }
        }
        var running = (data.counts || {}).RUNNING || 0;
        writeStored("sessionStorage", key, { jobs: now, mark: mark, running: running });
        show(running, mark);
        return changed;
      });
    }, true);
  }

  /* ---- following a running job's output -------------------------------- */

  function follow(pre) {
    var box = pre.closest("[data-live-job]");
    if (!box || finished(box.getAttribute("data-state"))) { return; }
    var url = "/api/jobs/" + encodeURIComponent(pre.getAttribute("data-job")) + "/output/" +
      encodeURIComponent(pre.getAttribute("data-follow")) + "?tail=65536";
    var label = pre.parentNode.querySelector("[data-following]");
    if (label) { label.hidden = false; }
    poll(function () {
      if (finished(box.getAttribute("data-state"))) {
        if (label) { label.hidden = true; }
        return Promise.resolve(null);
      }
      return fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (r.status === 404) { return false; }  // no output file yet
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text().then(function (text) {
          if (text === pre.textContent) { return false; }
          var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
          pre.textContent = text;
          if (atBottom) { pre.scrollTop = pre.scrollHeight; }
          return true;
        });
      });
    });
  }

  /* ---- confirm dialogs ------------------------------------------------ */

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { return meta.getAttribute("content"); }
    var input = document.querySelector('form.logout input[name="csrf"]');
    return input ? input.value : "";
  }

  function postTo(url) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = url;
    form.hidden = true;
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = "csrf";
    input.value = csrfToken();
    form.appendChild(input);
    document.body.appendChild(form);
    form.submit();
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("[data-confirm]") : null;
    if (!link || event.defaultPrevented || event.button !== 0 ||
        event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) {
      return;  // new-tab clicks go to the confirmation page, which asks too
    }
    event.preventDefault();
    if (!window.confirm(link.getAttribute("data-confirm"))) { return; }
    var target = link.getAttribute("data-post");
    if (target) { postTo(target); } else { location.href = link.href; }
  });

  /* ---- ask_when questions --------------------------------------------- */

  // The current answer to question id, as the server would read the form:
  // a boolean checkbox gives "true"/"false", a group of checkboxes a list.
  function answerOf(form, id) {
    var fields = $all('[name="q_' + id + '"]', form);
    var boxes = fields.filter(function (f) { return f.type === "checkbox"; });
    var hiddenFalse = fields.some(function (f) { return f.type === "hidden"; });
    if (boxes.length === 1 && hiddenFalse) { return boxes[0].checked ? "true" : "false"; }
    if (boxes.length) { return boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; }); }
    var radios = fields.filter(function (f) { return f.type === "radio"; });
    if (radios.length) {
      var on = radios.filter(function (r) { return r.checked; })[0];
      return on ? on.value : "";
    }
    var field = fields.filter(function (f) { return f.type !== "hidden"; })[0] || fields[0];
    return field ? field.value : "";
  }

  function applies(values, answer) {
    if (values === "true" || values === "false") {
      var truthy = ["true", "on", "yes", "1"].indexOf(String(answer).toLowerCase()) >= 0;
      return truthy === (values === "true");
    }
    var choices = values.split("|");
    if (Array.isArray(answer)) { return answer.some(function (v) { return choices.indexOf(v) >= 0; }); }
    return choices.indexOf(answer) >= 0;
  }

  function updateQuestions(form) {
    // In page order, so a question hidden because of an earlier one also
    // hides the questions that depend on it.
    $all(".question[data-ask-question]", form).forEach(function (div) {
      var id = div.getAttribute("data-ask-question");
      var controller = form.querySelector("#field-" + CSS.escape(id));
      var show = !(controller && controller.hidden) &&
        applies(div.getAttribute("data-ask-values"), answerOf(form, id));
      if (div.hidden === !show) { return; }
      div.hidden = !show;
      $all("[data-required]", div).forEach(function (f) { f.required = show; });
    });
  }

  function askWhen(form) {
    if (!form.querySelector(".question[data-ask-question]")) { return; }
    updateQuestions(form);
    form.addEventListener("change", function () { updateQuestions(form); });
    form.addEventListener("input", function () { updateQuestions(form); });
  }

  /* ---- a textarea that keeps tabs --------------------------------------- */

  function keepTabs(area) {
    var escaped = false;
    area.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { escaped = true; return; }
      if (event.key !== "Tab" || event.shiftKey || event.ctrlKey || event.altKey || event.metaKey) {
        escaped = false;
        return;
      }
      if (escaped) { escaped = false; return; }  // Esc then Tab: leave the field
      event.preventDefault();
      var start = area.selectionStart, end = area.selectionEnd;
      area.setRangeText("\t", start, end, "end");
      area.dispatchEvent(new Event("input", { bubbles: true }));
    });
    area.addEventListener("blur", function () { escaped = false; });
  }

  /* ---- not losing an edit by leaving the page ---------------------------- */

  function warnUnsaved(form) {
    var dirty = false;
    form.addEventListener("input", function () { dirty = true; });
    form.addEventListener("submit", function () { dirty = false; });
    window.addEventListener("beforeunload", function (event) {
      if (dirty) { event.preventDefault(); event.returnValue = ""; }
    });
  }

  /* ---- drafts: an edit kept in this browser until it is saved ----------- */

  // A script's edit form (form[data-draft="USER/SCRIPT/FIELD"]) keeps what
  // is typed in localStorage, with the version it was based on, so that
  // neither an ended session, a restart of the daemon, a closed tab nor a
  // crashed browser loses it. (Without JavaScript the server keeps a form
  // posted after its session ended: see App.keep_form.) A draft goes when
  // its save is confirmed: the first page of that script after submitting
  // the form shows a newer version and no form for that field (not a
  // conflict, an error or the login page). Or by Discard, Cancel, logging
  // out (a shared computer), or after DRAFT_DAYS. An edit page opened while
  // a draft is kept restores it and says so; it keeps the version it was
  // based on, so saving it over a newer one is the conflict page, never a
  // silent overwrite.
  var DRAFT = "flightjob-draft:", SAVING = "flightjob-saving:", DRAFT_DAYS = 30;
  var FIELD_WORDS = { content: "the script", notes: "the notes", name: "the name" };

  function storage(kind) {
    try { return window[kind]; } catch (e) { return null; }  // blocked by the browser's settings
  }

  function readDraft(key) {
    var ls = storage("localStorage");
    try { return ls ? JSON.parse(ls.getItem(DRAFT + key) || "null") : null; } catch (e) { return null; }
  }

  function writeDraft(key, draft) {
    try { localStorage.setItem(DRAFT + key, JSON.stringify(draft)); } catch (e) { /* full or blocked */ }
  }

  function dropDraft(key) {
    try { localStorage.removeItem(DRAFT + key); } catch (e) { /* blocked */ }
    try { sessionStorage.removeItem(SAVING + key); } catch (e) { /* blocked */ }
  }

  // Drafts older than DRAFT_DAYS, or under prefix (all of one user's).
  function dropDrafts(prefix) {
    var ls = storage("localStorage");
    if (!ls) { return; }
    var oldest = Date.now() - DRAFT_DAYS * 86400000, keys = [];
    for (var i = 0; i < ls.length; i++) { keys.push(ls.key(i)); }
    keys.forEach(function (k) {
      if (!k || k.indexOf(DRAFT) !== 0) { return; }
      var draft = readDraft(k.slice(DRAFT.length));
      if (!draft || !(draft.at > oldest) || (prefix && k.indexOf(DRAFT + prefix) === 0)) { ls.removeItem(k); }
    });
  }

  function draftNote(text, actions) {
    var p = document.createElement("p");
    p.className = "notice warn draft-note";
    p.setAttribute("role", "status");
    p.appendChild(document.createTextNode(text + " "));
    actions.forEach(function (el) { p.appendChild(el); });
    return p;
  }

  // On every page of a script (its h1[data-drafts]): settle the drafts a
  // save confirmed; say which others are kept, for the fields not being edited.
  function settleDrafts(head) {
    var base = head.getAttribute("data-drafts"), etag = head.getAttribute("data-etag");
    var kept = [];
    Object.keys(FIELD_WORDS).forEach(function (field) {
      var key = base + "/" + field, draft = readDraft(key), saving = null;
      var editing = document.querySelector('form[data-draft="' + CSS.escape(key) + '"]');
      try { saving = sessionStorage.getItem(SAVING + key); } catch (e) { /* blocked */ }
      if (saving !== null) {  // the first page of this script since the form was sent decides
        try { sessionStorage.removeItem(SAVING + key); } catch (e) { /* blocked */ }
        if (draft && !editing && draft.etag !== etag) { dropDraft(key); return; }
      }
      if (draft && !editing) { kept.push(field); }
    });
    kept.forEach(function (field) {
      var link = document.createElement("a");
      link.href = location.pathname + "?edit=" + field;
      link.textContent = "Edit " + FIELD_WORDS[field] + " to go on with it";
      head.parentNode.insertBefore(draftNote("An unsaved draft of " + FIELD_WORDS[field] +
        " is kept in this browser.", [link]), head.nextSibling);
    });
  }

  function keepDraft(form) {
    var key = form.getAttribute("data-draft");
    var text = form.querySelector("[name=text]"), etag = form.querySelector("[name=etag]");
    if (!text || !etag) { return; }
    var timer = null;
    function save() {
      if (timer) { clearTimeout(timer); }
      timer = null;
      writeDraft(key, { text: text.value, etag: etag.value, at: Date.now() });
    }
    var draft = readDraft(key);
    if (draft && typeof draft.text === "string" && draft.text !== text.value) {
      var shown = { text: text.value, etag: etag.value };
      text.value = draft.text;
      etag.value = draft.etag;
      var discard = document.createElement("button");
      discard.type = "button";
      discard.className = "button small";
      discard.textContent = "Discard the draft";
      var note = draftNote("Restored your unsaved draft of " + FIELD_WORDS[key.split("/").pop()] + ", from " +
        new Date(draft.at).toLocaleString() + ". It is not saved yet: press Save to keep it.", [discard]);
      discard.addEventListener("click", function () {
        text.value = shown.text;
        etag.value = shown.etag;
        dropDraft(key);
        note.remove();
        text.focus();
      });
      form.parentNode.insertBefore(note, form);
      text.dispatchEvent(new Event("input", { bubbles: true }));  // unsaved: warn before leaving
    }
    form.addEventListener("input", function () { if (!timer) { timer = setTimeout(save, 300); } });
    form.addEventListener("submit", function () {
      save();
      try { sessionStorage.setItem(SAVING + key, etag.value); } catch (e) { /* blocked */ }
    });
    $all(".actions a", form).forEach(function (cancel) {  // Cancel: the user gives the edit up
      cancel.addEventListener("click", function () { if (timer) { clearTimeout(timer); timer = null; } dropDraft(key); });
    });
  }

  /* ---- start ------------------------------------------------------------ */

  function start() {
    VOCABULARY = JSON.parse(document.body.getAttribute("data-vocabulary") || "null") || VOCABULARY;
    document.documentElement.classList.add("js");
    $all(".js-hide").forEach(function (el) { el.hidden = true; });
    $all(".js-only").forEach(function (el) { el.hidden = false; });
    tickTimes();
    setInterval(tickTimes, 5000);
    $all("table[data-live-jobs]").forEach(liveJobsList);
    $all("#select-all").forEach(selectAll);
    $all("form[data-columns]").forEach(chooseColumns);
    $all("[data-live-job]").forEach(liveJob);
    $all("pre[data-follow][data-job]").forEach(follow);
    $all("form").forEach(askWhen);
    $all("textarea[data-keep-tabs]").forEach(keepTabs);
    $all("form[data-warn-unsaved]").forEach(warnUnsaved);
    dropDrafts(null);
    $all("h1[data-drafts]").forEach(settleDrafts);
    $all("form[data-draft]").forEach(keepDraft);
    $all("form.logout[data-user]").forEach(function (form) {
      form.addEventListener("submit", function () { dropDrafts(form.getAttribute("data-user") + "/"); });
      tabActivity(form.getAttribute("data-user"));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
