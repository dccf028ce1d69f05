"""Sign-in for the compose stack: the FAB auth manager's settings.

docker/Dockerfile copies this file to /opt/airflow/webserver_config.py, the file the FAB
auth manager reads (``[fab] config_file``). As committed, people sign in with a user name
and password kept (hashed) in Airflow's metadata database: the admin is created by
airflow-init from .env, everyone else is added by an admin (README, "Who can sign in").

Roles (FAB's, kept as they are): ``Admin`` (everything, users included), ``Op`` (data
engineers: run, clear and pause DAGs, edit connections, variables and pools), ``User``
(run DAGs, no configuration), ``Viewer`` (read-only). Unauthenticated requests get no
role (AUTH_ROLE_PUBLIC stays unset): the UI sends them to the login page and the REST
API answers 401.

Single sign-on (optional): replace AUTH_TYPE below with the district's identity provider,
e.g. for an OpenID Connect provider (Azure AD / Entra ID, Google Workspace, Okta):

    from flask_appbuilder.const import AUTH_OAUTH
    AUTH_TYPE = AUTH_OAUTH
    AUTH_USER_REGISTRATION = True            # create the user at first sign-in ...
    AUTH_USER_REGISTRATION_ROLE = "Viewer"   # ... read-only until an admin says otherwise
    AUTH_ROLES_MAPPING = {"sis-data-engineers": ["Op"], "sis-admins": ["Admin"]}
    AUTH_ROLES_SYNC_AT_LOGIN = True
    OAUTH_PROVIDERS = [{
        "name": "azure", "icon": "fa-windows", "token_key": "access_token",
        "remote_app": {
            "client_id": os.environ["SSO_CLIENT_ID"],
            "client_secret": os.environ["SSO_CLIENT_SECRET"],
            "api_base_url": "https://login.microsoftonline.com/<tenant>/oauth2",
            "client_kwargs": {"scope": "openid email profile"},
            "server_metadata_url":
                "https://login.microsoftonline.com/<tenant>/v2.0/.well-known/openid-configuration",
        },
    }]

(secrets from .env through the compose environment, never in this file). See the FAB
provider's "Configuring authentication" documentation for LDAP and other providers.
"""

from __future__ import annotations

import os  # noqa: F401 (used by the SSO example above once it is enabled)

from flask_appbuilder.const import AUTH_DB

AUTH_TYPE = AUTH_DB
# Forms (the login page included) carry a CSRF token.
WTF_CSRF_ENABLED = True
