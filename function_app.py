"""Azure Functions entry point (Python v2 model): only glue, one Blueprint per package.

Keep imports here cheap: the host imports this module on every cold start. Each
blueprint imports its business logic inside the function bodies.
"""

import azure.functions as func

from call_sync.blueprint import bp as call_sync_bp
from callbacks.blueprint import bp as callbacks_bp
from core.telemetry import configure_telemetry
from health.blueprint import bp as health_bp
from presence_sync.blueprint import bp as presence_bp
from routing.blueprint import bp as routing_bp

configure_telemetry()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health_bp)
app.register_functions(routing_bp)
app.register_functions(call_sync_bp)
app.register_functions(presence_bp)
app.register_functions(callbacks_bp)
