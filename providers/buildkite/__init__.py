"""Buildkite: cluster and unclustered agent tokens, and API access tokens (e.g. ConductorOne's connector).

Nothing heavy here: one class per token kind (``cluster_tokens.ClusterAgentTokenProvider``,
``agent_tokens.UnclusteredAgentTokenProvider``, ``api_token.ApiAccessTokenProvider``) on the shared plumbing in
``common``; ``provider.make_buildkite_provider`` picks one by ``target.token_type``; ``provider.BUILTIN_PRESETS``.
"""
