//! How every output names the counts of a run ([`RunCounts`], which says
//! what each one counts): the run summary, `connector status` (text, JSON
//! and the status page), `/metrics` and the admin log's CSV all take their
//! names from [`COUNTS`], in its order, so none can drift from the others.
//! `docs/counts.md` is the table for operators.

use connector_state::RunCounts;

/// One count of [`RunCounts`] as each output names it.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    /// The JSON field, in a run's `counts` and the status' `totals`.
    pub field: &'static str,
    /// The admin log's CSV column: Microsoft Purview's name where its
    /// admin log has the column.
    pub column: &'static str,
    /// What follows the number in the run summary, `connector status` and
    /// the status page.
    pub phrase: &'static str,
    /// The Prometheus counter of the connector's total over its runs.
    pub metric: &'static str,
    /// What is counted, for the metric's help.
    pub help: &'static str,
    /// The count's value.
    pub of: fn(&RunCounts) -> u64,
}

/// Every count, in the order every output lists them: Purview's columns
/// first.
pub const COUNTS: [Count; 8] = [
    Count {
        field: "items_from_source",
        column: "Items available from source",
        phrase: "item(s) from source",
        metric: "connector_items_from_source_total",
        help: "Items (messages) the source gave.",
        of: |c| c.items_from_source,
    },
    Count {
        field: "items_for_import",
        column: "Items available for import after fan-out",
        phrase: "for import after fan-out",
        metric: "connector_items_for_import_total",
        help: "(item, mailbox or unmapped participant) pairs after fan-out: imported + skipped as duplicates + failed.",
        of: |c| c.items_for_import,
    },
    Count {
        field: "imported",
        column: "Imported",
        phrase: "imported",
        metric: "connector_items_imported_total",
        help: "Pairs delivered into a mailbox.",
        of: |c| c.imported,
    },
    Count {
        field: "partially_imported",
        column: "Partially imported",
        phrase: "partially imported",
        metric: "connector_items_partially_imported_total",
        help: "Items that reached some of their mailboxes but not all.",
        of: |c| c.partially_imported,
    },
    Count {
        field: "skipped_duplicates",
        column: "Skipped as duplicates",
        phrase: "skipped as duplicates",
        metric: "connector_items_skipped_duplicates_total",
        help: "Pairs already delivered before (ledger or mailbox).",
        of: |c| c.skipped_duplicates,
    },
    Count {
        field: "failed",
        column: "Failed",
        phrase: "failed",
        metric: "connector_items_failed_total",
        help: "Pairs not delivered: a participant without a mailbox, or a mailbox that refused the item.",
        of: |c| c.failed,
    },
    Count {
        field: "quarantined",
        column: "Quarantined",
        phrase: "quarantined",
        metric: "connector_items_quarantined_total",
        help: "Items put (or kept) in the quarantine because a pair failed.",
        of: |c| c.quarantined,
    },
    Count {
        field: "pages",
        column: "Pages",
        phrase: "page(s)",
        metric: "connector_pages_total",
        help: "Pages fetched from the source.",
        of: |c| c.pages,
    },
];

/// The counts as the run summary, `connector status` and the progress
/// line say them: `792 item(s) from source, 3673 for import after
/// fan-out, …, 17 page(s)`.
pub fn summary(counts: &RunCounts) -> String {
    COUNTS
        .iter()
        .map(|c| format!("{} {}", (c.of)(counts), c.phrase))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_run_counts_is_named_once_and_reads_its_own_value() {
        let counts = RunCounts::from_values([1, 2, 3, 4, 5, 6, 7, 8]);
        let json = serde_json::to_value(&counts).unwrap();
        let fields = json.as_object().unwrap();
        assert_eq!(fields.len(), COUNTS.len());
        for c in COUNTS {
            assert_eq!(
                fields[c.field].as_u64(),
                Some((c.of)(&counts)),
                "{} reads its own field",
                c.field
            );
        }
    }

    #[test]
    fn the_summary_says_each_count_with_its_phrase() {
        let counts = RunCounts::from_values([17, 792, 3673, 3525, 0, 148, 148, 148]);
        assert_eq!(
            summary(&counts),
            "792 item(s) from source, 3673 for import after fan-out, 3525 imported, 148 partially imported, 0 skipped as duplicates, 148 failed, 148 quarantined, 17 page(s)"
        );
    }
}
