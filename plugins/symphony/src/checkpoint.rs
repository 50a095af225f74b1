//! Resume positions and their compact binary encoding.
//!
//! Each stream has a [`Position`]: the timestamp of the last message taken
//! and (hashes of) the ids of every message taken *at that millisecond*.
//! `GET /agent/v4/stream/{sid}/message?since=` is inclusive to the
//! millisecond, so the next request asks `since = ts` and drops what was
//! already taken by id. Using ids rather than a bare count keeps the
//! position exact when a message at that millisecond is suppressed (it
//! leaves the listing, and a count-based `skip` would then step over an
//! unseen message) or when more messages share the millisecond than fit in
//! one page (then `skip` steps over listed messages that are all known; see
//! [`next_batch`]).
//!
//! ## Encoding (version 1)
//!
//! ```text
//! "SYC" 0x01                      magic and version
//! flags: u8                        bit 0: cursor present, bit 1: ack id present
//! [cursor: id]                     stream the next run starts at
//! [ack id: varint length, bytes]   datahose ackId (UTF-8)
//! count: varint                    number of positions
//! count × {                        sorted by stream id
//!   stream: id
//!   ts: zigzag varint              ms since the epoch
//!   n: varint, n × u64 LE          FNV-1a 64 of each message id taken at ts
//! }
//! id := 0x01 varint length, bytes  URL-safe base64 (no padding) decoded
//!     | 0x00 varint length, bytes  anything else, UTF-8
//! ```
//!
//! A typical stream costs about 42 bytes (25-byte id, 6-byte time, one
//! hash), so the host's 1 MiB checkpoint limit holds about 25,000 streams
//! with positions when the pod is read whole; a stream partition's
//! checkpoint holds its one stream (see [`crate::session::Scope`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const MAGIC: &[u8; 4] = b"SYC\x01";

/// 64-bit FNV-1a of a message id, as kept in positions.
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where a stream's next messages start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Timestamp of the last message taken (or the configured start).
    pub ts: i64,
    /// Hashes of the ids of the messages taken at `ts`, in the order taken.
    pub seen: Vec<u64>,
}

impl Position {
    /// A stream nothing was taken from yet, starting at `since`.
    pub fn start(since: i64) -> Position {
        Position {
            ts: since,
            seen: Vec::new(),
        }
    }

    /// Whether a listed message (`ts`, `id`) was already taken, or lies
    /// before the position (which an inclusive `since` never lists).
    pub fn covers(&self, ts: i64, id: &str) -> bool {
        ts < self.ts || (ts == self.ts && self.seen.contains(&id_hash(id)))
    }

    /// Records that the message (`ts`, `id`) was taken.
    pub fn advance(&mut self, ts: i64, id: &str) {
        let h = id_hash(id);
        if ts > self.ts {
            self.ts = ts;
            self.seen.clear();
            self.seen.push(h);
        } else if ts == self.ts && !self.seen.contains(&h) {
            self.seen.push(h);
        }
    }
}

/// What [`next_batch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<T> {
    /// Items not covered by the position, in listing order.
    pub items: Vec<T>,
    /// Whether the last listing was full, so that more may follow; `false`
    /// means the stream was drained when it was read.
    pub more: bool,
}

/// Fetches the next messages of a stream after `pos`: asks
/// `fetch(since, skip, limit)` for listings starting at `pos.ts` and keeps
/// the items `pos` does not cover. When a full listing holds only covered
/// items (more messages share the millisecond than a page holds) it asks
/// again with `skip` past them. An empty batch means the stream has nothing
/// new.
///
/// `fetch` answers `None` for an empty listing (HTTP 204), else the items
/// and the limit it actually asked the server for (it may lower the one it
/// is given); `key` gives an item's timestamp and id.
pub fn next_batch<T, E>(
    pos: &Position,
    limit: u32,
    key: impl Fn(&T) -> (i64, &str),
    mut fetch: impl FnMut(i64, u32, u32) -> Result<Option<(Vec<T>, u32)>, E>,
) -> Result<Batch<T>, E> {
    let limit = limit.max(1);
    let mut skip = 0u32;
    loop {
        let Some((listing, asked)) = fetch(pos.ts, skip, limit)? else {
            return Ok(Batch {
                items: Vec::new(),
                more: false,
            });
        };
        let listed = listing.len();
        let full = listed >= asked.max(1) as usize;
        let items: Vec<T> = listing
            .into_iter()
            .filter(|item| {
                let (ts, id) = key(item);
                !pos.covers(ts, id)
            })
            .collect();
        if !items.is_empty() || !full {
            return Ok(Batch { items, more: full });
        }
        skip = skip.saturating_add(listed as u32);
    }
}

/// Everything the plugin resumes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Per stream id, where its next messages start.
    pub positions: BTreeMap<String, Position>,
    /// The stream a resumed run starts at (streams are visited in id order,
    /// wrapping around); `None` after a complete run.
    pub cursor: Option<String>,
    /// The datahose `ackId` to send with the next events read.
    pub ack_id: Option<String>,
}

impl Checkpoint {
    /// The position of `stream`, or the start at `since`.
    pub fn position(&self, stream: &str, since: i64) -> Position {
        self.positions
            .get(stream)
            .cloned()
            .unwrap_or_else(|| Position::start(since))
    }

    /// Encodes the checkpoint (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.positions.len() * 44);
        out.extend_from_slice(MAGIC);
        let flags = u8::from(self.cursor.is_some()) | (u8::from(self.ack_id.is_some()) << 1);
        out.push(flags);
        if let Some(cursor) = &self.cursor {
            put_id(&mut out, cursor);
        }
        if let Some(ack) = &self.ack_id {
            put_bytes(&mut out, ack.as_bytes());
        }
        put_varint(&mut out, self.positions.len() as u64);
        for (stream, pos) in &self.positions {
            put_id(&mut out, stream);
            put_varint(&mut out, zigzag(pos.ts));
            put_varint(&mut out, pos.seen.len() as u64);
            for h in &pos.seen {
                out.extend_from_slice(&h.to_le_bytes());
            }
        }
        out
    }

    /// Decodes a checkpoint written by [`Checkpoint::encode`]; the error
    /// says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err("not a Symphony checkpoint (unknown magic or version)".into());
        }
        let flags = r.byte()?;
        if flags & !0b11 != 0 {
            return Err(format!("unknown flags {flags:#04x}"));
        }
        let cursor = if flags & 1 != 0 { Some(r.id()?) } else { None };
        let ack_id = if flags & 2 != 0 {
            Some(r.string()?)
        } else {
            None
        };
        let count = r.varint()?;
        let mut positions = BTreeMap::new();
        for _ in 0..count {
            let stream = r.id()?;
            let ts = unzigzag(r.varint()?);
            let n = r.varint()?;
            if n > (r.bytes.len() - r.at) as u64 / 8 {
                return Err("truncated position".into());
            }
            let mut seen = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let b = r.take(8)?;
                seen.push(u64::from_le_bytes(b.try_into().expect("8 bytes")));
            }
            if positions.insert(stream, Position { ts, seen }).is_some() {
                return Err("a stream appears twice".into());
            }
        }
        if r.at != bytes.len() {
            return Err(format!(
                "{} unexpected bytes at the end",
                bytes.len() - r.at
            ));
        }
        Ok(Checkpoint {
            positions,
            cursor,
            ack_id,
        })
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Stream ids are URL-safe base64: stored decoded when that round-trips.
fn put_id(out: &mut Vec<u8>, id: &str) {
    match URL_SAFE_NO_PAD.decode(id) {
        Ok(raw) if !raw.is_empty() && URL_SAFE_NO_PAD.encode(&raw) == id => {
            out.push(1);
            put_bytes(out, &raw);
        }
        _ => {
            out.push(0);
            put_bytes(out, id.as_bytes());
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("truncated")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "text is not UTF-8".to_string())
    }

    fn id(&mut self) -> Result<String, String> {
        match self.byte()? {
            0 => self.string(),
            1 => Ok(URL_SAFE_NO_PAD.encode(self.bytes()?)),
            t => Err(format!("unknown id tag {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "Q2KYGm7JkljrgymMajYTJ3___qcLPr1UdA";

    #[test]
    fn round_trip() {
        let mut cp = Checkpoint::default();
        assert_eq!(Checkpoint::decode(&cp.encode()).unwrap(), cp);
        cp.cursor = Some(SID.into());
        cp.ack_id = Some("sim-ack-42".into());
        cp.positions.insert(
            SID.into(),
            Position {
                ts: 1_704_067_260_000,
                seen: vec![id_hash("a"), id_hash("b")],
            },
        );
        cp.positions.insert(
            "not base64 / ü".into(),
            Position {
                ts: -5,
                seen: vec![],
            },
        );
        cp.positions.insert(
            "padded==".into(),
            Position {
                ts: i64::MAX,
                seen: vec![u64::MAX],
            },
        );
        let bytes = cp.encode();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), cp);
        // Compact: the base64 id is stored as its 25 raw bytes.
        let one = Checkpoint {
            positions: [(SID.to_string(), Position::start(1_704_067_260_000))]
                .into_iter()
                .collect(),
            ..Checkpoint::default()
        };
        assert!(one.encode().len() < 45, "{}", one.encode().len());
    }

    #[test]
    fn corrupt_checkpoints_are_refused() {
        let mut cp = Checkpoint::default();
        cp.positions.insert(SID.into(), Position::start(7));
        let good = cp.encode();
        assert!(Checkpoint::decode(b"").is_err());
        assert!(Checkpoint::decode(b"{\"offset\":1}").is_err());
        assert!(Checkpoint::decode(&good[..good.len() - 1]).is_err());
        let mut longer = good.clone();
        longer.push(0);
        assert!(Checkpoint::decode(&longer).is_err());
        let mut flags = good.clone();
        flags[4] = 0x80;
        assert!(Checkpoint::decode(&flags).is_err());
        // Garbage of every length must fail cleanly, never panic.
        for n in 0..good.len() {
            let _ = Checkpoint::decode(&good[..n]);
        }
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(Checkpoint::decode(&huge).is_err());
    }

    #[test]
    fn positions_advance_per_millisecond() {
        let mut p = Position::start(100);
        assert!(!p.covers(100, "a"));
        assert!(p.covers(99, "z"), "before since is never new");
        p.advance(100, "a");
        p.advance(100, "b");
        p.advance(100, "a");
        assert_eq!(p.seen.len(), 2);
        assert!(p.covers(100, "a") && p.covers(100, "b") && !p.covers(100, "c"));
        p.advance(105, "c");
        assert_eq!(
            p,
            Position {
                ts: 105,
                seen: vec![id_hash("c")]
            }
        );
        p.advance(101, "old");
        assert_eq!(p.ts, 105);
        assert!(!p.covers(106, "c"));
    }

    /// A fake `/v4/stream/{sid}/message`: (ts, id) in listing order,
    /// `since` inclusive, then `skip` and `limit`; `None` (HTTP 204) when
    /// empty.
    type Listing = Result<Option<(Vec<(i64, String)>, u32)>, ()>;

    fn listing(all: &[(i64, String)]) -> impl FnMut(i64, u32, u32) -> Listing + '_ {
        move |since, skip, limit| {
            let page: Vec<_> = all
                .iter()
                .filter(|(ts, _)| *ts >= since)
                .skip(skip as usize)
                .take(limit as usize)
                .cloned()
                .collect();
            Ok((!page.is_empty()).then_some((page, limit)))
        }
    }

    fn drain(all: &[(i64, String)], pos: &mut Position, limit: u32) -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..10_000 {
            let batch =
                next_batch(pos, limit, |m: &(i64, String)| (m.0, &m.1), listing(all)).unwrap();
            if batch.items.is_empty() {
                assert!(!batch.more);
                return got;
            }
            assert!(batch.items.len() <= limit as usize);
            for (ts, id) in batch.items {
                pos.advance(ts, &id);
                got.push(id);
            }
        }
        panic!("never drained");
    }

    fn msgs(stamps: &[i64]) -> Vec<(i64, String)> {
        stamps
            .iter()
            .enumerate()
            .map(|(i, ts)| (*ts, format!("m{i}")))
            .collect()
    }

    #[test]
    fn same_millisecond_runs_across_page_boundaries_are_neither_lost_nor_duplicated() {
        // Runs of equal timestamps straddling every page boundary, and one
        // run longer than a page.
        let mut stamps = Vec::new();
        for i in 0..40 {
            stamps.push(1000 + i / 3);
        }
        stamps.extend(std::iter::repeat_n(2000, 23));
        stamps.extend([2001, 2001, 2002]);
        let all = msgs(&stamps);
        let want: Vec<String> = all.iter().map(|m| m.1.clone()).collect();
        for limit in [1, 2, 3, 4, 5, 7, 10, 22, 23, 24, 500] {
            let mut pos = Position::start(0);
            assert_eq!(drain(&all, &mut pos, limit), want, "limit {limit}");
            // Drained: nothing more, and nothing again.
            assert!(drain(&all, &mut pos, limit).is_empty());
            assert_eq!(pos.ts, 2002);
        }
    }

    #[test]
    fn resuming_from_any_prefix_gives_exactly_the_rest() {
        let all = msgs(&[5, 5, 5, 6, 6, 9, 9, 9, 9, 12]);
        for taken in 0..=all.len() {
            let mut pos = Position::start(0);
            for (ts, id) in &all[..taken] {
                pos.advance(*ts, id);
            }
            // Through the binary checkpoint, as a later run would.
            let mut cp = Checkpoint::default();
            cp.positions.insert("s".into(), pos);
            let mut pos = Checkpoint::decode(&cp.encode()).unwrap().position("s", 0);
            let rest: Vec<String> = all[taken..].iter().map(|m| m.1.clone()).collect();
            assert_eq!(drain(&all, &mut pos, 2), rest, "after {taken}");
        }
    }

    #[test]
    fn a_suppressed_message_at_the_position_does_not_hide_the_next_one() {
        // m0 and m1 at t=10 were taken; then m1 is suppressed (it leaves the
        // listing) and m2 arrives. A count-based skip=2 would step over m2.
        let mut pos = Position::start(0);
        pos.advance(10, "m0");
        pos.advance(10, "m1");
        let after = vec![(10, "m0".to_string()), (11, "m2".to_string())];
        assert_eq!(drain(&after, &mut pos, 500), ["m2"]);
        // Same with a new message in the same millisecond.
        let mut pos = Position::start(0);
        pos.advance(10, "m0");
        pos.advance(10, "m1");
        let after = vec![(10, "m1".to_string()), (10, "m3".to_string())];
        assert_eq!(drain(&after, &mut pos, 1), ["m3"]);
    }

    #[test]
    fn a_short_listing_means_drained() {
        let all = msgs(&[1, 2, 3]);
        let pos = Position::start(0);
        let b = next_batch(&pos, 3, |m: &(i64, String)| (m.0, &m.1), listing(&all)).unwrap();
        assert_eq!((b.items.len(), b.more), (3, true));
        let b = next_batch(&pos, 4, |m: &(i64, String)| (m.0, &m.1), listing(&all)).unwrap();
        assert_eq!((b.items.len(), b.more), (3, false));
        // A fetch that lowered its limit (a body too large) is judged by it.
        let b = next_batch(
            &pos,
            500,
            |m: &(i64, String)| (m.0, &m.1),
            |_, _, _| Ok::<_, ()>(Some((all[..1].to_vec(), 1))),
        )
        .unwrap();
        assert_eq!((b.items.len(), b.more), (1, true));
    }

    #[test]
    fn a_stream_starts_at_since_inclusive() {
        let all = msgs(&[1, 2, 3, 3, 4]);
        let mut pos = Position::start(3);
        assert_eq!(drain(&all, &mut pos, 1), ["m2", "m3", "m4"]);
        let mut pos = Position::start(5);
        assert!(drain(&all, &mut pos, 1).is_empty());
    }

    /// Stream ids as Symphony writes them (URL-safe base64, stored
    /// decoded) and any other string.
    fn any_id() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof!["[A-Za-z0-9_-]{0,40}", ".{0,40}"]
    }

    proptest::proptest! {
        #[test]
        fn any_checkpoint_round_trips(
            cursor in proptest::option::of(any_id()),
            ack_id in proptest::option::of(".{0,80}"),
            positions in proptest::collection::btree_map(
                any_id(),
                (proptest::num::i64::ANY, proptest::collection::vec(proptest::num::u64::ANY, 0..5)),
                0..8,
            ),
        ) {
            let cp = Checkpoint {
                positions: positions
                    .into_iter()
                    .map(|(id, (ts, seen))| (id, Position { ts, seen }))
                    .collect(),
                cursor,
                ack_id,
            };
            proptest::prop_assert_eq!(Checkpoint::decode(&cp.encode()), Ok(cp));
        }
    }
}
