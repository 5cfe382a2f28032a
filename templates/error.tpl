% rebase('base', page=page)
% titles = {400: 'Bad request', 401: 'Please log in', 403: 'Not allowed', 404: 'Not found', 405: 'Not allowed here', 409: 'Conflict', 412: 'Changed meanwhile', 413: 'Too large', 422: 'Cannot do that', 429: 'Too many attempts', 503: 'Temporarily unavailable'}
% hints = {404: 'The page, script or job may have been deleted, or the address mistyped.', 403: 'The page may have been open too long: go back, reload it and try again.', 409: 'Reload the page to see how things stand now, then try again.', 413: 'Try something smaller.', 429: 'Wait a minute before trying again.', 503: 'This is usually brief: wait a few seconds and reload the page. If it keeps happening, tell your site\'s administrators.', 500: 'Try again; if it keeps happening, tell your site\'s administrators.'}
<section class="card error-page">
<p class="code-num">Error {{error.status}}</p>
<h1>{{titles.get(error.status, 'Something went wrong')}}</h1>
<p>{{error.message}}</p>
% hint = "If you think you should be let in, tell your site's administrators." if error.code == 'sign_in_refused' else hints.get(error.status)
% if hint:
<p class="muted">{{hint}}</p>
% end
<div class="actions">
  <a class="button primary" href="/">Go to the home page</a>
  % if page['user']:
  <a class="button" href="/scripts">Your scripts</a>
  <a class="button" href="/jobs">Your jobs</a>
  % end
</div>
</section>
