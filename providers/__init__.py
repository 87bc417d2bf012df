"""Platform providers behind one Protocol (see ``providers.base``).

The engine never branches on a platform's name: it asks :func:`providers.registry.make_provider`.
"""
