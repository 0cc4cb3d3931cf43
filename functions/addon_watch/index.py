"""Function Compute handler: ``index.handler``."""

from addon_watch.handler import handle


def handler(event, context):  # type: ignore[no-untyped-def]
    return handle(event, context)
