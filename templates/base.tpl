<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{page['title']}} · Flight Job</title>
% if page['user']:
<meta name="csrf-token" content="{{page['csrf']}}">
% end
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head>
<body data-vocabulary="{{page['vocabulary']}}">
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/">Flight Job</a>
  % if page['user']:
  % section = page['crumbs'][0][0] if page['crumbs'] else ''
  <nav aria-label="Main">
    % for label, href in (('Templates', '/templates'), ('Scripts', '/scripts'), ('Jobs', '/jobs')):
    <a href="{{href}}"{{!' aria-current="page"' if section == label and len(page['crumbs']) == 1 else (' aria-current="true"' if section == label else '')}}>{{label}}</a>
    % end
  </nav>
  <form class="logout" method="post" action="/logout" data-user="{{page['user']}}">
    <input type="hidden" name="csrf" value="{{page['csrf']}}">
    <span class="who"><span class="visually-hidden">Logged in as </span>{{page['user']}}</span>
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
{{!base}}
</main>
<footer>flightjobd {{page['version']}}</footer>
</body>
</html>
