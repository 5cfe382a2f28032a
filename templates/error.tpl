% rebase('base', page=page)
<section class="card">
<h1>{{ {400: 'Bad request', 401: 'Please log in', 403: 'Not allowed', 404: 'Not found', 409: 'Conflict', 413: 'Too large', 422: 'Cannot do that', 429: 'Too many attempts', 503: 'Temporarily unavailable'}.get(error.status, 'Something went wrong') }}</h1>
<p>{{error.message}}</p>
<p><a href="/">Go to the job manager's home page</a></p>
</section>
