"""The transport's logger, which never shows a credential."""

from __future__ import annotations

import logging

logger = logging.getLogger("realtalk.transport")


class _RedactCredentials(logging.Filter):
    """websockets logs every handshake header at DEBUG ("> %s: %s"): keys and tokens must not
    reach a log, whoever turns DEBUG on."""

    SECRET_HEADERS = frozenset({"authorization", "api-key", "sec-websocket-protocol"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (isinstance(args, tuple) and len(args) == 2 and str(record.msg).endswith("%s: %s")
                and str(args[0]).lower() in self.SECRET_HEADERS):
            name, value = args
            if str(name).lower() == "sec-websocket-protocol":  # browser auth rides here
                value = ", ".join(
                    part.split(".", 1)[0] + ".[redacted]" if "." in part else part
                    for part in str(value).split(", "))
            else:
                value = str(value).split(" ", 1)[0] + " [redacted]" if " " in str(value) \
                    else "[redacted]"
            record.args = (name, value)
        return True


logger.addFilter(_RedactCredentials())
