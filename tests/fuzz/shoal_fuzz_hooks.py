"""Hooks for the schemathesis run of `tests/cluster/openapi.rs`."""

import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # GET /v1/events?follow=true streams for as long as the client reads. The fuzzer
    # reads one answer per request, so it gets the one-shot list instead.
    query = case.query
    if case.operation.path == "/v1/events" and isinstance(query, dict):
        if str(query.get("follow")).lower() == "true":
            query["follow"] = "false"
