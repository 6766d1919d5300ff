//! AttributionService's rules, free of gRPC and SQL.

pub mod alerts;
pub mod amazon_reports;
pub mod attribution;
pub mod clicks;
