"""Azure DevOps PATs: the PAT Lifecycle API with the bot's Entra user token.

``AzureDevOpsProvider`` is loaded on first access, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from providers.azure_devops.provider import AzureDevOpsProvider

__all__ = ["AzureDevOpsProvider"]


def __getattr__(name: str) -> Any:
    if name == "AzureDevOpsProvider":
        from providers.azure_devops.provider import AzureDevOpsProvider

        return AzureDevOpsProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
