% rebase('base', page=page)
<h1 data-drafts="{{page['user']}}/{{script['id']}}" data-etag="{{script['etag']}}">{{script['name']}}</h1>
% origin = script.get('origin')
% if origin:
<p class="meta">Imported from {{origin['file'] or 'pasted text'}} ·
% else:
<p class="meta">From the template {{script['template_name'] or script['template_id']}} ·
% end
  created {{!time_tag(script['created_at'])}} ·
  last changed {{!time_tag(script['updated_at'])}}</p>
<div class="actions">
  <a class="button primary" href="/scripts/{{script['id']}}/submit"><svg class="icon" aria-hidden="true" focusable="false" viewBox="0 0 24 24" width="18" height="18"><path fill="currentColor" d="M12 1.5c3.6 2.1 5.6 5.8 5.6 9.8 0 1.3-.2 2.6-.6 3.7l2.3 3.6-3.6-.7-1 2.1H9.3l-1-2.1-3.6.7L7 15c-.4-1.1-.6-2.4-.6-3.7 0-4 2-7.7 5.6-9.8zm0 6.3a2.1 2.1 0 100 4.2 2.1 2.1 0 000-4.2zM10.4 21h3.2L12 23.2z"/></svg> Submit</a>
  <a class="button danger" href="/scripts/{{script['id']}}/delete" data-confirm="{{confirm_question('delete', script['name'])}}" data-post="/scripts/{{script['id']}}/delete">Delete</a>
  % if edit != 'name':
  <a class="button" href="/scripts/{{script['id']}}?edit=name">Rename</a>
  % end
  % if edit != 'copy':
  <a class="button" href="/scripts/{{script['id']}}?edit=copy">Copy</a>
  % end
  % if not origin:
  <a class="button" href="/scripts/{{script['id']}}/answers">Edit answers</a>
  % end
  % if edit != 'template':
  <a class="button" href="/scripts/{{script['id']}}?edit=template">Save as template</a>
  % end
</div>
% if origin and origin['in_place']:
<p class="notice" role="status" id="in-place">Runs where it is: each submit reads your file <code>{{origin['file']}}</code> as it is then and runs it in its directory, where its output goes (no copy of your data). The text below is the file as it was when imported; edit the file itself.</p>
% end
% if error:
<p class="error" role="alert">{{error}} Your text is below, not saved.</p>
% end
% if conflict:
<div class="error" role="alert">
  <p>{{conflict}}</p>
  <p>Below: your text (editable) and the version saved now. Saving again replaces the saved version with yours.</p>
</div>
% end
% if edit == 'name':
<form method="post" action="/scripts/{{script['id']}}/edit" class="card rename" data-draft="{{page['user']}}/{{script['id']}}/name">
  <input type="hidden" name="csrf" value="{{page['csrf']}}"><input type="hidden" name="field" value="name">
  <input type="hidden" name="etag" value="{{script['etag']}}">
  <label for="text">Script name</label>
  <input id="text" name="text" value="{{draft if draft is not None else script['name']}}" required>
  <div class="actions"><button class="primary" type="submit">Save name</button> <a href="/scripts/{{script['id']}}">Cancel</a></div>
</form>
% end
% if edit in ('copy', 'template'):
% include('script_form', script=script, edit=edit, fields=fields)
% end
<div class="columns">
<section class="script" aria-labelledby="script-h">
  <div class="section-head"><h2 id="script-h">Script</h2>
  % if edit != 'content' and not (origin and origin['in_place']):
  <a class="button small" href="/scripts/{{script['id']}}?edit=content">Edit<span class="visually-hidden"> the script</span></a>
  % end
  </div>
  % if edit == 'content':
  <form method="post" action="/scripts/{{script['id']}}/edit" data-warn-unsaved data-draft="{{page['user']}}/{{script['id']}}/content">
    <input type="hidden" name="csrf" value="{{page['csrf']}}"><input type="hidden" name="field" value="content">
    <input type="hidden" name="etag" value="{{script['etag']}}">
    <label for="text" class="visually-hidden">Script content</label>
    <p class="help js-only" id="text-help" hidden>The Tab key types a tab. To move on with the keyboard, press Esc, then Tab.</p>
    <textarea id="text" name="text" class="code" rows="24" spellcheck="false" autocapitalize="off" aria-describedby="text-help" data-keep-tabs>{{draft if draft is not None else script['content']}}</textarea>
    <div class="actions"><button class="primary" type="submit">Save script</button> <a href="/scripts/{{script['id']}}">Cancel</a></div>
  </form>
  % end
  % if edit != 'content' or conflict:
  % if conflict:
  <h3>Saved version</h3>
  % end
  <pre class="code numbered" tabindex="0" role="region" aria-labelledby="script-h"><code>{{!numbered_lines(script['content'])}}</code></pre>
  % end
</section>
<section class="notes" aria-labelledby="notes-h">
  <div class="section-head"><h2 id="notes-h">Notes</h2>
  % if edit != 'notes':
  <a class="button small" href="/scripts/{{script['id']}}?edit=notes">Edit<span class="visually-hidden"> the notes</span></a>
  % end
  </div>
  % if edit == 'notes':
  <form method="post" action="/scripts/{{script['id']}}/edit" data-warn-unsaved data-draft="{{page['user']}}/{{script['id']}}/notes">
    <input type="hidden" name="csrf" value="{{page['csrf']}}"><input type="hidden" name="field" value="notes">
    <input type="hidden" name="etag" value="{{script['etag']}}">
    <label for="text" class="visually-hidden">Notes</label>
    <textarea id="text" name="text" rows="12">{{draft if draft is not None else script['notes']}}</textarea>
    <div class="actions"><button class="primary" type="submit">Save notes</button> <a href="/scripts/{{script['id']}}">Cancel</a></div>
  </form>
  % end
  % if edit != 'notes' or conflict:
  <div class="notes-text{{'' if script['notes'] else ' empty-notes'}}">{{script['notes'] or 'No notes yet: use Edit to add some.'}}</div>
  % end
</section>
</div>
