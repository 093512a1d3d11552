//! The rules that fold callbacks into a transaction's current state. Plain functions: the store applies
//! them atomically (see `store::transactions`), tests check them as tables.
//!
//! - A terminal status (`successful`, `failed`, `cancelled`, `expired`) never goes back to `pending` (or any
//!   non-terminal status): a late `pending` is recorded, not applied.
//! - A second, *different* terminal status is a **conflict**: the first is kept, the disagreement is listed.
//! - An amount, currency, MSISDN or receipt that differs from the one already known is a conflict too
//!   (one payment has one amount in one currency, one payer and one receipt), whatever the statuses:
//!   1,000 UGX then 1,000 KES is not the same money.
//! - Fields the transaction lacks (amount, currency, MSISDN, receipt) are filled from later callbacks.
//! - An operator's answer to a status query (`status_query`) follows the same rules — it never demotes a
//!   terminal status, and contradicting a callback is a conflict (a forged or mistaken callback shows up
//!   this way) — and one more: when a callback and a query agree on a terminal status, whichever came
//!   first, the transaction is **verified**. `settled_by` says which of the two set the terminal status.

use rust_decimal::Decimal;

use crate::callback::{Callback, Status};

/// What a transaction currently says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub status: Status,
    pub reason: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub msisdn: Option<String>,
    pub receipt: Option<String>,
    /// What set the terminal status; `None` while the transaction is not terminal.
    pub settled_by: Option<Source>,
    /// A callback and a status query agree on the terminal status.
    pub verified: bool,
}

/// Where a transaction's terminal status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A callback the operator sent.
    Callback,
    /// The operator's answer to a status query (the callback never came, or came later).
    StatusQuery,
}

impl Source {
    fn of(callback: &Callback) -> Self {
        if callback.is_status_answer() {
            Self::StatusQuery
        } else {
            Self::Callback
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::StatusQuery => "status_query",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "callback" => Some(Self::Callback),
            "status_query" => Some(Self::StatusQuery),
            _ => None,
        }
    }
}

impl Snapshot {
    /// A new transaction, as its first callback describes it.
    pub fn from_callback(callback: &Callback) -> Self {
        Self {
            status: callback.status,
            reason: callback.reason.map(str::to_owned),
            amount: callback.amount,
            currency: callback.currency.clone(),
            msisdn: callback.msisdn.clone(),
            receipt: callback.receipt.clone(),
            settled_by: callback.status.is_terminal().then(|| Source::of(callback)),
            verified: false,
        }
    }

    /// Whether the reconciler should ask the operator about this transaction: it is not final yet, or
    /// (for operators whose callbacks are confirmed by query) a callback's final status awaits
    /// confirmation.
    pub fn needs_query(&self, confirm_by_query: bool) -> bool {
        !self.status.is_terminal()
            || (confirm_by_query && !self.verified && self.settled_by == Some(Source::Callback))
    }
}

/// One disagreement between a transaction and a callback about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub field: &'static str,
    pub current: String,
    pub incoming: String,
}

/// The outcome of folding one callback into a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub next: Snapshot,
    pub conflicts: Vec<Conflict>,
}

/// Folds `incoming` into `current`.
pub fn transition(current: &Snapshot, incoming: &Callback) -> Transition {
    let mut conflicts = Vec::new();
    let mut next = current.clone();

    let disagree = |field, current: String, incoming: String| Conflict {
        field,
        current,
        incoming,
    };
    if current.status.is_terminal() {
        if incoming.status.is_terminal() && incoming.status != current.status {
            conflicts.push(disagree(
                "status",
                current.status.to_string(),
                incoming.status.to_string(),
            ));
        } else if incoming.status == current.status
            && current
                .settled_by
                .is_some_and(|source| source != Source::of(incoming))
        {
            next.verified = true;
        }
    } else {
        next.status = incoming.status;
        next.reason = incoming.reason.map(str::to_owned);
        next.settled_by = incoming.status.is_terminal().then(|| Source::of(incoming));
    }

    if let (Some(known), Some(new)) = (current.amount, incoming.amount) {
        if known != new {
            conflicts.push(disagree("amount", known.to_string(), new.to_string()));
        }
    }
    for (field, known, new) in [
        ("currency", &current.currency, &incoming.currency),
        ("msisdn", &current.msisdn, &incoming.msisdn),
        ("receipt", &current.receipt, &incoming.receipt),
    ] {
        if let (Some(known), Some(new)) = (known, new) {
            // A masked value (an operator's status answer may show `C36*****67`) cannot contradict.
            if known != new && !known.contains('*') && !new.contains('*') {
                conflicts.push(disagree(field, known.clone(), new.clone()));
            }
        }
    }

    next.amount = next.amount.or(incoming.amount);
    next.currency = next.currency.or_else(|| incoming.currency.clone());
    next.msisdn = next.msisdn.or_else(|| incoming.msisdn.clone());
    next.receipt = next.receipt.or_else(|| incoming.receipt.clone());
    Transition { next, conflicts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::by_slug;
    use crate::providers::fixtures::MTNMoMoCallbackFixtures as Mtn;
    use crate::CallbackType;

    fn mtn(status: &str) -> Callback {
        let payload = Mtn::collection_for("tx-1", status);
        by_slug("mtn")
            .unwrap()
            .parse(CallbackType::Collection, payload.to_string().as_bytes())
            .unwrap()
    }

    fn after(first: &str, second: &Callback) -> Transition {
        transition(&Snapshot::from_callback(&mtn(first)), second)
    }

    #[test]
    fn status_rules_as_a_table() {
        // (current, incoming, resulting status, conflict on status?)
        let table = [
            ("PENDING", "SUCCESSFUL", Status::Successful, false),
            ("PENDING", "FAILED", Status::Failed, false),
            ("CREATED", "PENDING", Status::Pending, false),
            ("SUCCESSFUL", "PENDING", Status::Successful, false),
            ("FAILED", "PENDING", Status::Failed, false),
            ("EXPIRED", "CREATED", Status::Expired, false),
            ("SUCCESSFUL", "SUCCESSFUL", Status::Successful, false),
            ("SUCCESSFUL", "FAILED", Status::Successful, true),
            ("FAILED", "SUCCESSFUL", Status::Failed, true),
            ("EXPIRED", "SUCCESSFUL", Status::Expired, true),
            ("PENDING", "WHATEVER", Status::Unknown, false),
            ("SUCCESSFUL", "WHATEVER", Status::Successful, false),
        ];
        for (current, incoming, status, conflict) in table {
            let result = after(current, &mtn(incoming));
            assert_eq!(result.next.status, status, "{current} then {incoming}");
            assert_eq!(
                result.conflicts.iter().any(|c| c.field == "status"),
                conflict,
                "{current} then {incoming}"
            );
        }
    }

    #[test]
    fn a_different_amount_or_payer_is_a_conflict() {
        let mut changed = mtn("SUCCESSFUL");
        changed.amount = Some(Decimal::from(999));
        changed.msisdn = Some("256700000000".into());
        let result = after("SUCCESSFUL", &changed);
        let fields: Vec<&str> = result.conflicts.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["amount", "msisdn"]);
        assert_eq!(result.conflicts[0].current, "1000.00");
        assert_eq!(result.conflicts[0].incoming, "999");
        assert_eq!(
            result.next.amount,
            Some(Decimal::new(100000, 2)),
            "the first amount is kept"
        );
    }

    #[test]
    fn a_different_currency_or_receipt_is_a_conflict() {
        let mut changed = mtn("SUCCESSFUL");
        changed.currency = Some("KES".into());
        changed.receipt = Some("99999999".into());
        let result = after("SUCCESSFUL", &changed);
        let fields: Vec<(&str, &str, &str)> = result
            .conflicts
            .iter()
            .map(|c| (c.field, c.current.as_str(), c.incoming.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("currency", "UGX", "KES"),
                ("receipt", "12345678", "99999999")
            ]
        );
        assert_eq!(
            result.next.currency.as_deref(),
            Some("UGX"),
            "the first is kept"
        );
        // A masked receipt (as some status answers show it) contradicts nothing.
        let mut masked = mtn("SUCCESSFUL");
        masked.receipt = Some("123*****78".into());
        assert!(after("SUCCESSFUL", &masked).conflicts.is_empty());
        // The same amount in the same currency, a receipt only filled in: no conflict.
        let mut bare = mtn("PENDING");
        bare.receipt = None;
        let filled = transition(&Snapshot::from_callback(&bare), &mtn("SUCCESSFUL"));
        assert!(filled.conflicts.is_empty());
    }

    fn answer(status: &str) -> Callback {
        let mut query = mtn(status);
        query.callback_type = CallbackType::StatusQuery;
        query.queried_flow = Some("collection");
        query
    }

    #[test]
    fn status_queries_settle_verify_and_never_demote() {
        // A query recovers a transaction whose callback never came.
        let recovered = transition(
            &Snapshot::from_callback(&mtn("PENDING")),
            &answer("SUCCESSFUL"),
        );
        assert_eq!(recovered.next.status, Status::Successful);
        assert_eq!(recovered.next.settled_by, Some(Source::StatusQuery));
        assert!(!recovered.next.verified);

        // A query agreeing with a callback verifies it; so does a late callback agreeing with a query.
        let confirmed = after("SUCCESSFUL", &answer("SUCCESSFUL"));
        assert_eq!(confirmed.next.settled_by, Some(Source::Callback));
        assert!(confirmed.next.verified && confirmed.conflicts.is_empty());
        let late = transition(&recovered.next, &mtn("SUCCESSFUL"));
        assert!(late.next.verified, "callback after query");

        // The same source twice verifies nothing.
        assert!(!after("SUCCESSFUL", &mtn("SUCCESSFUL")).next.verified);

        // A query never demotes; a contradicting query is a conflict and verifies nothing.
        let pending = after("SUCCESSFUL", &answer("PENDING"));
        assert_eq!(pending.next.status, Status::Successful);
        assert!(!pending.next.verified);
        let forged = after("SUCCESSFUL", &answer("FAILED"));
        assert_eq!(forged.next.status, Status::Successful);
        assert_eq!(forged.conflicts[0].field, "status");
        assert!(!forged.next.verified);
    }

    #[test]
    fn which_transactions_need_a_query() {
        let pending = Snapshot::from_callback(&mtn("PENDING"));
        assert!(pending.needs_query(false));
        let paid = Snapshot::from_callback(&mtn("SUCCESSFUL"));
        assert!(!paid.needs_query(false));
        assert!(paid.needs_query(true), "a callback awaiting confirmation");
        let verified = after("SUCCESSFUL", &answer("SUCCESSFUL")).next;
        assert!(!verified.needs_query(true));
        let recovered = Snapshot::from_callback(&answer("FAILED"));
        assert!(!recovered.needs_query(true), "the operator said so itself");
    }

    #[test]
    fn missing_fields_are_filled_from_later_callbacks() {
        let mut bare = mtn("PENDING");
        bare.amount = None;
        bare.receipt = None;
        let mut current = Snapshot::from_callback(&bare);
        current.msisdn = None;
        let result = transition(&current, &mtn("SUCCESSFUL"));
        assert_eq!(result.next.receipt.as_deref(), Some("12345678"));
        assert_eq!(result.next.amount, Some(Decimal::new(100000, 2)));
        assert_eq!(result.next.msisdn.as_deref(), Some("256774123456"));
        assert!(result.conflicts.is_empty());
    }
}
