"""Callback requests between Enreach and Dynamics 365: one phonecall activity per request, kept in
step both ways, by the ``sync_callbacks`` timer, by notifications at ``/api/presence/enreach``, or
both (``callbacks.sync`` explains the decisions). Nothing here imports Azure Functions except
``blueprint``."""
