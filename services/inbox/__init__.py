"""The inbox: conversations and the workflows listening to a contact.

- `conversations`: listing, reading, closing and assigning conversations.
- `replies`: `send_reply`, an agent's reply queued through the one send path, committed,
  delivered durably and waited for.
- `listeners`: workflows registered as waiting on a contact (`register_listener`,
  `unregister_listener`, `forget_listeners`, `start_reply_waiter`).
"""
