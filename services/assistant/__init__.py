"""The AI assistant: answers through litellm in a fixed contract, auto-reply, and escalation
to humans.

- `settings`: a merchant's AI settings (`load`, `update`, `public`); arms the auto-reply trigger.
- `prompt`: the system message, the answer's schema, reading the answer (`parse_answer`).
- `answering`: one answer — the model call, one repair, the record (`answer`, `AIServiceError`).
- `sessions`: a conversation's AI session (turns, intent, slots, the bot paused).
- `escalations`: handing a conversation to humans, its SLA, its resolution.
- `conversations`: what the endpoints do (`message`, `context`, `escalate`, `human_took_over`).
- `auto_reply`: answering DMs by itself, and its trigger (`register_triggers`).
"""
