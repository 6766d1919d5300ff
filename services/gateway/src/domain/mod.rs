//! The gateway's rules, free of tonic and SQL.

pub mod capabilities;
pub mod discount;
pub mod integration;
pub mod orders;
