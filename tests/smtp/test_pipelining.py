"""Fewer round trips, same guarantees: PIPELINING (RFC 2920) and composing ahead."""

from __future__ import annotations

import select
import smtplib
import socket
import ssl
import threading
import types
from collections import Counter

import pytest

from mailbatch.batch.sending import Lookahead
from mailbatch.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, StateError
from mailbatch.smtp.wire import hung_up as _hung_up
from mailbatch.smtp.wire import write_end as _write
from tests.batchjobs import addresses, batch_job, run_batch

COPIES = 'cc: "copies@example.org"\n'


@pytest.mark.parametrize("pipelining", [True, False], ids=["offered", "not-offered"])
def test_every_message_is_received_once_whether_or_not_the_server_offers_pipelining(
        pipelining, smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(pipelining=pipelining)
    job = batch_job(tmp_path, server, ca_file, 4, extra=COPIES)

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert [m.rcpt_tos for m in server.messages] == [[a, "copies@example.org"]
                                                     for a in addresses(4)]
    assert server.connections == 1
    assert server.pipelined_envelopes == (4 if pipelining else 0)


def test_an_envelope_with_very_many_copies_goes_one_command_at_a_time(
        smtp_server_factory, ca_file, tmp_path, password_env):
    # Over 4 KB of commands would reach a server that reads 4 KiB at a time (Postfix) in two
    # reads, and it would answer the first part before reading the rest.
    server = smtp_server_factory()
    copies = ", ".join(addresses(160, "copy"))
    job = batch_job(tmp_path, server, ca_file, 2, extra=f'cc: "{copies}"\n')

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert [len(m.rcpt_tos) for m in server.messages] == [161, 161]
    assert server.pipelined_envelopes == 0


@pytest.mark.parametrize("pipelining", [True, False], ids=["offered", "not-offered"])
def test_a_refused_primary_recipient_gets_nothing_even_when_its_copy_was_accepted(
        pipelining, smtp_server_factory, ca_file, tmp_path, password_env):
    # Pipelined, the server has already answered DATA with 354 when the refusal is read:
    # even a lone "." would deliver an empty message to the copy, so the client hangs up.
    server = smtp_server_factory(pipelining=pipelining, reject_pattern=r"^bad")
    listed = ["user1@example.org", "bad@example.org", "user2@example.org"]
    job = batch_job(tmp_path, server, ca_file, listed, extra=COPIES)

    result = run_batch(job)

    assert result.code == EXIT_PARTIAL
    assert result.statuses == {"user1@example.org": "sent", "bad@example.org": "refused",
                               "user2@example.org": "sent"}
    assert [m.rcpt_tos[0] for m in server.messages] == ["user1@example.org",
                                                        "user2@example.org"]
    assert server.connections == (2 if pipelining else 1)


def test_a_421_to_a_pipelined_envelope_is_retried_on_a_new_connection(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(close_after_per_connection=2)
    job = batch_job(tmp_path, server, ca_file, 5)

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert server.received_count_by_rcpt() == Counter(addresses(5))
    assert server.connections == 3


SLOW_DATA_REPLY = (1, 0.2)  # every end-of-DATA reply late, so an envelope sent ahead is seen


def test_the_next_envelope_goes_out_right_after_the_previous_message(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=SLOW_DATA_REPLY)
    job = batch_job(tmp_path, server, ca_file, 4, extra=COPIES)

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert server.envelopes_ahead == 3  # every message but the first: one round trip each
    assert server.received_count_by_rcpt() == Counter(addresses(4) + ["copies@example.org"] * 4)
    assert server.connections == 1


def test_pipelining_can_be_turned_off_for_a_server_that_mishandles_it(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=SLOW_DATA_REPLY)
    job = batch_job(tmp_path, server, ca_file, 3, pipelining=False)

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert server.received_count_by_rcpt() == Counter(addresses(3))
    assert server.pipelined_envelopes == 0
    assert server.envelopes_ahead == 0


@pytest.mark.parametrize("smtp", [{"max_messages_per_connection": 2}, {"rate": "50/second"}],
                         ids=["reconnect-between", "rate-limit-between"])
def test_no_envelope_goes_ahead_when_something_comes_between_the_messages(
        smtp, smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=SLOW_DATA_REPLY)
    job = batch_job(tmp_path, server, ca_file, 4, **smtp)

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert server.received_count_by_rcpt() == Counter(addresses(4))
    assert [row["attempts"] for row in result.report["recipients"]] == [1, 1, 1, 1]
    if "max_messages_per_connection" in smtp:
        assert server.envelopes_ahead == 2  # within each connection of two, none across
        assert server.connections == 2
    else:
        assert server.envelopes_ahead == 0


def test_a_failed_end_of_data_with_the_next_envelope_waiting_loses_and_repeats_nothing(
        smtp_server_factory, ca_file, tmp_path, password_env):
    # The server has accepted the next envelope (354) when the 451 is read: that message is
    # sent next on the same session, and the one deferred is tried again after the others.
    server = smtp_server_factory(tempfail_every=2, slow_data_reply=SLOW_DATA_REPLY)
    job = batch_job(tmp_path, server, ca_file, 3)

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert result.statuses == dict.fromkeys(addresses(3), "sent")
    assert server.received_count_by_rcpt() == Counter(addresses(3))
    assert [m.rcpt_tos[0] for m in server.messages] == [
        "user1@example.org", "user3@example.org", "user2@example.org"]  # user2 after the rest
    assert server.connections == 1
    assert server.envelopes_ahead == 1  # user3's, with user2's end of DATA; none for retries


def test_stopping_with_the_next_envelope_waiting_leaves_that_message_pending(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory()
    job = batch_job(tmp_path, server, ca_file, 4)
    stop = threading.Event()

    def stop_after_two(done: int, *_: object) -> None:
        if done == 2:
            stop.set()  # what SIGTERM does; the third envelope is already at the server

    first = run_batch(job, stop=stop, progress=stop_after_two)

    assert first.code == EXIT_INTERRUPTED
    assert first.counts == Counter(sent=2, pending=2)
    assert server.received_count_by_rcpt() == Counter(addresses(2))

    second = run_batch(job)

    assert second.code == EXIT_OK, second.error
    assert server.received_count_by_rcpt() == Counter(addresses(4))


def test_a_reply_sent_before_the_final_write_failed_is_still_read():
    # A server that says why and hangs up (an idle timeout, say) while the client composes
    # the next message: the write of the end of DATA fails, and smtplib's send() would close
    # the connection and lose the reply that says the message was not taken.
    ours, theirs = socket.socketpair()
    smtp = smtplib.SMTP()
    smtp.sock = ours
    theirs.sendall(b"421 4.4.2 Error: timeout exceeded\r\n")
    theirs.close()

    failed = _write(smtp, b"MAIL FROM:<a@example.org>\r\n")

    assert isinstance(failed, OSError)
    assert smtp.getreply() == (421, b"4.4.2 Error: timeout exceeded")
    smtp.close()


def test_only_a_hang_up_or_data_out_of_turn_counts_as_the_server_gone(ca):
    # TLS 1.3 servers send session tickets after the handshake: readable, but no data.
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    left, right = socket.socketpair()
    outcome: dict[str, ssl.SSLSocket] = {}
    accept = threading.Thread(target=lambda: outcome.setdefault(
        "server", server_ctx.wrap_socket(right, server_side=True)))
    accept.start()
    client = client_ctx.wrap_socket(left, server_hostname="127.0.0.1")
    accept.join(10)
    server = outcome["server"]
    session = types.SimpleNamespace(sock=client)
    try:
        assert client.version() == "TLSv1.3"
        assert select.select([client], [], [], 5)[0]  # the tickets have arrived
        assert not _hung_up(session)  # type: ignore[arg-type]
        assert not _hung_up(session)  # type: ignore[arg-type]  # and were consumed
        server.sendall(b"421 out of turn\r\n")
        assert select.select([client], [], [], 5)[0]
        assert _hung_up(session)  # type: ignore[arg-type]
    finally:
        client.close()
        server.close()

    left, right = socket.socketpair()
    right.close()
    assert _hung_up(types.SimpleNamespace(sock=left))  # type: ignore[arg-type]
    left.close()


def test_a_message_that_fails_while_composed_ahead_is_recorded_alone(
        smtp_server_factory, ca_file, tmp_path, password_env):
    # Two messages are composed ahead: the fourth while the server answers the second (the
    # third's envelope went out with the second's end). Its attachment is deleted after the
    # first is sent, so composing it fails during that wait.
    server = smtp_server_factory()
    (tmp_path / "files").mkdir(parents=True)
    for address in addresses(5):
        (tmp_path / "files" / f"{address}.txt").write_text("figures\n")
    job = batch_job(tmp_path, server, ca_file, 5, extra="attachments:\n"
                    "  - files/{{ recipient_address }}.txt\n")

    def delete_fourth(done: int, *_: object) -> None:
        if done == 1:
            (tmp_path / "files" / "user4@example.org.txt").unlink()

    result = run_batch(job, progress=delete_fourth)

    assert result.code == EXIT_PARTIAL
    assert result.statuses == {**dict.fromkeys(addresses(5), "sent"),
                               "user4@example.org": "failed"}
    assert server.received_count_by_rcpt() == Counter(
        a for a in addresses(5) if a != "user4@example.org")
    assert server.connections == 1


def test_an_error_while_composing_ahead_is_raised_when_the_message_is_taken():
    def messages():
        yield "first"
        raise StateError("journal.sqlite: cannot update the journal: disk I/O error")

    ahead = Lookahead(messages())  # type: ignore[arg-type]

    assert ahead.take() == "first"
    assert ahead.next_envelope() is None  # inside the transport: must not raise there
    ahead.compose_ahead()
    with pytest.raises(StateError, match="disk I/O error"):
        ahead.take()
    assert ahead.take() is None


def test_the_end_of_data_and_the_next_envelope_go_out_in_one_small_write(
        smtp_server, ca_file, tmp_path, password_env, monkeypatch):
    # Against a server with Nagle on that reads 4 KiB at a time (Postfix), an envelope written
    # on its own after the ".", or a "." and envelope split across two of its reads, gets its
    # replies only after the client's delayed ACK: ~40 ms a message.
    writes: list[bytes] = []
    real_sendall = ssl.SSLSocket.sendall

    def recording(self: ssl.SSLSocket, data: bytes, flags: int = 0) -> None:
        if threading.current_thread() is threading.main_thread():
            writes.append(bytes(data))
        real_sendall(self, data, flags)

    monkeypatch.setattr(ssl.SSLSocket, "sendall", recording)
    job = batch_job(tmp_path, smtp_server, ca_file, 5, extra=COPIES)

    assert run_batch(job).code == EXIT_OK

    ends = [w for w in writes if w.startswith(b".\r\n")]
    envelopes_alone = [w for w in writes if w.startswith(b"MAIL FROM")]
    assert len(ends) == 5
    assert all(b"MAIL FROM:<reports@example.org>" in w and w.endswith(b"DATA\r\n")
               for w in ends[:-1])
    assert all(len(w) <= 4000 for w in ends)
    assert ends[-1] == b".\r\n"  # the last message: nothing follows
    assert len(envelopes_alone) == 1  # only the first message's, after the login
