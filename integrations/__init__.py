"""Clients of the outside world: X (through tweepy) and the LLM (through litellm)."""

import logging

# oauthlib, requests-oauthlib and tweepy write signed request headers (which carry the OAuth
# token) at DEBUG. Secrets are never logged, whatever level an operator turns on.
for _name in ("oauthlib", "requests_oauthlib", "tweepy", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)
