% rebase('base', page=page)
% sorted_by, order = query['sort'], query['order']
% searching = any(typed.get(k) for k in ('q', 'state', 'from', 'to'))
<div class="list-head">
<h1>Jobs</h1>
<button type="button" class="notify" data-notify aria-pressed="false" hidden>Notify me when jobs start or end</button>
</div>
% if jobs or searching or error:
<details class="filters" open data-collapse-narrow>
<summary>Search and filter{{' (on)' if searching else ''}}</summary>
<form method="get" action="/jobs" class="filter" id="job-search" role="search">
  <label for="q">Search</label>
  <input type="search" id="q" name="q" value="{{typed['q']}}" maxlength="200" placeholder="name, script, job id or state">
  <label for="state">Show</label>
  <select id="state" name="state">
    <option value="">all jobs</option>
    % for s in states:
    <option value="{{s}}" {{'selected' if s == typed['state'] else ''}}>{{STATE_LABELS[s].lower()}}</option>
    % end
  </select>
  <label for="from">Submitted from</label>
  <input type="date" id="from" name="from" value="{{typed['from']}}">
  <label for="to">to</label>
  <input type="date" id="to" name="to" value="{{typed['to']}}">
  <label for="per_page">Per page</label>
  <select id="per_page" name="per_page">
    % for n in sorted(set(per_pages) | {per_page}):
    <option value="{{n}}" {{'selected' if n == per_page else ''}}>{{n}}</option>
    % end
  </select>
  % for k in ('sort', 'order'):
  % if typed[k]:
  <input type="hidden" name="{{k}}" value="{{typed[k]}}">
  % end
  % end
  <button type="submit">Search</button>
  % if searching:
  <a class="button" href="/jobs">Clear</a>
  % end
</form>
</details>
% end
% if error:
<p class="error" role="alert" id="list-error">{{error.message}} The list below is shown as it is by default.</p>
% end
% if not scheduler['ok']:
<p class="notice warn" role="status">The scheduler did not answer, so states may be out of date: {{scheduler['message']}}</p>
% end
% for b in broken:
<p class="notice warn">Job record <code>{{b['id']}}</code> cannot be read: {{b['reason']}}</p>
% end
% if not jobs:
% if searching and not error:
<div class="empty card" data-icon="&#8709;">
  <h2>No jobs match</h2>
  <p>None of your jobs matches this search.</p>
  <div class="actions"><a class="button" href="/jobs">Show all jobs</a></div>
</div>
% else:
<div class="empty card" data-icon="&#9654;">
  <h2>You have not submitted any jobs yet</h2>
  <p>Jobs appear here when you submit a job script. Open one of your scripts and press
  <strong>Submit</strong>, or create a script from a template first.</p>
  <div class="actions">
    <a class="button primary" href="/scripts">Submit a script</a>
    <a class="button" href="/templates">Create a script</a>
  </div>
</div>
% end
% else:
<form method="get" action="/jobs/bulk" id="bulk" class="filter bulk">
  <span class="muted">Selected jobs:</span>
  <button type="submit" name="action" value="cancel">Cancel selected</button>
  <button type="submit" name="action" value="remove">Remove selected</button>
</form>
<div class="table-wrap">
<table class="list" data-live-jobs>
<caption class="visually-hidden">Your jobs, sorted by {{sorted_by}} ({{'descending' if order == 'desc' else 'ascending'}})</caption>
<thead><tr><th scope="col"><span class="visually-hidden">Select</span></th>
% for col, label, cls in (('job', 'Job', ''), ('name', 'Name', ''), ('script', 'Script', ''), ('state', 'State', ''), ('submitted', 'Submitted', ''), ('started', 'Started', 'opt'), ('ended', 'Ended', '')):
% here = col == sorted_by
% flip = ('asc' if order == 'desc' else 'desc') if here else None
<th scope="col"{{!' class="%s"' % cls if cls else ''}}{{!' aria-sort="%s"' % ('descending' if order == 'desc' else 'ascending') if here else ''}}><a href="{{link(sort=col, order=flip, page=None)}}" data-sort="{{col}}">{{label}}{{!(' <span aria-hidden="true">&#9660;</span>' if order == 'desc' else ' <span aria-hidden="true">&#9650;</span>') if here else ''}}</a></th>
% end
<th scope="col" class="opt"><abbr title="CPU efficiency: CPU time / (run time x CPUs)">CPU</abbr></th><th scope="col" class="opt"><abbr title="Memory used of the memory asked for (used, when none was asked for)">Memory</abbr></th><th scope="col" class="opt"><abbr title="Run time of the time limit">Time</abbr></th></tr></thead>
<tbody>
% for job in jobs:
% label = job.get('scheduler_id') or job_label(job)
<tr data-job="{{job['id']}}" data-state="{{job['state']}}">
  <td><input type="checkbox" name="id" value="{{job['id']}}" form="bulk" aria-label="Select job {{label}}"></td>
  <td><a href="/jobs/{{job['id']}}">{{label}}</a>
  % if not job.get('managed', True):
  <span class="muted" data-where>({{job['where']}}, read-only)</span>
  % end
  </td>
  <td class="wrap">{{job.get('job_name') or job['script_name']}}</td>
  <td class="wrap">{{job['script_name']}}{{!' <span class="muted" data-origin="outside">(outside flightjobd)</span>' if job.get('origin') == 'outside' else ''}}</td>
  <td>
  % include('badge', job=job)
  </td>
  % for key in ('submitted_at', 'started_at', 'ended_at'):
  <td data-field="{{key}}"{{!' class="opt"' if key == 'started_at' else ''}}>{{!time_tag(job.get(key))}}</td>
  % end
  % eff = job.get('efficiency') or {}
  <td class="opt" data-field="cpu_percent">{{'' if eff.get('cpu_percent') is None else '%g %%' % round(eff['cpu_percent'])}}</td>
  <td class="opt" data-field="mem_percent">{{'%g %%' % round(eff['mem_percent']) if eff.get('mem_percent') is not None else mem_words(eff['mem_used_mb']) if eff.get('mem_used_mb') is not None else ''}}</td>
  <td class="opt" data-field="time_percent">{{'' if eff.get('time_percent') is None else '%g %%' % round(eff['time_percent'])}}</td>
</tr>
% end
</tbody></table>
</div>
% end
% pages = (total + per_page - 1) // per_page
% if pages > 1:
<nav class="pages" aria-label="Pages">
  % if page_no > 1:
  <a class="button" href="{{link(page=page_no - 1)}}" rel="prev">Previous</a>
  % end
  <span>Page {{page_no}} of {{pages}} ({{total}} jobs)</span>
  % if page_no < pages:
  <a class="button" href="{{link(page=page_no + 1)}}" rel="next">Next</a>
  % end
</nav>
% end
