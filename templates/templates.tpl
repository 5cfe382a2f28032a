% rebase('base', page=page)
<h1>Script templates</h1>
<p class="lead">Choose the template that fits your work and click <strong>Create script</strong>.
You will be asked a few questions (each has an explanation and a default answer);
your answers shape the job script, which you can still edit afterwards.</p>
% for p in problems:
<p class="notice warn" role="status">Template <code>{{p['id']}}</code> ({{p['source']}}) could not be used: {{p['error']}}</p>
% end
% if templates:
<ul class="cards">
% for t in templates:
  <li class="card template{{' unavailable' if t.get('unavailable') else ''}}" id="template-{{t['id']}}">
    <h2>{{t['name']}}</h2>
    % if t['source'] == 'user':
    <p class="meta yours">Your own template</p>
    % end
    <p class="synopsis">{{t['synopsis']}}</p>
    <p>{{t['description']}}</p>
    % if t.get('tags'):
    <ul class="tags" aria-label="Tags">
      % for tag in t['tags']:
      <li>{{tag}}</li>
      % end
    </ul>
    % end
    % if t.get('unavailable'):
    <p class="why-not" data-field="unavailable">Not offered here: {{t['unavailable']}}.</p>
    % else:
    <a class="button primary" href="/templates/{{t['id']}}/create">Create script<span class="visually-hidden"> from {{t['name']}}</span></a>
    % end
  </li>
% end
</ul>
% else:
<div class="empty card" data-icon="&#9776;">
  <h2>No templates are installed</h2>
  <p>Ask your site's administrators to install some, or add your own as directories
  under <code>~/.config/flight-job/templates</code>.</p>
</div>
% end
