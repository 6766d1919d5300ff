//! PlanService's business rules, free of tonic and SQL: what a plan may contain for its provider,
//! what a campaign link requires, what a roster entry holds.

pub mod campaign;
pub mod plan;
pub mod roster;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Money in minor units with its ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl Money {
    /// Checks the currency's shape and that the amount is within `min..`.
    pub fn validate(&self, field: &str, min: i64) -> Result<(), Error> {
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(Error::invalid(
                &format!("{field}.currency"),
                "must be an ISO 4217 code of three upper-case letters, like USD",
            ));
        }
        if self.amount_minor < min {
            return Err(Error::invalid(
                &format!("{field}.amount_minor"),
                format!("must be at least {min}"),
            ));
        }
        Ok(())
    }
}

/// Checks a display name: trimmed, 1..=200 characters, no control characters.
pub fn validate_name(field: &str, name: &str) -> Result<String, Error> {
    let name = name.trim();
    let len = name.chars().count();
    if len == 0 || len > 200 {
        return Err(Error::invalid(field, "must be 1..=200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// Checks an id that names a resource: ids are positive.
pub fn validate_id(field: &str, id: i64) -> Result<i64, Error> {
    if id <= 0 {
        return Err(Error::invalid(field, "must be a positive id"));
    }
    Ok(id)
}
