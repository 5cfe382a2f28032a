% rebase('base', page=page)
<section class="card confirm">
<h1>{{page['title']}}</h1>
<p>{{question}}</p>
<form method="post" action="{{action}}">
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  <div class="actions">
    <button type="submit" class="danger">{{button}}</button>
    <a class="button" href="{{back}}">Keep it</a>
  </div>
</form>
</section>
