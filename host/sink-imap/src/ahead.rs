//! MULTIAPPENDs written ahead of the call they belong to
//! ([`Sink::deliver_before`](connector_sink::Sink::deliver_before)): once
//! a call has written all of its own, it writes the first emails of the
//! caller's next batch, so that the server stores them while the call
//! reads its last answers and the caller commits and plans. The next call
//! takes them over as its first commands in flight. Anything else that
//! needs the connection first settles them: what the server accepted is
//! kept until a call asks for it, and what it refused is appended again by
//! that call, which finds the culprit as for any batch.

use std::collections::VecDeque;

use super::codec::Status;
use super::{APPENDS_IN_FLIGHT, Email, MailboxState, Shared, next_chunk, placed_uids};

/// Commands on the wire for emails of a call still to come, all to one
/// folder, oldest first.
pub(crate) struct Ahead {
    pub(crate) folder: String,
    /// Each command's tag and the Message-IDs of its emails, in order.
    pub(crate) commands: VecDeque<(String, Vec<String>)>,
}

impl Ahead {
    /// Whether the commands append exactly the first of `to_send`, in
    /// order, so that a call sending `to_send` can take them over.
    pub(crate) fn begins(&self, to_send: &[(usize, &Email)]) -> bool {
        let mut rest = to_send.iter();
        self.commands.iter().all(|(_, ids)| {
            ids.iter()
                .all(|id| rest.next().is_some_and(|(_, e)| e.message_id == *id))
        })
    }

    /// How many emails the commands append.
    fn emails(&self) -> usize {
        self.commands.iter().map(|(_, ids)| ids.len()).sum()
    }
}

impl MailboxState {
    /// Writes MULTIAPPENDs of the first of `next` (the caller's next
    /// emails for `folder`) while fewer than [`APPENDS_IN_FLIGHT`]
    /// commands, `flying` of them the current call's, are on the wire.
    /// Emails the folder holds, and repeats, are left out as the call that
    /// delivers them will leave them out.
    pub(crate) fn write_ahead(
        &mut self,
        sh: &Shared,
        folder: &str,
        next: &[&Email],
        flying: usize,
    ) {
        let on_wire = |me: &Self| flying + me.ahead.as_ref().map_or(0, |a| a.commands.len());
        if next.is_empty()
            || on_wire(self) >= APPENDS_IN_FLIGHT
            || self.ahead.as_ref().is_some_and(|a| a.folder != folder)
        {
            return;
        }
        let to_send = self
            .sort_out(folder, next.iter().enumerate().map(|(i, e)| (i, *e)))
            .to_send;
        let mut sent = self.ahead.as_ref().map_or(0, Ahead::emails);
        while on_wire(self) < APPENDS_IN_FLIGHT && sent < to_send.len() {
            let chunk = next_chunk(&to_send[sent..], &sh.settings);
            if !self.can_pipeline(chunk) {
                return;
            }
            let Ok(tag) = self.send_chunk(sh, folder, chunk) else {
                // The connection broke: the call that delivers these finds
                // out what arrived, as after any cut.
                self.drop_session();
                if let Some(state) = self.folders.get_mut(folder) {
                    state.stale = true;
                }
                return;
            };
            let ids = chunk.iter().map(|(_, e)| e.message_id.clone()).collect();
            self.ahead
                .get_or_insert_with(|| Ahead {
                    folder: folder.to_string(),
                    commands: VecDeque::new(),
                })
                .commands
                .push_back((tag, ids));
            sent += chunk.len();
        }
    }

    /// Reads the answers to the commands written ahead: what was accepted
    /// is kept for the call that asks for it; what was refused is left to
    /// that call to append again. A broken connection is dropped and the
    /// folder read again before more is appended.
    pub(crate) fn settle_ahead(&mut self, sh: &Shared) {
        let Some(mut ahead) = self.ahead.take() else {
            return;
        };
        while let Some((tag, ids)) = ahead.commands.pop_front() {
            let Ok(done) = self.finish_chunk(sh, &tag) else {
                self.ahead = Some(ahead);
                self.drop_session();
                return;
            };
            if done.status.status == Status::Bad {
                // The server may have lost track of the commands.
                self.ahead = Some(ahead);
                self.drop_session();
                return;
            }
            if done.status.status != Status::Ok {
                tracing::info!(mailbox = %self.mailbox, folder = %ahead.folder, "a MULTIAPPEND written ahead was answered {}; its emails go again with their own call", done.status.describe());
                continue;
            }
            for ((validity, uid), id) in placed_uids(sh, &done.status, ids.len())
                .into_iter()
                .zip(&ids)
            {
                self.remember(&ahead.folder, id, validity, uid, true);
            }
        }
    }
}
