//! The `mailbox_slots` and `mailbox_windows` tables: the mailboxes'
//! concurrency slots and rate windows, shared by the fleet. Each taking
//! and reservation is one statement whose conflict clause re-checks the
//! row it would change, so of two workers asking at once neither gets
//! what the other got. Times are the server's clock.

use std::time::Duration;

use crate::PostgresStore;
use connector_state::mailbox::millis;
use connector_state::{MailboxBudgets, RequestGrant, StateError};

/// Slot numbers as the table stores them.
fn slot_numbers(slots: &[u32]) -> Vec<i32> {
    slots
        .iter()
        .map(|s| i32::try_from(*s).unwrap_or(i32::MAX))
        .collect()
}

impl MailboxBudgets for PostgresStore {
    fn take_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        want: u32,
        limit: u32,
        ttl: Duration,
    ) -> Result<Vec<u32>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "INSERT INTO mailbox_slots AS s (mailbox, slot, holder, expires_at_ms)
                 SELECT $1, n, $2, state_now_ms() + $5 FROM generate_series(0, $4::integer - 1) n
                 WHERE NOT EXISTS (SELECT 1 FROM mailbox_slots h
                     WHERE h.mailbox = $1 AND h.slot = n AND h.expires_at_ms > state_now_ms())
                 ORDER BY n LIMIT $3
                 ON CONFLICT (mailbox, slot) DO UPDATE SET holder = excluded.holder,
                     expires_at_ms = excluded.expires_at_ms
                 WHERE s.expires_at_ms <= state_now_ms()
                 RETURNING slot",
                &[
                    &mailbox,
                    &holder,
                    &i64::from(want),
                    &i32::try_from(limit).unwrap_or(i32::MAX),
                    &millis(ttl),
                ],
            )?;
            Ok(rows
                .iter()
                .map(|r| u32::try_from(r.get::<_, i32>(0)).unwrap_or(0))
                .collect())
        })
    }

    fn renew_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        slots: &[u32],
        ttl: Duration,
    ) -> Result<Vec<u32>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "UPDATE mailbox_slots SET expires_at_ms = state_now_ms() + $4
                 WHERE mailbox = $1 AND holder = $2 AND slot = ANY($3) RETURNING slot",
                &[&mailbox, &holder, &slot_numbers(slots), &millis(ttl)],
            )?;
            Ok(rows
                .iter()
                .map(|r| u32::try_from(r.get::<_, i32>(0)).unwrap_or(0))
                .collect())
        })
    }

    fn release_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        slots: &[u32],
    ) -> Result<(), StateError> {
        self.with(|c| {
            c.session().execute(
                "DELETE FROM mailbox_slots WHERE mailbox = $1 AND holder = $2 AND slot = ANY($3)",
                &[&mailbox, &holder, &slot_numbers(slots)],
            )?;
            Ok(())
        })
    }

    fn throttle_mailbox(&mut self, mailbox: &str, pause: Duration) -> Result<(), StateError> {
        self.with(|c| {
            c.session().execute(
                "INSERT INTO mailbox_throttles AS t (mailbox, until_ms)
                 VALUES ($1, state_now_ms() + $2::bigint)
                 ON CONFLICT (mailbox) DO UPDATE SET until_ms = GREATEST(t.until_ms, excluded.until_ms)",
                &[&mailbox, &millis(pause)],
            )?;
            Ok(())
        })
    }

    fn reserve_mailbox_requests(
        &mut self,
        mailbox: &str,
        want: u32,
        limit: u32,
        window: Duration,
    ) -> Result<RequestGrant, StateError> {
        self.with(|c| {
            let paused = c.session().query_opt(
                "SELECT until_ms - state_now_ms() FROM mailbox_throttles
                 WHERE mailbox = $1 AND until_ms > state_now_ms()",
                &[&mailbox],
            )?;
            if let Some(row) = paused {
                return Ok(RequestGrant::for_millis(0, row.get(0)));
            }
            let row = c.session().query_one(
                "INSERT INTO mailbox_windows AS w (mailbox, opened_at_ms, used, granted)
                 VALUES ($1, state_now_ms(), LEAST($2::bigint, $3::bigint), LEAST($2::bigint, $3::bigint))
                 ON CONFLICT (mailbox) DO UPDATE SET
                     granted = CASE WHEN w.opened_at_ms + $4::bigint <= state_now_ms() THEN LEAST($2::bigint, $3::bigint)
                         ELSE GREATEST(0, LEAST($2::bigint, $3::bigint - w.used)) END,
                     used = CASE WHEN w.opened_at_ms + $4::bigint <= state_now_ms() THEN LEAST($2::bigint, $3::bigint)
                         ELSE w.used + GREATEST(0, LEAST($2::bigint, $3::bigint - w.used)) END,
                     opened_at_ms = CASE WHEN w.opened_at_ms + $4::bigint <= state_now_ms()
                         THEN state_now_ms() ELSE w.opened_at_ms END
                 RETURNING granted, opened_at_ms + $4::bigint - state_now_ms()",
                &[
                    &mailbox,
                    &i64::from(want),
                    &i64::from(limit),
                    &millis(window),
                ],
            )?;
            Ok(RequestGrant::for_millis(
                u32::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                row.get(1),
            ))
        })
    }
}
