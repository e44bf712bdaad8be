"""The Temporal contracts: what crosses a workflow boundary, named once.

One module per durable process family. Each holds the payload types of its workflows,
activities, signals, updates and queries (pydantic models), the activity names the workflows
call them by (`workflow.execute_activity(messaging.DELIVER, ..., result_type=...)`, and
`@activity.defn(name=messaging.DELIVER)` on the implementation), and the names of the error
types workflows match on (`ApplicationError.type`).

These modules import nothing of the project except other contracts: deterministic workflow
code imports them without pulling in a database driver, an HTTP client or tweepy, and the
API, the services and the activities import them without importing a workflow.
"""
