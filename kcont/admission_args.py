"""The admission-webhook options, as ``kcont run`` and request-key-daemon
spell them.  Apart from kcont.admission so that a command line can be
parsed without importing ssl and http.client, which costs seconds at a
daemon's start in the TCG guest; the client is imported only when a
webhook is given."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kcont.admission import Webhook


def add_webhook_arguments(group: argparse._ArgumentGroup) -> None:
    """The webhook options, as ``kcont run`` spells them too."""
    group.add_argument("--admission-webhook", metavar="URL",
                       help="validating webhook: https://HOST:PORT/PATH or unix:SOCKET:/PATH")
    group.add_argument("--admission-ca", metavar="FILE",
                       help="CA bundle that signed the webhook's certificate")
    group.add_argument("--admission-timeout", type=float, default=10.0, metavar="SECONDS",
                       help="how long to wait for the webhook (default 10)")
    group.add_argument("--admission-failure-policy", choices=("Fail", "Ignore"),
                       default="Fail", help="when the webhook cannot answer: deny (Fail, the "
                                            "default) or allow (Ignore)")


def webhook_from(opts: argparse.Namespace) -> Webhook | None:
    """The Webhook the options name, or None; ValueError for a bad one."""
    if not opts.admission_webhook:
        return None
    from kcont.admission import Webhook

    return Webhook(opts.admission_webhook, opts.admission_ca, opts.admission_timeout,
                   opts.admission_failure_policy)
