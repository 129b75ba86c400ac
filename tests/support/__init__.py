"""What the tests (and the benches, bench/harness/) share; test modules import only from here.

- ``waiting``: ``eventually``, a condition waited on with a deadline.
- ``counts``: the exactness check, Redis equal to a GROUP BY over Postgres.
- ``factories``: petitions, signatures, staff tokens and request bodies, as tests want them.
- ``http``: client types, the routes' paths, the error envelope, CSV exports.
- ``processes``: real service processes (API, counter worker, mail sender, ``countersign``
  commands, ``countersign dev``) and ``free_port``.
- ``servers``: throwaway databases and key prefixes; Postgres and Redis servers of a test's
  own, to kill, restart and freeze.
- ``mail``: an SMTP server that keeps what it receives, and readers for the messages.
- ``schemathesis_data``: credentials and data schemathesis needs (tests/schemathesis.toml).
- ``values``: the secret, the lease and the trusted addresses every test's settings share.
"""
