"""SQLModel tables and API schemas, one module per domain.

Importing this package registers every table on `SQLModel.metadata` (Alembic reads it).
"""

from models.account import XAccount
from models.contact import Contact
from models.conversation import Conversation, Message
from models.rate_limit import RATE_LIMIT_TABLE

__all__ = ["RATE_LIMIT_TABLE", "Contact", "Conversation", "Message", "XAccount"]
