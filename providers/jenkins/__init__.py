"""Jenkins / CloudBees CI user API tokens (minted by the user, never listed, revoked by uuid).

Nothing heavy here: see ``provider.JenkinsProvider``.
"""
