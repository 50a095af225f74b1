"""An aiosmtpd handler for the SMTP sink's tests: stores every accepted
message's bytes as received (after SMTP dot-unstuffing, nothing else
changed) as NNNNNN.eml, and its envelope as NNNNNN.json, in a folder.
RCPT addresses starting with "refuse" get 550, those starting with
"busy" get 451. Run as:

    python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c journal.Journal DIR
"""

import itertools
import json
import os


class Journal:
    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.counter = itertools.count(1)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("journal.Journal takes one argument: the folder")
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse"):
            return "550 5.1.1 <%s>: no such journal" % address
        if address.startswith("busy"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        base = os.path.join(self.directory, "%06d" % n)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from,
                       "rcpt_tos": envelope.rcpt_tos,
                       "options": envelope.mail_options}, f)
        os.rename(base + ".json.tmp", base + ".json")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Ok: queued as J%06d" % n
