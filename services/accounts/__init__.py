"""Connected X accounts.

- `accounts`: reading, settings and statistics of accounts; `load_credentials` (a token
  decrypted for a call to X) and `AccountNotUsable`, used by the send path.
- `lifecycle`: `connect` and `disconnect`, one call each owning its commit and the start of
  its workflow; `start_owed` (the maintenance schedule) finishes what a request
  could not.
"""
