"""SmartRouting webhook: find the caller in Dataverse and answer where the call goes.

Also the phone index job (``sync_phone_index``) that keeps callers findable with ``eq``.
Nothing here imports Azure Functions except ``blueprint``.
"""
