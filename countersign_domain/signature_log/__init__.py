"""The signature log: an append-only Merkle tree per petition, with signed tree heads.

``merkle`` is the hashing module (RFC 9162 section 2.1) and imports nothing else of the
project: the independent verifier (``countersign verify``) shares it and nothing more
with the server. Keep this file free of imports, so that importing ``merkle`` loads
nothing else.
"""
