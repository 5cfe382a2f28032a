% rebase('base', page=page)
<section class="login card">
<h1>Log in</h1>
% if not passwords:
<p class="notice" role="status" id="proxy-note">This site signs you in through its single sign-on: open
<a href="{{base_url}}">{{base_url}}</a> and sign in there. Passwords are not accepted here.</p>
% else:
<p>Flight Job manages your cluster job scripts and jobs. Log in with the same
username and password you use for the cluster's command line.</p>
% if proxy:
<p class="notice" role="status" id="proxy-note">This site signs you in through its single sign-on:
open Flight Job at
% if base_url:
<a href="{{base_url}}">{{base_url}}</a>
% else:
the site's usual address
% end
and sign in there, with no password asked here. The form below is for reaching Flight Job directly
(for example through an SSH tunnel).</p>
% end
% if kept:
<p class="notice warn" role="status" id="kept-note">Your session had ended, so what you sent was not saved or
done. It is kept in this page: log in, and you will be asked to send it again.</p>
% end
% if error:
<p class="error" role="alert">{{error}}</p>
% end
<form method="post" action="/login">
  <input type="hidden" name="login_csrf" value="{{login_csrf}}">
  <input type="hidden" name="next" value="{{next_url}}">
  % for name, value in kept:
  <input type="hidden" name="{{name}}" value="{{value}}">
  % end
  <label for="username">Username</label>
  <input id="username" name="username" autocomplete="username" required autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit" class="primary">Log in</button>
</form>
% end
</section>
