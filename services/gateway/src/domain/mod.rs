//! The gateway's rules, free of tonic and SQL.

pub mod amazon;
pub mod capabilities;
pub mod discount;
pub mod integration;
pub mod orders;
