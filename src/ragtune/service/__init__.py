"""The production query path: the published configuration answering questions, guarded, cached, audited, with a
human-review queue. ``core.QueryService`` does the work; ``app`` puts it behind HTTP."""
