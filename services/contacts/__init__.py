"""The merchant's contacts (customers on X).

- `contacts`: reading and editing one contact, tags, attributes.
- `listing`: the contact list (filters, search ignoring case and accents).
- `importing`: bulk import (CSV / JSON lines).
- `erasure`: GDPR erasure (`erase_contact`, then `stop_contact_workflows`); campaign DMs not
  yet sent to the person are skipped (`deleted`).
- `consent`: the opt-out / opt-in keywords (`consent_keyword`, `apply_consent_keyword`), used
  by webhook ingestion; the confirmation DM goes through the one send path.
- `fields`: tag and attribute rules (`tag_problem`).
"""
