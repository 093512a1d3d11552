//! The rules that fold callbacks into a transaction's current state. Plain functions: the store applies
//! them atomically (see `store::transactions`), tests check them as tables.
//!
//! - A terminal status (`successful`, `failed`, `cancelled`, `expired`) never goes back to `pending` (or any
//!   non-terminal status): a late `pending` is recorded, not applied.
//! - A second, *different* terminal status is a **conflict**: the first is kept, the disagreement is listed.
//! - An amount or MSISDN that differs from the one already known is a conflict too (one payment has one
//!   amount and one payer), whatever the statuses.
//! - Fields the transaction lacks (amount, currency, MSISDN, receipt) are filled from later callbacks.

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
        }
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
        }
    } else {
        next.status = incoming.status;
        next.reason = incoming.reason.map(str::to_owned);
    }

    if let (Some(known), Some(new)) = (current.amount, incoming.amount) {
        if known != new {
            conflicts.push(disagree("amount", known.to_string(), new.to_string()));
        }
    }
    if let (Some(known), Some(new)) = (&current.msisdn, &incoming.msisdn) {
        if known != new {
            conflicts.push(disagree("msisdn", known.clone(), new.clone()));
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
