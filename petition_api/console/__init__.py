"""The staff console at ``/admin/``: server-rendered pages on the domain's rules."""
