//! The `mailbox_slots` and `mailbox_windows` tables: the mailboxes'
//! concurrency slots and rate windows, shared by the processes of this
//! machine (SQLite serializes the writes, so each statement sees the
//! others' done).

use std::time::Duration;

use connector_model::time::now_ms;
use rusqlite::{OptionalExtension, params};

use crate::SqliteStore;
use connector_state::mailbox::millis;
use connector_state::{MailboxBudgets, RequestGrant, StateError};

impl MailboxBudgets for SqliteStore {
    fn take_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        want: u32,
        limit: u32,
        ttl: Duration,
    ) -> Result<Vec<u32>, StateError> {
        let mut take = self.conn.prepare_cached(
            "WITH RECURSIVE n(slot) AS (SELECT 0 UNION ALL SELECT slot + 1 FROM n WHERE slot + 1 < ?4)
             INSERT INTO mailbox_slots (mailbox, slot, holder, expires_at_ms)
             SELECT ?1, slot, ?2, ?5 + ?6 FROM n
             WHERE NOT EXISTS (SELECT 1 FROM mailbox_slots s
                 WHERE s.mailbox = ?1 AND s.slot = n.slot AND s.expires_at_ms > ?5)
             ORDER BY slot LIMIT ?3
             ON CONFLICT (mailbox, slot) DO UPDATE SET holder = excluded.holder,
                 expires_at_ms = excluded.expires_at_ms
             RETURNING slot",
        )?;
        let slots = take
            .query_map(
                params![mailbox, holder, want, limit, now_ms(), millis(ttl)],
                |r| r.get(0),
            )?
            .collect::<Result<Vec<u32>, _>>()?;
        Ok(slots)
    }

    fn renew_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        slots: &[u32],
        ttl: Duration,
    ) -> Result<Vec<u32>, StateError> {
        let mut renew = self.conn.prepare_cached(
            "UPDATE mailbox_slots SET expires_at_ms = ?4 + ?5
             WHERE mailbox = ?1 AND holder = ?2 AND slot = ?3 RETURNING slot",
        )?;
        let now = now_ms();
        let mut held = Vec::new();
        for slot in slots {
            let mut rows = renew.query(params![mailbox, holder, slot, now, millis(ttl)])?;
            if rows.next()?.is_some() {
                held.push(*slot);
            }
        }
        Ok(held)
    }

    fn release_mailbox_slots(
        &mut self,
        mailbox: &str,
        holder: &str,
        slots: &[u32],
    ) -> Result<(), StateError> {
        let mut release = self.conn.prepare_cached(
            "DELETE FROM mailbox_slots WHERE mailbox = ?1 AND holder = ?2 AND slot = ?3",
        )?;
        for slot in slots {
            release.execute(params![mailbox, holder, slot])?;
        }
        Ok(())
    }

    fn throttle_mailbox(&mut self, mailbox: &str, pause: Duration) -> Result<(), StateError> {
        self.conn
            .prepare_cached(
                "INSERT INTO mailbox_throttles (mailbox, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (mailbox) DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms)",
            )?
            .execute(params![mailbox, now_ms().saturating_add(millis(pause))])?;
        Ok(())
    }

    fn reserve_mailbox_requests(
        &mut self,
        mailbox: &str,
        want: u32,
        limit: u32,
        window: Duration,
    ) -> Result<RequestGrant, StateError> {
        let paused: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT until_ms - ?2 FROM mailbox_throttles WHERE mailbox = ?1 AND until_ms > ?2",
            )?
            .query_row(params![mailbox, now_ms()], |r| r.get(0))
            .optional()?;
        if let Some(left) = paused {
            return Ok(RequestGrant::for_millis(0, left));
        }
        let (granted, left): (u32, i64) = self
            .conn
            .prepare_cached(
                "INSERT INTO mailbox_windows (mailbox, opened_at_ms, used, granted)
             VALUES (?1, ?5, MIN(?2, ?3), MIN(?2, ?3))
             ON CONFLICT (mailbox) DO UPDATE SET
                 granted = CASE WHEN opened_at_ms + ?4 <= ?5 THEN MIN(?2, ?3)
                     ELSE MAX(0, MIN(?2, ?3 - used)) END,
                 used = CASE WHEN opened_at_ms + ?4 <= ?5 THEN MIN(?2, ?3)
                     ELSE used + MAX(0, MIN(?2, ?3 - used)) END,
                 opened_at_ms = CASE WHEN opened_at_ms + ?4 <= ?5 THEN ?5 ELSE opened_at_ms END
             RETURNING granted, opened_at_ms + ?4 - ?5",
            )?
            .query_row(
                params![mailbox, want, limit, millis(window), now_ms()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        Ok(RequestGrant::for_millis(granted, left))
    }
}
