"""The staff API, a sub-application at ``/v1/admin`` (petition_api/app.py mounts it; its
routes are in petition_api/routes.py): every path under it, unknown ones included, needs a
staff token (``auth.staff_middleware``)."""
