"""The built-in sandbox: Entra ID, Azure DevOps (vssps + dev.azure.com) and Azure Key Vault emulated on
127.0.0.1 over real HTTPS, in-process and threaded, with a seeded world and a generated keyturn.toml.

    from app.sandbox import Sandbox
    with Sandbox(directory) as sb:
        sb.config_path, sb.urls, sb.state

Importing this package is cheap: no Textual, no cryptography, no Azure SDK (those load in ``start()``).
"""

from __future__ import annotations

from app.sandbox.sandbox import VAULTS, Sandbox, serve
from app.sandbox.state import DEVOPS_RESOURCE, VAULT_RESOURCE, SandboxState

__all__ = [
    "DEVOPS_RESOURCE",
    "VAULTS",
    "VAULT_RESOURCE",
    "Sandbox",
    "SandboxState",
    "serve",
    "skip_user_realm_discovery",
]


def skip_user_realm_discovery(host: str = "127.0.0.1") -> None:
    """Tell MSAL not to do user-realm discovery against ``host`` (client side, for the password flow).

    MSAL's ROPC flow first calls ``https://{host}/common/userrealm/...`` built from the authority's host
    name *without its port*, i.e. port 443 for a sandbox on a high port, which fails. The sandbox's Entra
    emulator answers that call ("Managed") for whoever reaches it on the right port, but MSAL won't. This
    adds ``host`` to MSAL's own per-process list of hosts without realm discovery (what MSAL does itself
    after a 404), so the password flow goes straight to the token endpoint.
    """
    from msal.authority import Authority

    Authority._domains_without_user_realm_discovery.add(host)
