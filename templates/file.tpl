% rebase('base', page=page)
<h1><span class="visually-hidden">File </span>{{path}}</h1>
<p class="meta">From the results of <a href="/jobs/{{job['id']}}">{{job_label(job)}}</a>
% if piece is not None:
  · {{human_size(piece['size'])}} · modified {{!time_tag(piece['modified_at'])}}
% end
</p>
% if listing is not None:
% if listing['files']:
<div class="actions">
  <a class="button" href="/jobs/{{job['id']}}/archive?path={{quote(path)}}">Download this directory as .zip</a>
</div>
<div class="table-wrap">
<table class="list"><thead><tr><th scope="col">File</th><th scope="col">Size</th><th scope="col">Modified</th></tr></thead><tbody>
% for f in listing['files'][:500]:
<tr><td class="wrap"><a href="/jobs/{{job['id']}}/files/{{quote(f['path'])}}">{{f['name']}}{{'/' if f['type'] == 'dir' else ''}}</a></td>
<td>{{human_size(f['size']) if f['type'] == 'file' else ''}}</td>
<td>{{!time_tag(f['modified_at'])}}</td></tr>
% end
</tbody></table>
</div>
% else:
<p class="notice">This directory is empty.</p>
% end
% else:
<div class="actions">
  <a class="button primary" href="/jobs/{{job['id']}}/download/{{quote(path)}}">Download</a>
% if piece['offset'] > 0:
  <a class="button" href="/jobs/{{job['id']}}/files/{{quote(path)}}?all=1">Show from the start</a>
% end
</div>
% if piece['offset'] > 0:
<p class="muted">Showing the last {{human_size(piece['size'] - piece['offset'])}}.</p>
% elif not piece['eof']:
<p class="muted">Showing the first {{human_size(len(piece['text'].encode()))}}; download for the whole file.</p>
% end
% if piece['text']:
<pre class="code" tabindex="0" role="region" aria-label="Contents of {{path}}">{{piece['text']}}</pre>
% else:
<p class="notice">This file is empty.</p>
% end
% end
