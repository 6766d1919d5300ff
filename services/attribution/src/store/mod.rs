//! AttributionService's queries. Every query is scoped by brand (the slug lookup excepted:
//! slugs are unguessable and unique across brands).

pub mod alerts;
pub mod amazon_reports;
pub mod clicks;
pub mod conversions;
pub mod pending;
pub mod projection;
pub mod reads;
