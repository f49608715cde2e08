"""Importing subscribers from another platform's export, recognised by its header row.

One module per platform's export (``mailchimp``, ``substack``, ``buttondown``,
``listmonk``, ``ghost``, and ``generic``: digest's own export and any list with an email
column), each with the facts its column map rests on (see docs/subscribers.md); they are
told apart by their header row (``platforms``). The shared core: ``table`` reads a file,
``values`` reads its cells, ``incoming`` checks each row in the store's terms, ``mapping``
is ``--map``, ``report`` what an import did (or would do), and ``importer`` the loop that
applies the rows (:func:`digest.audience.imports.importer.import_file`).

Headers are matched ignoring case, a byte-order mark, quotes, spaces, ``_`` and ``-``;
extra columns are ignored; the delimiter may be ``,``, ``;``, a tab or ``|``. For any other
file, ``--map email="Email Address",name="First Name"`` names the columns.

Every status goes through the subscriber store's rules: an import never brings back
someone who unsubscribed, bounced or complained, and never brings back an address erased
on request (``digest subscribers forget``).
"""
