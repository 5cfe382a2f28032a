% rebase('base', page=page)
<div class="list-head">
<h1>Scripts</h1>
% if scripts:
<span><a class="button" href="/import">Import a script</a>
<a class="button primary" href="/templates">Create a new script</a></span>
% end
</div>
% if not scripts:
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
<thead><tr><th scope="col">Name</th><th scope="col">Template</th><th scope="col" class="opt">Created</th><th scope="col">Last changed</th></tr></thead>
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
