"""The spool keeps each rendered message from prepare() to sending, so nothing renders twice,
and gives back exactly what was rendered, in recipient order, skipping what is not sent."""

from __future__ import annotations

import os
from pathlib import Path

from mailbatch import RunOptions, load_job, run
from mailbatch.batch.spool import Spool
from mailbatch.job.addresses import Address, parse_addresses
from mailbatch.job.recipients import Recipient
from mailbatch.message.attachments import Attachment
from mailbatch.message.render import Rendered, Renderer
from tests.pipeline import SENDER, make_job, parse


def message(index: int, **fields: object) -> Rendered:
    address = f"user{index}@example.org"
    values: dict[str, object] = {
        "recipient": Recipient(index, address, f"User {index}", {"n": index}, f"people:{index}"),
        "sender": parse_addresses(SENDER)[0], "to": (Address(f"User {index}", address),),
        "cc": (Address("", "c@example.org"),), "bcc": (), "reply_to": (),
        "subject": f"Grüße {index}", "headers": (("X-N", str(index)),),
        "text": "Zeile\n" * index, "html": None,
        "attachments": (Attachment(Path(f"/files/{index}.pdf"), f"{index}.pdf",
                                   "application/pdf", 100 + index),),
        "message_id": f"<{index}.mailbatch@example.org>",
    }
    values.update(fields)
    return Rendered(**values)  # type: ignore[arg-type]


def test_messages_come_back_from_the_spool_exactly_as_they_went_in(tmp_path):
    sent = [message(0), message(1, html="<p>ü</p>", text=None,
                                reply_to=(Address("R, Ü", "r@example.org"),), attachments=(),
                                widened=(("cc", 1, ("a@example.org", "b@example.org")),)),
            message(2, cc=(), headers=(("Sender", (Address("S", "s@example.org"),)),))]
    with Spool(tmp_path) as spool:
        for rendered in sent:
            spool.add(rendered)

        back = [spool.take(rendered.recipient) for rendered in sent]

    assert back == sent
    assert all(type(m) is Address for r in back for m in (r.sender, *r.to, *r.cc, *r.reply_to))
    assert type(back[2].headers[0][1][0]) is Address


def test_recipients_passed_over_are_skipped_and_a_missing_one_leaves_the_rest(tmp_path):
    with Spool(tmp_path) as spool:
        for index in (0, 1, 3, 4):
            spool.add(message(index))

        assert spool.take(message(1).recipient) == message(1)  # 0 was already sent
        assert spool.take(message(2).recipient) is None  # 2 was never spooled
        assert spool.take(message(4).recipient) == message(4)
        assert spool.take(message(5).recipient) is None


def test_the_spool_is_an_unnamed_file_that_leaves_nothing_behind(tmp_path):
    with Spool(tmp_path) as spool:
        spool.add(message(0))
        assert os.listdir(tmp_path) == []


BODY = f"""
    from: "{SENDER}"
    subject: "Figures for {{{{ region }}}}"
    text: "Hello {{{{ name }}}}, {{{{ region }}}}.\\n"
    recipients: people.csv
"""
PEOPLE = "email,name,region\n" + "".join(f"m{i}@example.org,Manager {i},r{i}\n"
                                          for i in range(5))


def test_a_batch_renders_each_message_once_and_sends_what_was_rendered(
        tmp_path, smtp_server, ca_file, password_env, monkeypatch):
    job = make_job(tmp_path, smtp_server, ca_file, BODY, {"people.csv": PEOPLE})
    rendered: list[str] = []
    original = Renderer.render

    def counting(self: Renderer, recipient: Recipient) -> Rendered:
        rendered.append(recipient.address)
        return original(self, recipient)

    monkeypatch.setattr(Renderer, "render", counting)

    report = run(load_job(job), RunOptions())

    assert report.counts["sent"] == 5
    assert rendered == [f"m{i}@example.org" for i in range(5)]
    assert [parse(m.data).get_content().replace("\r\n", "\n") for m in smtp_server.messages] == [
        f"Hello Manager {i}, r{i}.\n" for i in range(5)]
