"""Buildkite: cluster and unclustered agent tokens, and API access tokens (e.g. ConductorOne's connector).

Nothing heavy here: see ``provider.BuildkiteProvider`` and ``provider.BUILTIN_PRESETS``.
"""
