"""Serving the policy to people: an OpenAI-compatible chat endpoint and a chat page (`task=serve`).

Every request is logged (`journal`), a user's next message turns the previous reply into an
interaction (`turns`), the served weights live in `policy`, an optional background learner updates
them between turns (`learning`), and the page shows each reply's per-token advantages (`signal`).
The HTTP layer is `app`; `session` wires the parts together for the task and the tests.
"""
