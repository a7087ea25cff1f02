"""Timer jobs: Enreach calls become Dataverse phone call activities exactly once
(``sync_phone_calls``), and Dataverse users get their Enreach user ids (``sync_enreach_user_ids``).
Nothing here imports Azure Functions except ``blueprint``."""
