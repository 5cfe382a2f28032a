% rebase('base', page=page)
<section class="card resume">
<h1>{{page['title']}}</h1>
<p class="notice warn" role="status">{{why}}</p>
<p>Check it below, then press <strong>Send it now</strong> to send it again, logged in as {{page['user']}}.
Nothing is sent until you do.</p>
<form method="post" action="{{action}}">
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  % for name, value in kept:
  <input type="hidden" name="{{name}}" value="{{value}}">
  % end
  <div class="actions">
    <button type="submit" class="primary">Send it now</button>
    <a class="button" href="/">Discard it</a>
  </div>
</form>
<h2>What you sent</h2>
<p class="meta">To <code>{{action}}</code>:</p>
<dl class="kept">
  % for name, value in kept:
  <dt>{{name}}</dt>
  <dd><pre class="code" tabindex="0">{{value}}</pre></dd>
  % end
</dl>
</section>
