"""The Temporal contracts name things other modules define: they must not drift apart."""

from __future__ import annotations

import integrations.x as x
from workflows.contracts import x_failures


def test_x_failure_names_are_the_integrations_error_classes() -> None:
    """Activities type an X failure's ApplicationError by its class name
    (activities/x_failures.py); retry policies name them from the contracts."""
    names = {x_failures.X_RATE_LIMITED, x_failures.X_UNAVAILABLE, *x_failures.X_REFUSALS}
    classes = {
        name
        for name, value in vars(x).items()
        if isinstance(value, type) and issubclass(value, x.XError)
    }
    assert names <= classes, names - classes
