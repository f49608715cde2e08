"""Where posts come from: Markdown folders and RSS, Atom and JSON feeds.

``load.load_sources`` reads every configured source into :class:`~digest.content.posts.Post`
objects; ``feeds`` parses feed documents, ``fetch`` fetches them over HTTP within limits,
``sanitize`` makes their HTML safe, and ``state`` keeps each source's cache and health.
"""
