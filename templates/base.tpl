<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{page['title']}} · Flight Job</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/">Flight Job</a>
  % if page['user']:
  <nav aria-label="Main">
    <a href="/templates">Templates</a>
    <a href="/scripts">Scripts</a>
    <a href="/jobs">Jobs</a>
  </nav>
  <form class="logout" method="post" action="/logout">
    <input type="hidden" name="csrf" value="{{page['csrf']}}">
    <span class="who">{{page['user']}}</span>
    <button type="submit" class="link">Log out</button>
  </form>
  % end
</header>
<main id="main">
% if page['crumbs']:
<nav class="crumbs" aria-label="Breadcrumbs"><ol>
  <li><a href="/">Home</a></li>
  % for label, href in page['crumbs']:
  % if href:
  <li><a href="{{href}}">{{label}}</a></li>
  % else:
  <li aria-current="page">{{label}}</li>
  % end
  % end
</ol></nav>
% end
% if page['notice']:
<p class="notice" role="status">{{page['notice']}}</p>
% end
{{!base}}
</main>
<footer>flightjobd {{page['version']}}</footer>
</body>
</html>
