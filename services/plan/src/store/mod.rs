//! PlanService's queries: plain SQL (the tables are in migrations/) over the `plan` schema, every query scoped by brand. Functions
//! take a connection so the service layer decides what shares a transaction.

pub mod campaigns;
pub mod plans;
pub mod roster;

/// `for update` when the caller is about to change the row under a rule that depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    None,
    /// Keeps the row from changing (and from being archived) while allowing other sharers, so
    /// many creators can be added to one campaign at once.
    ForShare,
    ForUpdate,
}

impl Lock {
    fn sql(self) -> &'static str {
        match self {
            Lock::None => "",
            Lock::ForShare => " for share",
            Lock::ForUpdate => " for update",
        }
    }
}
