"""Presence sync: Omnichannel presence and Enreach user status mirror each other; DND during calls.

Nothing here imports Azure Functions except ``blueprint``.
"""
