% rebase('base', page=page)
<h1>{{path}}</h1>
% if listing is not None:
<table class="list"><thead><tr><th scope="col">File</th><th scope="col">Size</th><th scope="col">Modified</th></tr></thead><tbody>
% for f in listing['files'][:500]:
<tr><td><a href="/jobs/{{job['id']}}/files/{{quote(f['path'])}}">{{f['name']}}{{'/' if f['type'] == 'dir' else ''}}</a></td>
<td>{{human_size(f['size']) if f['type'] == 'file' else ''}}</td>
<td><time datetime="{{f['modified_at']}}" title="{{f['modified_at']}}" data-ago>{{ago(f['modified_at'])}}</time></td></tr>
% end
</tbody></table>
% else:
<p class="meta">{{human_size(piece['size'])}} · modified <time datetime="{{piece['modified_at']}}" title="{{piece['modified_at']}}" data-ago>{{ago(piece['modified_at'])}}</time> ·
  <a href="/jobs/{{job['id']}}/download/{{quote(path)}}">Download</a>
% if piece['offset'] > 0:
  · <a href="/jobs/{{job['id']}}/files/{{quote(path)}}?all=1">Show from the start</a>
% end
</p>
% if piece['offset'] > 0:
<p class="muted">Showing the last {{human_size(piece['size'] - piece['offset'])}}.</p>
% elif not piece['eof']:
<p class="muted">Showing the first {{human_size(len(piece['text'].encode()))}}; download for the whole file.</p>
% end
<pre class="code">{{piece['text']}}</pre>
% end
