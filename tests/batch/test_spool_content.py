"""The spool carries what a report adds: inline images and generated files, by path only."""

from __future__ import annotations

import marshal
from pathlib import Path

from mailbatch.batch.spool import Spool
from mailbatch.job.recipients import Recipient
from mailbatch.message.attachments import Attachment
from mailbatch.message.inline import InlineImage
from mailbatch.message.render import Rendered
from tests.pipeline import SENDER, make_job, parse
from tests.reportfiles import png, related_images


def report(index: int) -> Rendered:
    address = f"user{index}@example.org"
    return Rendered(
        recipient=Recipient(index, address, f"User {index}", {}, f"people:{index}"),
        sender=SENDER, to=address, cc=(), bcc=(), reply_to=None, subject="Sales",
        headers=(), text="Hi\n", html='<img src="cid:logo"><img src="cid:c1@example.org">',
        attachments=(Attachment(Path("/scratch/abc.csv"), "sales-north.csv", "text/csv", 40),),
        message_id=f"<{index}.mailbatch@example.org>",
        inline_images=(InlineImage(Path("/files/logo.png"), "logo.png", "image/png", 70,
                                   "logo"),
                       InlineImage(Path("/scratch/chart-1.png"), "chart.png", "image/png",
                                   9000, "c1@example.org")))


def test_inline_images_and_generated_attachments_come_back_from_the_spool(tmp_path):
    sent = [report(0), report(1)]
    with Spool(tmp_path) as spool:
        for rendered in sent:
            spool.add(rendered)

        assert [spool.take(r.recipient) for r in sent] == sent


def test_a_spool_record_holds_paths_not_image_contents(tmp_path):
    with Spool(tmp_path) as spool:
        spool.add(report(0))
        spool._file.seek(4)
        record = marshal.loads(spool._file.read())

    assert record[-1] == (("/files/logo.png", "logo.png", "image/png", 70, "logo"),
                          ("/scratch/chart-1.png", "chart.png", "image/png", 9000,
                           "c1@example.org"))


def test_a_sent_report_carries_its_inline_images_through_the_spool(
        tmp_path, smtp_server, ca_file, password_env):
    from mailbatch import RunOptions, load_job, run

    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: Sales
    html: '<p>{{ name }}</p><img src="{{ inline_image("logo.png") }}">'
    recipients: [{email: a@example.org, name: A}, {email: b@example.org, name: B}]
    """, {"logo.png": png()})

    run(load_job(job), RunOptions())

    for received in smtp_server.messages:
        assert list(related_images(parse(received.data)).values()) == [
            ("image/png", png(), "inline")]
