"""Message templates.

- `templates`: create, read, update, delete, preview; `render_for_contact`,
  `TemplateRenderError` and `stored_card`, used by campaigns to render each recipient's DM.
"""
