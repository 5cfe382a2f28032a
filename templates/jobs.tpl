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
% shown = set(columns)
<details class="columns-box card">
<summary>Columns</summary>
<form method="post" action="/jobs/columns" id="columns" data-columns>
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  % for k in ('q', 'state', 'from', 'to', 'sort', 'order', 'page', 'per_page'):
  % if typed.get(k) and not error:
  <input type="hidden" name="{{k}}" value="{{typed[k]}}">
  % end
  % end
  <fieldset>
    <legend>Columns to show (kept for you, on every computer)</legend>
    % for key, (label, _) in column_names.items():
    <label class="check"><input type="checkbox" name="column" value="{{key}}" {{'checked' if key in shown else ''}}> {{label}}</label>
    % end
  </fieldset>
  <button type="submit" class="js-hide">Show these columns</button>
  <span class="muted" data-columns-status role="status" hidden></span>
</form>
</details>
<form method="get" action="/jobs/bulk" id="bulk" class="filter bulk">
  <span class="muted">Selected jobs:</span>
  <button type="submit" name="action" value="cancel">Cancel selected</button>
  <button type="submit" name="action" value="hold">Hold selected</button>
  <button type="submit" name="action" value="release">Release selected</button>
  <button type="submit" name="action" value="remove">Remove selected</button>
  % for job in jobs:
  <input type="hidden" name="page_id" value="{{job['id']}}">
  % end
</form>
% heads = {'job': 'Job', 'state': 'State'}
% heads.update((k, label) for k, (label, _) in column_names.items())
% abbrs = {'cpu': 'CPU efficiency: CPU time / (run time x CPUs)', 'memory': 'Memory used of the memory asked for (used, when none was asked for)', 'time': 'Run time of the time limit', 'nodes': 'Nodes and CPUs: asked for while it waits, given once it runs', 'elapsed': 'Run time of the time limit, as squeue shows them', 'raw': "The scheduler's own word for the state"}
% order_cols = ('job', 'name', 'script', 'state', 'reason', 'raw', 'partition', 'nodes', 'elapsed', 'submitted', 'started', 'ended', 'cpu', 'memory', 'time')
% narrow = ('started', 'cpu', 'memory', 'time', 'raw', 'partition', 'nodes')
<div class="table-wrap">
<table class="list" data-live-jobs>
<caption class="visually-hidden">Your jobs, sorted by {{sorted_by}} ({{'descending' if order == 'desc' else 'ascending'}})</caption>
<thead><tr><th scope="col" data-col="select"><input type="checkbox" name="all" value="1" form="bulk" id="select-all" aria-label="Select all jobs on this page" title="Select all jobs on this page"></th>
% for col in order_cols:
% here = col == sorted_by
% flip = ('asc' if order == 'desc' else 'desc') if here else None
% label = '<abbr title="%s">%s</abbr>' % (abbrs[col], heads[col]) if col in abbrs else heads[col]
<th scope="col" data-col="{{col}}"{{!' class="opt"' if col in narrow else ''}}{{!' hidden' if col in column_names and col not in shown else ''}}{{!' aria-sort="%s"' % ('descending' if order == 'desc' else 'ascending') if here else ''}}>\\
% if col in sorts:
<a href="{{link(sort=col, order=flip, page=None)}}" data-sort="{{col}}">{{!label}}{{!(' <span aria-hidden="true">&#9660;</span>' if order == 'desc' else ' <span aria-hidden="true">&#9650;</span>') if here else ''}}</a>\\
% else:
{{!label}}\\
% end
</th>
% end
</tr></thead>
<tbody>
% for job in jobs:
% label = job.get('scheduler_id') or job_label(job)
% eff = job.get('efficiency') or {}
% nodes = [job.get(k) for k in ('nodes', 'cpus')]
% cells = {'reason': (job.get('reason_text') or '') if job['state'] != 'COMPLETED' else '', 'raw': job.get('raw_state') or '', 'partition': job.get('partition') or '', 'nodes': ' / '.join('%g' % n if n is not None else '?' for n in nodes) if any(n is not None for n in nodes) else '', 'elapsed': job.get('elapsed_of_limit') or '', 'cpu': '' if eff.get('cpu_percent') is None else '%g %%' % round(eff['cpu_percent']), 'memory': '%g %%' % round(eff['mem_percent']) if eff.get('mem_percent') is not None else mem_words(eff['mem_used_mb']) if eff.get('mem_used_mb') is not None else '', 'time': '' if eff.get('time_percent') is None else '%g %%' % round(eff['time_percent'])}
% fields = {'reason': 'reason_text', 'raw': 'raw_state', 'partition': 'partition', 'nodes': 'nodes', 'elapsed': 'elapsed_of_limit', 'submitted': 'submitted_at', 'started': 'started_at', 'ended': 'ended_at', 'cpu': 'cpu_percent', 'memory': 'mem_percent', 'time': 'time_percent', 'name': 'job_name', 'script': 'script_name'}
<tr data-job="{{job['id']}}" data-state="{{job['state']}}">
  <td data-col="select"><input type="checkbox" name="id" value="{{job['id']}}" form="bulk" aria-label="Select job {{label}}"></td>
% for col in order_cols:
% attrs = ' data-col="%s"' % col + (' data-field="%s"' % fields[col] if col in fields else '') + (' class="opt"' if col in narrow else ' class="wrap"' if col in ('name', 'script', 'reason') else '') + (' hidden' if col in column_names and col not in shown else '')
% if col == 'job':
  <td{{!attrs}}><a href="/jobs/{{job['id']}}">{{label}}</a>
  % if not job.get('managed', True):
  <span class="muted" data-where>({{job['where']}}, read-only)</span>
  % end
  </td>
% elif col == 'name':
  <td{{!attrs}}>{{job.get('job_name') or job['script_name']}}</td>
% elif col == 'script':
  <td{{!attrs}}>{{job['script_name']}}{{!' <span class="muted" data-origin="outside">(outside flightjobd)</span>' if job.get('origin') == 'outside' else ''}}</td>
% elif col == 'state':
  <td{{!attrs}}>
  % include('badge', job=job)
  </td>
% elif col in ('submitted', 'started', 'ended'):
  <td{{!attrs}}>{{!time_tag(job.get(fields[col]))}}</td>
% else:
  <td{{!attrs}}>{{cells[col]}}</td>
% end
% end
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
