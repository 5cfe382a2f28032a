% rebase('base', page=page)
<h1>Import a script</h1>
<p class="lead">Use a job script you already have: pick its file in your home directory, or paste its text.
Its <code>#SBATCH</code> lines become the defaults of the questions asked when you submit it.</p>
% if errors:
<p class="error" role="alert">The script was not imported: see the message{{'s' if len(errors) > 1 else ''}} beside the form. What you typed is kept.</p>
% end
% if errors.get('path') and chosen is None:
<p class="error" role="alert">{{errors['path']}}</p>
% end
% if errors.get(''):
<p class="error" role="alert">{{errors['']}}</p>
% end
% file_form = chosen is not None
% if file_form:
<form method="post" action="/import" class="card questions" id="import-file">
  <input type="hidden" name="csrf" value="{{page['csrf']}}"><input type="hidden" name="source" value="file">
  <input type="hidden" name="path" value="{{chosen}}">
  <h2>Import <code>{{listing['home']}}/{{chosen}}</code></h2>
  % if entry:
  <p class="muted">{{human_size(entry['size'])}}, changed {{!time_tag(entry['modified_at'])}}</p>
  % end
  % if errors.get('path'):
  <p class="field-error" role="alert">{{errors['path']}}</p>
  % end
  <div class="question{{' has-error' if errors.get('name') else ''}}">
    <label for="file-name">Script name</label>
    <input id="file-name" name="name" value="{{values.get('name', '') if values.get('source') == 'file' else ''}}" aria-describedby="file-name-help">
    <p class="help" id="file-name-help">Empty: the file's name.</p>
    % if errors.get('name') and values.get('source') == 'file':
    <p class="field-error" role="alert">{{errors['name']}}</p>
    % end
  </div>
  <div class="question{{' has-error' if errors.get('in_place') else ''}}">
    <input type="checkbox" id="in_place" name="in_place" value="on" {{'checked' if values.get('in_place') else ''}} aria-describedby="in_place-help">
    <label for="in_place" class="inline">Run it where it is</label>
    <p class="help" id="in_place-help">Each submit reads this file as it is then (edit it where it is, as you do now)
    and runs it in its own directory, so it finds its data there and its output lands there: nothing is copied.
    Unticked: the script is copied into your scripts once, runs from your home like the others, and you edit the copy here.</p>
    % if errors.get('in_place'):
    <p class="field-error" role="alert">{{errors['in_place']}}</p>
    % end
  </div>
  <div class="actions"><button class="primary" type="submit">Import</button>
  <a href="/import?path={{quote(listing['path'])}}">Choose another file</a></div>
</form>
% end
<section aria-labelledby="browse-h" id="browse">
<h2 id="browse-h">Your home directory</h2>
<nav aria-label="Folder" class="meta">
  <a href="/import">{{listing['home']}}</a>
  % parts = listing['path'].split('/') if listing['path'] else []
  % for i, part in enumerate(parts):
  / <a href="/import?path={{quote('/'.join(parts[:i + 1]))}}">{{part}}</a>
  % end
</nav>
% if listing['parent'] is not None:
<p><a href="/import?path={{quote(listing['parent'])}}">Up to the folder above</a></p>
% end
% if not listing['entries']:
<p class="muted">This folder is empty.</p>
% else:
<div class="table-wrap">
<table class="list" id="home-files">
<caption class="visually-hidden">The files of {{listing['home']}}/{{listing['path']}}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Size</th><th scope="col" class="opt">Changed</th></tr></thead>
<tbody>
% for e in listing['entries']:
% kind = e.get('target') if e['type'] == 'link' else e['type']
<tr>
  <td class="wrap">
  % if e['type'] == 'link' and not e['inside']:
    {{e['name']}} <span class="muted">(a link out of your home: cannot be used)</span>
  % elif kind == 'dir':
    <a href="/import?path={{quote(e['path'])}}">{{e['name']}}/</a>{{' (link)' if e['type'] == 'link' else ''}}
  % elif kind == 'file' and e['size'] > listing['max_bytes']:
    {{e['name']}} <span class="muted">(too large to be a job script: over {{human_size(listing['max_bytes'])}})</span>
  % elif kind == 'file':
    <a href="/import?file={{quote(e['path'])}}">{{e['name']}}</a>{{' (link)' if e['type'] == 'link' else ''}}
  % else:
    {{e['name']}} <span class="muted">({{'a broken link' if kind == 'missing' else 'not a regular file'}}: cannot be imported)</span>
  % end
  </td>
  <td>{{human_size(e['size']) if kind == 'file' else ''}}</td>
  <td class="opt">{{!time_tag(e['modified_at'])}}</td>
</tr>
% end
</tbody></table>
</div>
% end
% if listing['truncated']:
<p class="notice" role="status">Only the first {{'{:,}'.format(listing['listed'])}} entries of this folder are listed; {{'{:,}'.format(listing['more'])}} more are not shown.</p>
% end
</section>
<section aria-labelledby="paste-h">
<h2 id="paste-h">Or paste the script</h2>
<form method="post" action="/import" class="questions" id="import-paste">
  <input type="hidden" name="csrf" value="{{page['csrf']}}"><input type="hidden" name="source" value="paste">
  <div class="question{{' has-error' if errors.get('name') and values.get('source') == 'paste' else ''}}">
    <label for="paste-name">Script name</label>
    <input id="paste-name" name="name" value="{{values.get('name', '') if values.get('source') == 'paste' else ''}}" aria-describedby="paste-name-help">
    <p class="help" id="paste-name-help">Empty: the script's job name (<code>#SBATCH --job-name</code>).</p>
    % if errors.get('name') and values.get('source') == 'paste':
    <p class="field-error" role="alert">{{errors['name']}}</p>
    % end
  </div>
  <div class="question{{' has-error' if errors.get('content') else ''}}">
    <label for="content">Script</label>
    <textarea id="content" name="content" class="code" rows="14" spellcheck="false" autocapitalize="off">{{values.get('content', '') if values.get('source') == 'paste' else ''}}</textarea>
    % if errors.get('content'):
    <p class="field-error" role="alert">{{errors['content']}}</p>
    % end
  </div>
  <div class="actions"><button class="primary" type="submit">Import</button></div>
</form>
</section>
