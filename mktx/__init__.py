"""Runtime shell of mkt-x: settings, command line, logging, secrets and the dev stack."""
