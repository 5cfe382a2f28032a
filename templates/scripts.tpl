% rebase('base', page=page)
<div class="list-head">
<h1>Scripts</h1>
% if scripts:
<span><a class="button" href="/import">Import a script</a>
<a class="button primary" href="/templates">Create a new script</a></span>
% end
</div>
% sorted_by, order = query['sort'], query['order']
% if scripts or typed['q'] or error:
<form method="get" action="/scripts" class="filter" id="script-search" role="search">
  <label for="q">Search</label>
  <input type="search" id="q" name="q" value="{{typed['q']}}" maxlength="200" placeholder="name or template">
  % for k in ('sort', 'order'):
  % if typed[k]:
  <input type="hidden" name="{{k}}" value="{{typed[k]}}">
  % end
  % end
  <button type="submit">Search</button>
  % if typed['q']:
  <a class="button" href="/scripts">Clear</a>
  % end
</form>
% end
% if error:
<p class="error" role="alert" id="list-error">{{error.message}} The list below is shown as it is by default.</p>
% end
% if not scripts and typed['q'] and not error:
<div class="empty card" data-icon="&#8709;">
  <h2>No scripts match</h2>
  <p>None of your scripts has &ldquo;{{typed['q']}}&rdquo; in its name or template.</p>
  <div class="actions"><a class="button" href="/scripts">Show all scripts</a></div>
</div>
% elif not scripts:
<div class="empty card" data-icon="&#9998;">
  <h2>You have no job scripts yet</h2>
  <p>A job script tells the cluster what to run. Start from a template: pick the kind of job,
  answer a few questions, and the script is written for you.</p>
  <div class="actions"><a class="button primary" href="/templates">Create a job script</a>
  <a class="button" href="/import">Import a script you have</a></div>
</div>
% else:
<div class="table-wrap">
<table class="list">
<caption class="visually-hidden">Your job scripts</caption>
<thead><tr>
% for col, label, cls in (('name', 'Name', ''), ('template', 'Template', ''), ('created', 'Created', 'opt'), ('updated', 'Last changed', '')):
% here = col == sorted_by
% flip = ('asc' if order == 'desc' else 'desc') if here else None
<th scope="col"{{!' class="%s"' % cls if cls else ''}}{{!' aria-sort="%s"' % ('descending' if order == 'desc' else 'ascending') if here else ''}}><a href="{{link(sort=col, order=flip)}}" data-sort="{{col}}">{{label}}{{!(' <span aria-hidden="true">&#9660;</span>' if order == 'desc' else ' <span aria-hidden="true">&#9650;</span>') if here else ''}}</a></th>
% end
</tr></thead>
<tbody>
% for s in scripts:
% if s.get('broken'):
<tr class="broken"><td><code>{{s['id']}}</code></td><td colspan="3">Cannot be read: {{s['reason']}}</td></tr>
% else:
<tr>
  <td class="wrap"><a href="/scripts/{{s['id']}}">{{s['name']}}</a></td>
  <td>{{s['template_name']}}</td>
  <td class="opt">{{!time_tag(s['created_at'])}}</td>
  <td>{{!time_tag(s['updated_at'])}}</td>
</tr>
% end
% end
</tbody></table>
</div>
<p class="muted">Click a script's name to view, edit, submit or delete it.</p>
% end
