"""``digest serve``: the web service subscribers reach from the email and the blog.

:mod:`~digest.serve.app` (routes, :func:`~digest.serve.app.create_app`),
:mod:`~digest.serve.service` (what the routes do to the store),
:mod:`~digest.serve.security` (CSRF, rate limit, body limits, headers),
:mod:`~digest.serve.webhooks` (provider events and their signatures),
:mod:`~digest.serve.pages` (templates/serve/).
"""
