% rebase('base', page=page)
<h1>Scripts</h1>
% if not scripts:
<div class="empty card">
  <p>You have no job scripts yet.</p>
  <a class="button primary" href="/templates">Create a job script</a>
</div>
% else:
<p><a class="button" href="/templates">Create a new script</a></p>
<table class="list">
<caption class="visually-hidden">Your job scripts</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Template</th><th scope="col">Created</th><th scope="col">Last changed</th></tr></thead>
<tbody>
% for s in scripts:
% if s.get('broken'):
<tr class="broken"><td><code>{{s['id']}}</code></td><td colspan="3">Cannot be read: {{s['reason']}}</td></tr>
% else:
<tr>
  <td><a href="/scripts/{{s['id']}}">{{s['name']}}</a></td>
  <td>{{s['template_name']}}</td>
  <td><time datetime="{{s['created_at']}}" title="{{s['created_at']}}" data-ago>{{ago(s['created_at'])}}</time></td>
  <td><time datetime="{{s['updated_at']}}" title="{{s['updated_at']}}" data-ago>{{ago(s['updated_at'])}}</time></td>
</tr>
% end
% end
</tbody></table>
% end
