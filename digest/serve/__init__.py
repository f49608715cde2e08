"""``digest serve``: the web service subscribers reach from the email and the blog.

:mod:`~digest.serve.app` (the web app: routes, :func:`~digest.serve.app.create_app`),
:mod:`~digest.serve.subscriptions` (what the routes do to the subscriber store),
:mod:`~digest.serve.store_worker` (the one thread that owns the store),
:mod:`~digest.serve.mail` (the confirmation, notice and welcome emails),
:mod:`~digest.serve.security` (CSRF, rate limit, body limits, headers),
:mod:`~digest.serve.webhooks` (provider events and their signatures),
:mod:`~digest.serve.pages` (templates/serve/).
"""
