% rebase('base', page=page)
<h1>Edit answers: {{script['name']}}</h1>
<p class="lead">The questions of the template {{template['name']}}, with this script's answers. Saving makes the script again from them{{'' if diverged else '; if you have edited its text since, you choose which text to keep'}}.</p>
% if message:
<p class="error" role="alert" id="stale">{{message}}</p>
% end
% if errors:
<p class="error" role="alert">Some answers need another look: see the messages beside them. Your answers are kept.</p>
% end
% if errors.get(''):
<p class="error" role="alert">{{errors['']}}</p>
% end
% shown = visible(template['questions'], answers)
<form method="post" action="/scripts/{{script['id']}}/answers" class="questions{{' wide' if diverged else ''}}" data-check="/api/templates/{{template['id']}}/check">
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  <input type="hidden" name="etag" value="{{script['etag']}}">
% if diverged:
  <section class="diverged card" aria-labelledby="diverged-h" id="diverged">
    <h2 id="diverged-h" tabindex="-1">Your edits to the script</h2>
    <p class="error" role="alert">{{diverged.message}}</p>
    <div class="columns">
      <div>
        <h3>Your text (saved now, version {{script['version']}})</h3>
        <pre class="code numbered" tabindex="0" role="region" aria-label="Your text"><code>{{!numbered_lines(script['content'])}}</code></pre>
      </div>
      <div>
        <h3>Made from the new answers</h3>
        <pre class="code numbered" tabindex="0" role="region" aria-label="Made from the new answers"><code>{{!numbered_lines(diverged.rendered)}}</code></pre>
      </div>
    </div>
    % if diff:
    <details class="diff" open>
      <summary>What differs (lines starting with - are only in your text, + only in the new one)</summary>
      <pre class="code" tabindex="0"><code>{{'\n'.join(diff)}}</code></pre>
    </details>
    % end
    <div class="actions">
      <button type="submit" name="text" value="mine" class="primary">Keep my text (save the answers only)</button>
      <button type="submit" name="text" value="rendered">Take the new text (my edits are replaced)</button>
      <a href="/scripts/{{script['id']}}">Cancel (nothing is saved)</a>
    </div>
  </section>
% end
  % include('questions', questions=template['questions'], lead=None, tail=None)
  <div class="actions">
    <button type="submit" name="action" value="update" class="js-hide">Update questions</button>
    % if not diverged:
    <button type="submit" name="action" value="save" class="primary">Save answers</button>
    % end
    <a href="/scripts/{{script['id']}}">Cancel</a>
  </div>
</form>
